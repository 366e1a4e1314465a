"""Specifications for j1_min/grpo.py: advantages and the clipped GRPO loss.

Expected values are worked out by hand in the comments, not by re-running the formula."""
from __future__ import annotations

import math

import pytest
import torch

from j1_min.grpo import group_advantages, grpo_loss, masked_mean

LN = math.log


def hand_batch():
    """2×3 batch. Row 0 has A=+1, row 1 has A=−1; ratios ρ = [[1.5, 0.5, 1.1], [1.5, 0.5, 3.0]].
    Row 1's last token is masked out (its ρ=3 would change every result if it counted).

    With ε=0.2, ℓ = −min(ρA, clip(ρ, 0.8, 1.2)A):
      row 0 (A=+1): ρ=1.5 → −1.2 (clipped), ρ=0.5 → −0.5, ρ=1.1 → −1.1        sum −2.8 over 3
      row 1 (A=−1): ρ=1.5 → +1.5,            ρ=0.5 → +0.8 (clipped)           sum +2.3 over 2
    """
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.7, -2.0]])
    log_ratio = torch.tensor([[LN(1.5), LN(0.5), LN(1.1)], [LN(1.5), LN(0.5), LN(3.0)]])
    logp = (old + log_ratio).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    return logp, old, adv, mask


# ---------------------------------------------------------------- group_advantages

def test_group_scale_divides_centred_reward_by_unbiased_std_plus_1e4():
    # group [1,0,0,0]: mean 0.25, unbiased var = (0.75² + 3·0.25²)/3 = 0.25, std 0.5
    # group [2,4,6,8]: mean 5, unbiased var = (9+1+1+9)/3 = 20/3
    adv = group_advantages(torch.tensor([1.0, 0, 0, 0, 2, 4, 6, 8]), group_size=4)
    s2 = math.sqrt(20 / 3) + 1e-4
    expected = [0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001,
                -3 / s2, -1 / s2, 1 / s2, 3 / s2]
    assert torch.allclose(adv, torch.tensor(expected), atol=1e-6)


def test_scale_none_only_subtracts_the_group_mean():
    adv = group_advantages(torch.tensor([1.0, 0, 0, 0, 2, 4, 6, 8]), group_size=4, scale="none")
    assert torch.allclose(adv, torch.tensor([0.75, -0.25, -0.25, -0.25, -3, -1, 1, 3]))


def test_groups_are_consecutive_rows():
    # same multiset of rewards, grouped as [1,1],[0,0] → all zero; as [1,0],[1,0] → ±
    assert torch.equal(group_advantages(torch.tensor([1.0, 1, 0, 0]), 2), torch.zeros(4))
    assert (group_advantages(torch.tensor([1.0, 0, 1, 0]), 2) != 0).all()


def test_zero_variance_group_gets_exactly_zero_advantage():
    adv = group_advantages(torch.tensor([1.0, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0]), group_size=4)
    assert torch.equal(adv[:4], torch.zeros(4))
    assert torch.equal(adv[8:], torch.zeros(4))
    assert (adv[4:8].abs() > 0.8).all()


@pytest.mark.parametrize("rewards, g, scale, msg", [
    (torch.zeros(5), 2, "group", "do not split"),
    (torch.zeros(4), 1, "group", "group_size"),
    (torch.zeros(4), 2, "batch", "scale"),
    (torch.zeros(2, 2), 2, "group", "1-D"),
])
def test_group_advantages_rejects_bad_input(rewards, g, scale, msg):
    with pytest.raises(ValueError, match=msg):
        group_advantages(rewards, g, scale=scale)


# ---------------------------------------------------------------- loss values

@pytest.mark.parametrize("loss_type, expected", [
    ("grpo", (-2.8 / 3 + 2.3 / 2) / 2),   # mean of per-sequence means = 0.108333…
    ("dapo", (-2.8 + 2.3) / 5),           # token sum / 5 masked tokens = −0.1
    ("dr_grpo", (-2.8 + 2.3) / (2 * 3)),  # token sum / (N·T) = −0.083333…
])
def test_each_loss_type_matches_hand_computed_value(loss_type, expected):
    logp, old, adv, mask = hand_batch()
    loss, stats = grpo_loss(logp, old, None, adv, mask, loss_type=loss_type)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert stats["loss"] == pytest.approx(expected, abs=1e-6)


def test_stats_clip_frac_counts_tokens_where_the_clipped_term_is_active():
    # clipped: row0 ρ=1.5 with A>0, row1 ρ=0.5 with A<0 → 2 of 5 masked tokens.
    # row0 ρ=0.5 (A>0) and row1 ρ=1.5 (A<0) are outside the band but not clipped.
    logp, old, adv, mask = hand_batch()
    _, stats = grpo_loss(logp, old, None, adv, mask)
    assert stats["clip_frac"] == pytest.approx(0.4)
    assert stats["ratio_mean"] == pytest.approx((1.5 + 0.5 + 1.1 + 1.5 + 0.5) / 5)
    assert stats["k3"] == 0.0
    assert all(type(v) is float for v in stats.values())


def test_gradient_is_minus_ratio_times_advantage_over_normaliser_and_zero_where_clipped():
    # dapo normaliser 5. d(−ρA)/dlogp = −ρA; clipped and masked tokens: 0.
    logp, old, adv, mask = hand_batch()
    loss, _ = grpo_loss(logp, old, None, adv, mask, loss_type="dapo")
    loss.backward()
    expected = torch.tensor([[0.0, -0.5 / 5, -1.1 / 5], [1.5 / 5, 0.0, 0.0]])
    assert torch.allclose(logp.grad, expected, atol=1e-6)


def test_clip_eps_high_widens_only_the_upper_side():
    # ρ=1.25, A=+1: ε_high=0.2 clips to 1.2 (grad 0); ε_high=0.28 leaves 1.25 (grad −1.25).
    # ρ=0.75, A=−1: clipped to 0.8 in both cases (the low side keeps ε=0.2).
    old = torch.zeros(2, 1)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 1)
    for eps_high, up_loss, up_grad in ((None, -1.2, 0.0), (0.28, -1.25, -1.25)):
        logp = torch.tensor([[LN(1.25)], [LN(0.75)]], requires_grad=True)
        loss, stats = grpo_loss(logp, old, None, adv, mask, clip_eps_high=eps_high,
                                loss_type="dr_grpo")
        loss.backward()
        assert loss.item() == pytest.approx((up_loss + 0.8) / 2, abs=1e-6)
        assert logp.grad[0, 0].item() == pytest.approx(up_grad / 2, abs=1e-6)
        assert logp.grad[1, 0].item() == 0.0
        assert stats["clip_frac"] == pytest.approx(1.0 if eps_high is None else 0.5)


# ---------------------------------------------------------------- k3 penalty

def test_k3_penalty_value_by_hand():
    # ref − logp = +ln2 → k3 = 2 − ln2 − 1 = 0.306853; −ln2 → 0.5 + ln2 − 1 = 0.193147; sum 0.5.
    # ρ=1 and A=0, so the loss is only β·mean k3 = 0.1 · 0.25.
    logp = torch.zeros(1, 2)
    ref = torch.tensor([[LN(2.0), -LN(2.0)]])
    loss, stats = grpo_loss(logp, logp, ref, torch.zeros(1), torch.ones(1, 2), beta=0.1)
    assert loss.item() == pytest.approx(0.025, abs=1e-6)
    assert stats["k3"] == pytest.approx(0.25, abs=1e-6)


def test_k3_is_nonnegative_and_zero_when_ref_equals_policy():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 7, generator=g) * 5
    ref = -torch.rand(4, 7, generator=g) * 5
    mask = torch.ones(4, 7)
    _, stats = grpo_loss(logp, logp, ref, torch.zeros(4), mask, beta=1.0)
    assert stats["k3"] > 0.0
    loss, stats = grpo_loss(logp, logp, logp.clone(), torch.zeros(4), mask, beta=1.0)
    assert stats["k3"] == 0.0 and loss.item() == 0.0


def test_k3_gradient_is_one_minus_exp_ref_minus_logp():
    # d/dlogp [e^(ref−logp) − (ref−logp) − 1] = 1 − e^(ref−logp): with ref−logp = ln2 → −1, −ln2 →
    # +0.5
    logp = torch.zeros(1, 2, requires_grad=True)
    ref = torch.tensor([[LN(2.0), -LN(2.0)]])
    loss, _ = grpo_loss(logp, logp.detach(), ref, torch.zeros(1), torch.ones(1, 2), beta=1.0,
                        loss_type="dr_grpo")
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[-1.0 / 2, 0.5 / 2]]), atol=1e-6)


# ---------------------------------------------------------------- gradient rules

def _normaliser(loss_type, mask):
    n_tok = mask.sum(-1, keepdim=True)                      # (N, 1)
    if loss_type == "grpo":
        return n_tok.clamp(min=1) * (n_tok > 0).sum()
    if loss_type == "dapo":
        return mask.sum().expand_as(n_tok)
    return torch.full_like(n_tok, mask.numel())


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_on_policy_step_is_the_plain_policy_gradient(loss_type):
    # old_logp = logp.detach() (one PPO epoch): ρ = 1, nothing clips, ∇ = −A·mask / normaliser.
    g = torch.Generator().manual_seed(1)
    logp = (-torch.rand(4, 6, generator=g) * 3).requires_grad_(True)
    adv = torch.tensor([1.5, -0.5, 0.0, 2.0])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0],
                         [0, 0, 0, 0, 0, 0]]).float()
    loss, stats = grpo_loss(logp, logp.detach(), None, adv, mask, loss_type=loss_type)
    loss.backward()
    expected = -adv[:, None] * mask / _normaliser(loss_type, mask)
    assert torch.allclose(logp.grad, expected, atol=1e-7)
    assert stats["ratio_mean"] == pytest.approx(1.0) and stats["clip_frac"] == 0.0


def test_zero_variance_group_gives_zero_gradient():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])    # groups of 3: [1,1,1] and [0,1,0]
    adv = group_advantages(rewards, group_size=3)
    g = torch.Generator().manual_seed(2)
    logp = (-torch.rand(6, 5, generator=g)).requires_grad_(True)
    old = logp.detach() + 0.3 * torch.randn(6, 5, generator=g)  # off-policy, so some ratios ≠ 1
    loss, _ = grpo_loss(logp, old, None, adv, torch.ones(6, 5))
    loss.backward()
    assert torch.equal(logp.grad[:3], torch.zeros(3, 5))
    assert (logp.grad[3:].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_masked_tokens_carry_no_gradient_even_with_garbage_log_probs(loss_type):
    # padding / prompt / forced positions may hold anything: here −inf in both policy and
    # sampler (−inf − −inf = NaN) and an overflowing ref. Loss and grads stay finite.
    logp, old, adv, mask = hand_batch()
    clean, _ = grpo_loss(logp, old, None, adv, mask, loss_type=loss_type)
    junk = logp.detach().clone()
    junk[1, 2] = -float("inf")
    junk.requires_grad_(True)
    old = old.clone()
    old[1, 2] = -float("inf")
    ref = old.clone()
    ref[1, 2] = 1e4
    loss, stats = grpo_loss(junk, old, ref, adv, mask, beta=0.0, loss_type=loss_type)
    loss.backward()
    assert loss.item() == pytest.approx(clean.item(), abs=1e-6)
    assert torch.isfinite(junk.grad).all() and junk.grad[1, 2].item() == 0.0
    assert math.isfinite(stats["k3"]) and math.isfinite(stats["ratio_mean"])


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_all_zero_mask_gives_zero_loss_not_nan_and_backpropagates(loss_type):
    logp = torch.randn(2, 3, requires_grad=True)
    loss, stats = grpo_loss(logp, logp.detach() + 1.0, logp.detach(), torch.tensor([1.0, -1.0]),
                            torch.zeros(2, 3), beta=0.1, loss_type=loss_type)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logp.grad, torch.zeros(2, 3))
    assert not any(math.isnan(v) for v in stats.values())


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_bool_and_float_masks_give_the_same_loss(loss_type):
    logp, old, adv, mask = hand_batch()
    a, _ = grpo_loss(logp, old, None, adv, mask, loss_type=loss_type)
    b, _ = grpo_loss(logp, old, None, adv, mask.float(), loss_type=loss_type)
    assert a.item() == b.item()


def test_grpo_reduction_ignores_sequences_with_no_completion_tokens():
    # row 1 is fully masked: "grpo" is row 0's mean (−1), not (−1 + 0)/2.
    logp = torch.zeros(2, 2)
    loss, _ = grpo_loss(logp, logp, None, torch.tensor([1.0, 1.0]),
                        torch.tensor([[1.0, 1.0], [0.0, 0.0]]), loss_type="grpo")
    assert loss.item() == pytest.approx(-1.0)


def test_masked_mean_divides_by_mask_count_and_is_zero_when_empty():
    x = torch.tensor([[1.0, 2.0, 9.0], [4.0, 9.0, 9.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(x, m).item() == pytest.approx(7 / 3)
    assert torch.allclose(masked_mean(x, m, dim=-1), torch.tensor([1.5, 4.0]))
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0


# ---------------------------------------------------------------- errors

def test_grpo_loss_rejects_bad_arguments():
    z = torch.zeros(2, 3)
    adv = torch.zeros(2)
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(z, z, None, adv, z, loss_type="bnpo_typo")
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(z, z, None, adv, z, beta=0.04)
    with pytest.raises(ValueError, match="mask shape"):
        grpo_loss(z, z, None, adv, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="advantages shape"):
        grpo_loss(z, z, None, torch.zeros(3), z)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_micro_batches_weighted_by_loss_normalizer_give_the_whole_batch_loss(loss_type):
    from j1_min.grpo import loss_normalizer
    g = torch.Generator().manual_seed(3)
    logp = torch.randn(6, 5, generator=g) * 0.1 - 1
    old = logp + torch.randn(6, 5, generator=g) * 0.3
    adv = torch.randn(6, generator=g)
    mask = torch.rand(6, 5, generator=g) > 0.4
    mask[2] = False  # a sequence with no sampled token
    whole, _ = grpo_loss(logp, old, None, adv, mask, loss_type=loss_type)
    total = loss_normalizer(mask, loss_type)
    parts = sum(grpo_loss(logp[s:s + 2], old[s:s + 2], None, adv[s:s + 2], mask[s:s + 2],
                          loss_type=loss_type)[0]
                * loss_normalizer(mask[s:s + 2], loss_type) / total for s in (0, 2, 4))
    assert torch.allclose(parts, whole, atol=1e-6)
