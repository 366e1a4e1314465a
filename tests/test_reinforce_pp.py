"""Specifications for REINFORCE++ in j1_min/grpo.py (J1-7B's RL algorithm, as OpenRLHF implements
it): k1 in the reward, discounted returns, whitening over the global batch (every DDP process), and
the advantages passing through the clipped loss.

Expected values come from the equations written out token by token in float64 Python
(reinforce_reference), not from re-running the library's formula."""
from __future__ import annotations

import math

import pytest
import torch

from j1_min.grpo import grpo_loss, masked_mean


def reinforce_reference(R, logp, ref, mask, beta, gamma, group=None):
    """REINFORCE++ written out from its equations, one token at a time, in float64 Python:
    k1_t = clamp(logp_t − ref_t, −10, 10); r_t = −β·k1_t + R·[t = last sampled token], 0 where
    unmasked; G_t = Σ_{s ≥ t} γ^(s−t) r_s; A = (G − μ) / sqrt(max(σ², 1e-8)) with μ, σ² over every
    masked token."""
    R, logp, ref, mask = (x.double().tolist() for x in (R, logp, ref, mask))
    if group:
        R = [r - sum(R[i // group * group:(i // group + 1) * group]) / group
             for i, r in enumerate(R)]
    G = []
    for i, row in enumerate(mask):
        last = max((t for t, m in enumerate(row) if m), default=None)
        r = [(-beta * min(10.0, max(-10.0, logp[i][t] - ref[i][t])) + (R[i] if t == last else 0.0))
             * row[t]
             for t in range(len(row))]
        G.append([sum(gamma ** (s - t) * r[s] for s in range(t, len(row)))
                  for t in range(len(row))])
    vals = [g for gi, mi in zip(G, mask) for g, m in zip(gi, mi) if m]
    mu = sum(vals) / len(vals)
    var = sum((v - mu) ** 2 for v in vals) / len(vals)
    A = [[(g - mu) / math.sqrt(max(var, 1e-8)) * m for g, m in zip(gi, mi)]
         for gi, mi in zip(G, mask)]
    return torch.tensor(G, dtype=torch.float64), torch.tensor(A, dtype=torch.float64)


def reinforce_batch():
    """4 sequences of 4, 6, 2 and 5 completion tokens (T = 7), forced tokens inside rows 0 and 3 and
    at the end of row 1, and log-ratios beyond ±10 on some sampled tokens (the clamp must act) and
    on forced ones (must not count)."""
    g = torch.Generator().manual_seed(4)
    mask = torch.tensor([[1, 0, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0, 0],
                         [1, 1, 0, 1, 1, 0, 0]], dtype=torch.float)
    mask[1, 5] = 0  # row 1's sixth token is forced: the reward lands on its fifth
    logp = -torch.rand(4, 7, generator=g) * 3
    ref = logp + torch.randn(4, 7, generator=g) * 0.5
    # |k1| > 10 on sampled tokens: clamped
    ref[0, 2], ref[3, 4] = logp[0, 2] + 14.0, logp[3, 4] - 12.5
    ref[0, 1], ref[3, 2] = logp[0, 1] + 50.0, -1e4               # forced tokens: ignored
    return torch.tensor([1.0, 0.0, 1.0, 0.0]), logp, ref, mask


@pytest.mark.parametrize("beta, gamma", [(0.0, 1.0), (0.1, 1.0), (0.05, 0.9)])
def test_reinforce_pp_returns_and_advantages_match_the_equations_in_float64(beta, gamma):
    from j1_min.grpo import k1_kl, reinforce_pp_advantages, reinforce_pp_returns
    R, logp, ref, mask = reinforce_batch()
    G_ref, A_ref = reinforce_reference(R, logp, ref, mask, beta, gamma)
    kl = k1_kl(logp, ref, mask)
    assert kl[0, 2].item() == -10.0 and kl[3, 4].item() == 10.0 and kl[0, 1].item() == 0.0
    G = reinforce_pp_returns(R, mask, kl, beta=beta, gamma=gamma)
    A = reinforce_pp_advantages(R, mask, kl, beta=beta, gamma=gamma)
    assert torch.allclose(G.double(), G_ref, atol=1e-5)
    assert torch.allclose(A.double(), A_ref, atol=1e-5)
    # row 1 (R = 0) ends on its 5th token
    assert G[1, 4].item() == pytest.approx(-beta * kl[1, 4].item())


def test_reinforce_pp_baseline_subtracts_the_group_mean_reward_before_whitening():
    from j1_min.grpo import k1_kl, reinforce_pp_advantages
    R, logp, ref, mask = reinforce_batch()
    A = reinforce_pp_advantages(R, mask, k1_kl(logp, ref, mask), beta=0.1, group_size=2)
    assert torch.allclose(A.double(), reinforce_reference(R, logp, ref, mask, 0.1, 1.0, group=2)[1],
                          atol=1e-5)
    with pytest.raises(ValueError, match="gamma 1"):
        reinforce_pp_advantages(R, mask, None, gamma=0.9, group_size=2)


def test_forced_tokens_carry_no_kl_no_reward_and_no_advantage():
    from j1_min.grpo import k1_kl, reinforce_pp_advantages
    R, logp, ref, mask = reinforce_batch()
    A = reinforce_pp_advantages(R, mask, k1_kl(logp, ref, mask), beta=0.1)
    ref2 = ref.clone()
    # anything at the forced and padding positions
    ref2[mask == 0] = torch.randn(int((mask == 0).sum()))
    assert torch.equal(A, reinforce_pp_advantages(R, mask, k1_kl(logp, ref2, mask), beta=0.1))
    assert (A[mask == 0] == 0).all()
    # whitened: mean 0, variance 1 over the sampled tokens
    assert masked_mean(A, mask).abs().item() < 1e-6
    assert masked_mean(A ** 2, mask).item() == pytest.approx(1, abs=1e-5)


def test_reinforce_pp_advantages_pass_through_the_loss_per_token():
    # with ρ = 1 the "dapo" gradient is −A_t / |M| on every sampled token: per-token advantages
    # reach the loss
    from j1_min.grpo import reinforce_pp_advantages
    R, logp, _, mask = reinforce_batch()
    A = reinforce_pp_advantages(R, mask, gamma=0.9)
    lp = logp.clone().requires_grad_(True)
    grpo_loss(lp, logp, None, A, mask, loss_type="dapo")[0].backward()
    assert torch.allclose(lp.grad, -A * mask / mask.sum(), atol=1e-7)


def _whiten_on_rank(rank, init, rows, out):
    import torch.distributed as dist

    from j1_min import runs
    from j1_min.grpo import k1_kl, reinforce_pp_advantages
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2)
    R, logp, ref, mask = (x[rows[rank]] for x in reinforce_batch())
    d = runs.Dist(rank, 2)
    A = reinforce_pp_advantages(R, mask, k1_kl(logp, ref, mask), beta=0.1, gamma=0.9,
                                all_sum=lambda t: runs.all_sum(t, d))
    torch.save(A, f"{out}.{rank}")
    dist.destroy_process_group()


def test_whitening_over_two_ddp_processes_equals_whitening_on_one(tmp_path):
    """Rank 0 holds 1 sequence, rank 1 the other 3: each whitens with the statistics of all 4
    (REINFORCE++'s global batch), so together they give what one process gives on the whole
    batch."""
    import torch.multiprocessing as mp

    from j1_min.grpo import k1_kl, reinforce_pp_advantages
    rows = [slice(0, 1), slice(1, 4)]
    mp.spawn(_whiten_on_rank, args=(str(tmp_path / "init"), rows, str(tmp_path / "A")), nprocs=2)
    R, logp, ref, mask = reinforce_batch()
    whole = reinforce_pp_advantages(R, mask, k1_kl(logp, ref, mask), beta=0.1, gamma=0.9)
    parts = torch.cat([torch.load(tmp_path / f"A.{r}") for r in (0, 1)])
    assert torch.allclose(parts, whole, atol=1e-6)
    alone = reinforce_pp_advantages(R[1:], mask[1:], k1_kl(logp, ref, mask)[1:], beta=0.1,
                                    gamma=0.9)
    assert not torch.allclose(parts[1:], alone, atol=1e-3)  # local whitening would differ
