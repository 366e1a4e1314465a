"""train_grpo.py's options, each end to end through main() on the planted teacher of
test_train_grpo.py: top-k, top-p, β, bf16 autocast, PPO epochs, clipping, loss types, reward
scaling, the format penalty, dynamic sampling and gradient clipping each change the update as they
should."""
from __future__ import annotations

import math

import pytest
import torch

import train_grpo
from j1_min.checkpoint import load_model
from j1_min.tokenizer import Tokenizer
from test_train_grpo import args, log_of, setup  # noqa: F401 (setup: that module's fixture)


# ---------------------------------------------------------------- each option, end to end through
# main()

def run(setup, tmp_path, name, *extra):
    """Run main() with the test's settings plus `extra`; return (the step lines of its log, its
    final weights)."""
    out = tmp_path / f"{name}.pt"
    train_grpo.main(args(setup, out, "--steps", "2", *extra))
    return [r for r in log_of(out) if "reward" in r], load_model(out)[0].state_dict()


def max_change(a, b) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def start(setup):
    return load_model(setup / "teacher")[0].state_dict()


def test_top_p_half_still_trains_tokens_that_were_alone_in_their_nucleus(setup, tmp_path, start):
    # At temperature 10 the planted `]]` after a verdict has p ≈ 0.6 (the other ~400 tokens share
    # the rest), so at top-p 0.5 it is its nucleus's only token, while [[A]] and [[B]] share theirs.
    # Under the temperature alone its log p < 0 has a gradient; renormalised over the nucleus it was
    # 0, and `]]`'s lm_head row never moved.
    log, w = run(setup, tmp_path, "p05", "--top-p", "0.5", "--temperature", "10")
    ket = Tokenizer.from_path(setup / "teacher").encode("]]")[0]
    assert sum(r["flat_groups"] for r in log) < 8  # some groups carry signal
    assert (w["lm_head.weight"][ket] - start["lm_head.weight"][ket]).abs().max() > 1e-4


def test_top_p_with_beta_keeps_k3_finite_and_positive(setup, tmp_path, start):
    # at temperature 10 many tokens sit at the nucleus's edge: one inside the policy's nucleus but
    # outside the reference's gave ref log p = −inf and k3 = inf when log-probs were renormalised
    # over the nucleus
    log, w = run(setup, tmp_path, "p09", "--top-p", "0.9", "--beta", "0.1", "--steps", "4",
                 "--temperature", "10")
    assert all(math.isfinite(r["k3"]) for r in log) and log[-1]["k3"] > 0
    assert log[0]["k3"] == 0.0  # the first step's policy is the reference
    assert all(torch.isfinite(v).all() for v in w.values())
    _, w0 = run(setup, tmp_path, "p09b0", "--top-p", "0.9", "--steps", "4", "--temperature", "10")
    assert max_change(w, w0) > 0  # β reaches the loss


def test_bfloat16_keeps_float32_master_weights_so_lr_1e6_moves_them(setup, tmp_path, start):
    # pure bf16 weights stepped by AdamW at 1e-6 lost every update to rounding (bf16 keeps ~3
    # digits)
    _, w = run(setup, tmp_path, "bf16", "--dtype", "bfloat16", "--lr", "1e-6")
    _, w32 = run(setup, tmp_path, "f32", "--lr", "1e-6")
    saved = torch.load(tmp_path / "bf16.pt", weights_only=True)["model"]
    assert all(v.dtype == torch.float32 for v in saved.values())
    d16 = torch.cat([(w[k] - start[k]).flatten() for k in start])
    d32 = torch.cat([(w32[k] - start[k]).flatten() for k in start])
    big = torch.cat([start[k].flatten() for k in start]).abs() > 0.01
    moved = big & (d32 != 0)
    assert moved.sum() > 1000
    assert (d16[moved].abs() < 1e-5).all()  # steps of ~lr, not bf16 rounding (~1e-4 at |w| = 0.02)
    # the float32 run's update, in bf16
    assert (d16[moved].sign() == d32[moved].sign()).float().mean() > 0.9


def test_ppo_epochs_take_several_steps_and_their_stats_are_averaged(setup, tmp_path):
    log, w = run(setup, tmp_path, "e2", "--ppo-epochs", "2")
    _, w1 = run(setup, tmp_path, "e1")
    assert all(0.9 < r["ratio_mean"] < 1.1 for r in log)  # a mean over epochs (summed, it was 2.0)
    assert any(r["ratio_mean"] != 1.0 for r in log)  # the second epoch's ratio moved off 1
    assert max_change(w, w1) > 0


def test_top_k_1_samples_the_planted_path_even_at_temperature_10(setup, tmp_path):
    # at temperature 10 the ~400 unplanted tokens get a share at every position and many rollouts
    # lose their verdict; top-k 1 keeps only the most likely token (both of the tied `A` and `B`
    # after `[[`)
    plain, _ = run(setup, tmp_path, "k0", "--temperature", "10", "--prompts", "8")
    top1, _ = run(setup, tmp_path, "k1", "--temperature", "10", "--prompts", "8", "--top-k", "1")
    assert min(r["no_verdict"] for r in plain) > 0.1
    assert max(r["no_verdict"] for r in top1) == 0.0 and top1[0]["flat_groups"] < 8


def test_clip_eps_and_clip_eps_high_reach_the_loss(setup, tmp_path):
    tight, _ = run(setup, tmp_path, "tight", "--ppo-epochs", "2", "--clip-eps", "1e-4")
    high, _ = run(setup, tmp_path, "high", "--ppo-epochs", "2", "--clip-eps", "1e-4",
                  "--clip-eps-high", "10")
    default, _ = run(setup, tmp_path, "default", "--ppo-epochs", "2")
    assert default[0]["clip_frac"] < tight[0]["clip_frac"]
    assert high[0]["clip_frac"] < tight[0]["clip_frac"]  # only the lower side still clips


def test_loss_types_and_reward_scaling_give_different_updates(setup, tmp_path):
    # temperature 10 makes the completions' lengths differ, without which grpo and dapo weigh tokens
    # alike
    hot = ["--temperature", "10", "--prompts", "8"]
    options = [["--loss-type", "grpo"], ["--loss-type", "dapo"], ["--loss-type", "dr_grpo"],
               ["--scale-rewards", "none"]]
    ws = [run(setup, tmp_path, f"lt{i}", *hot, *extra)[1] for i, extra in enumerate(options)]
    assert all(max_change(ws[i], ws[j]) > 0 for i in range(4) for j in range(i))


def test_format_penalty_scores_a_missing_verdict_below_a_wrong_one(setup, tmp_path):
    # many rollouts lose their verdict at temperature 10
    hot = ["--temperature", "10", "--prompts", "8"]
    plain, _ = run(setup, tmp_path, "fp0", *hot)
    pen, _ = run(setup, tmp_path, "fp1", *hot, "--format-penalty", "1")
    # the same rollouts at step 1: the same weights, the same seed
    assert plain[0]["no_verdict"] > 0
    assert pen[0]["reward"] == pytest.approx(plain[0]["reward"] - plain[0]["no_verdict"])


def test_dynamic_sampling_leaves_flat_groups_out_of_the_loss(setup, tmp_path):
    plain, _ = run(setup, tmp_path, "ds0")
    dyn, _ = run(setup, tmp_path, "ds1", "--dynamic-sampling")
    assert plain[0]["flat_groups"] > 0 and dyn[0]["flat_groups"] == plain[0]["flat_groups"]
    assert dyn[0]["loss_tokens"] < plain[0]["loss_tokens"]


def test_clip_grad_bounds_the_update(setup, tmp_path, start):
    log, w = run(setup, tmp_path, "cg", "--clip-grad", "1e-12")
    _, w0 = run(setup, tmp_path, "cg0", "--clip-grad", "0")
    assert log[0]["grad_norm"] > 1e-6  # logged before clipping
    # Adam's step on a 1e-12 gradient is ~eps-bound
    assert 0 < max_change(w, start) < 0.01 * max_change(w0, start)


