"""The RL objectives as small pure functions: GRPO's group-relative advantages, REINFORCE++'s
per-token returns whitened over the batch, and the clipped, optionally KL-regularised policy loss
with TRL's three reductions. The step that calls them (rollouts, scoring, the optimiser) is
j1_min/rl.py."""
from __future__ import annotations

import math
from typing import Callable

import torch

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")
KL_CLAMP = 10.0  # |k1| per token at most, as OpenRLHF's compute_approx_kl clamps it


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """sum(x · mask) / max(sum(mask), 1) over `dim` (all elements when None).

    The clamp makes an empty mask give 0 instead of 0/0 = NaN."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group") -> torch.Tensor:
    """Group-relative advantages, one per completion.

    scale="group":  A_i = (r_i − mean(r_g)) / (std(r_g) + 1e-4)
    scale="none":   A_i =  r_i − mean(r_g)

    r_g is the group of `group_size` completions of the same prompt that holds i.
    std uses Bessel's correction (torch.std's default, as TRL's GRPOTrainer).
    Sources: DeepSeekMath (Shao et al. 2024) §4.1.2 "outcome supervision";
    scale="none" is Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like
    Training"), which drops the std division; TRL calls the flag scale_rewards.

    rewards: (N,) ordered group by group, N = num_prompts · group_size.
    Returns (N,). A group whose rewards are all equal gets advantage 0.
    """
    if rewards.dim() != 1:
        raise ValueError("grpo.group_advantages: rewards must be 1-D (N,), got shape "
                         f"{tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError(f"grpo.group_advantages: group_size must be >= 2, got {group_size}")
    if rewards.numel() % group_size != 0:
        raise ValueError(f"grpo.group_advantages: {rewards.numel()} rewards do not split into "
                         f"groups of {group_size}")
    if scale not in ("group", "none"):
        raise ValueError(f"grpo.group_advantages: scale must be 'group' or 'none', got {scale!r}")
    r = rewards.float().view(-1, group_size)                      # (P, G)
    centred = r - r.mean(dim=1, keepdim=True)                     # (P, G)
    if scale == "group":
        centred = centred / (r.std(dim=1, keepdim=True) + 1e-4)   # unbiased std
    return centred.reshape(-1)                                    # (N,)


def k1_kl(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token k1 estimate of KL(π_old || π_ref), clamped as OpenRLHF clamps it:

        k1_t = clamp(log π_old(y_t) − log π_ref(y_t), −10, 10)   on masked tokens, 0 elsewhere

    Schulman, "Approximating KL divergence" (2020), k1; OpenRLHF openrlhf/models/utils.py
    compute_approx_kl (kl_estimator="k1", the estimator REINFORCE++ puts in the reward). logp,
    ref_logp, mask: (N, T) -> (N, T)."""
    keep = mask.bool()
    d = torch.where(keep, logp.float() - ref_logp.float(),
                    torch.zeros_like(logp, dtype=torch.float))
    return d.clamp(-KL_CLAMP, KL_CLAMP)                           # (N, T)


def reinforce_pp_returns(rewards: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None,
                         *, beta: float = 0.0, gamma: float = 1.0) -> torch.Tensor:
    """REINFORCE++'s per-token returns (Hu et al. 2025, arXiv 2501.03262, sec. 3; OpenRLHF
    compute_reward and get_cumulative_returns).

        r_t = −β · k1_t + R · [t = the last masked token]         (0 on unmasked tokens)
        G_t = r_t + γ · G_{t+1},   G_T = 0                         (reverse cumulative sum over all
                                                                    positions)

    R (the verifiable reward of the sequence) lands on its last sampled token. Unmasked positions
    (forced "Wait", a forced `</think>`, padding) carry no reward but still count as steps for γ, as
    OpenRLHF masks the rewards and then sums over every position. rewards: (N,); mask, kl: (N, T)
    (kl from k1_kl; None means 0). Returns G: (N, T); a row with no masked token gets all zeros."""
    m = mask.float()                                              # (N, T)
    N, T = m.shape
    last = T - 1 - m.flip(1).argmax(1)  # (N,) index of the last masked token
    r = torch.zeros(N, T).to(m)
    r[torch.arange(N), last] = rewards.float().to(m.device)
    if kl is not None and beta != 0.0:
        r = r - beta * kl.float()
    r = r * m                                                     # (N, T)
    G = torch.zeros_like(r)
    running = torch.zeros(N).to(m)
    for t in range(T - 1, -1, -1):
        running = r[:, t] + gamma * running
        G[:, t] = running
    return G


def whiten(x: torch.Tensor, mask: torch.Tensor,
           all_sum: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> torch.Tensor:
    """(x − μ) / sqrt(max(σ², 1e-8)) on masked tokens (0 elsewhere), μ and σ² the masked mean and
    (biased) variance over every token of the global batch: all_sum sums a tensor over the processes
    (identity with one), so under DDP every rank whitens with the same μ and σ (REINFORCE++ sec. 3,
    "global batch normalisation"; OpenRLHF compute_advantages_and_returns, and its replay buffer's
    all-reduced normalize before that).

        μ  = Σ_all x·m / Σ_all m
        σ² = Σ_all (x − μ)²·m / Σ_all m

    x, mask: (N, T) -> (N, T)."""
    m = mask.float()
    x = x.float()
    sums = all_sum(torch.stack([(x * m).sum(), m.sum()]))         # (2,) over all processes
    count = sums[1].clamp(min=1.0)
    mean = sums[0] / count
    var = all_sum(((x - mean) ** 2 * m).sum()) / count
    return (x - mean) * var.clamp(min=1e-8).rsqrt() * m           # (N, T)


def reinforce_pp_advantages(rewards: torch.Tensor, mask: torch.Tensor,
                            kl: torch.Tensor | None = None, *, beta: float = 0.0,
                            gamma: float = 1.0, group_size: int | None = None, all_sum: Callable[
                                [torch.Tensor], torch.Tensor] = lambda t: t) -> torch.Tensor:
    """REINFORCE++ advantages, (N, T): whiten(reinforce_pp_returns(R', ...)) over the global batch.

        R' = R                              (REINFORCE++: no baseline; the batch whitening centres)
        R' = R − mean(R_group)              (group_size given: OpenRLHF's "reinforce_baseline", the
                                             variant REINFORCE++-baseline of the paper's sec. 3; γ
                                             must be 1 there, as OpenRLHF sets it)

    Sources: Hu et al. 2025 (arXiv 2501.03262); OpenRLHF trainer/ppo_utils/experience_maker.py
    compute_advantages_and_returns. rewards (N,), groups of group_size consecutive rows; mask, kl
    (N, T)."""
    if group_size is not None:
        if gamma != 1.0:
            raise ValueError("reinforce_pp_baseline needs gamma 1 (OpenRLHF forces it), got "
                             f"{gamma}")
        rewards = group_advantages(rewards, group_size, scale="none")
    returns = reinforce_pp_returns(rewards, mask, kl, beta=beta, gamma=gamma)
    return whiten(returns, mask, all_sum)


def loss_normalizer(mask: torch.Tensor, loss_type: str) -> torch.Tensor:
    """The denominator each reduction of grpo_loss divides by: number of masked tokens ("dapo"), of
    sequences with at least one ("grpo"), or N · T ("dr_grpo"). A loop that splits a batch into
    micro-batches scales each one's loss by its normaliser over the whole batch's, and so gets
    exactly the whole batch's loss. mask: (N, T)."""
    m = mask.float()
    if loss_type == "dapo":
        return m.sum()
    if loss_type == "grpo":
        return (m.sum(-1) > 0).float().sum()
    if loss_type == "dr_grpo":
        return torch.tensor(float(m.numel()), device=m.device)
    raise ValueError(f"grpo.loss_normalizer: loss_type must be one of {LOSS_TYPES}, got "
                     f"{loss_type!r}")


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    beta: float = 0.0,
    loss_type: str = "dapo",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped GRPO surrogate with an optional k3 KL penalty (DeepSeekMath eq. 3-4); with per-token
    advantages A_it it is REINFORCE++'s PPO-clip loss (OpenRLHF PolicyLoss, whose token-level mean
    is "dapo").

    Per completion token t of sequence i, with ρ = exp(logp − old_logp):
        ℓ_it = −min(ρ·A_it, clip(ρ, 1 − ε_low, 1 + ε_high)·A_it) + β·k3_it   (A_it = A_i for GRPO)
        k3_it = exp(ref − logp) − (ref − logp) − 1
                                    (Schulman's k3, DeepSeekMath eq. 4; always >= 0)
    ε_low = clip_eps; ε_high = clip_eps_high, or clip_eps when None
    (a larger ε_high is DAPO's "clip-higher", Yu et al. 2025).

    Reduction over the masked tokens M (loss_type):
        "grpo":    mean over the sequences with |M_i| > 0 of (1/|M_i|) Σ_t ℓ_it
                                                                                (DeepSeekMath eq. 3)
        "dapo":    Σ_{i,t∈M} ℓ_it / |M|                                         (DAPO, token-level)
        "dr_grpo": Σ_{i,t∈M} ℓ_it / (N · T),  T = mask.shape[-1]                (Dr. GRPO)
    TRL's "grpo" averages over all N sequences, empty ones included; here an empty
    sequence (e.g. fully forced) does not dilute the others.

    Defaults follow TRL's GRPOTrainer: loss_type="dapo", beta=0.0, epsilon=0.2.

    Shapes: logp, old_logp, ref_logp, mask (N, T); advantages (N,) or (N, T). mask is bool or
    0/1 float and is 1 only on sampled completion tokens (not prompt, forced or pad).
    Masked-out tokens are zeroed before exp, so garbage there (±inf, overflow) can
    not leak NaN into the loss or its gradient. An all-zero mask gives loss 0.

    A non-finite loss, k3 or ratio on masked tokens raises ValueError (never a silent NaN update).

    stats (python floats, over masked tokens):
        "clip_frac":  fraction where the clipped term is the active one, as TRL:
                      (ρ < 1 − ε_low and A < 0) or (ρ > 1 + ε_high and A > 0)
        "k3":         mean k3 (0.0 when ref_logp is None)
        "ratio_mean": mean ρ
    """
    _check_loss_args(logp, old_logp, ref_logp, advantages, mask, beta, loss_type)
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    keep = mask.bool()                                                    # (N, T)
    m = keep.to(logp.dtype)                                               # (N, T)
    A = advantages.to(logp.dtype)
    A = A if A.dim() == 2 else A.unsqueeze(1)                             # (N, T) or (N, 1)

    log_ratio = torch.where(keep, logp - old_logp, torch.zeros_like(logp))  # (N, T)
    ratio = torch.exp(log_ratio)                                            # (N, T)
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + eps_high)            # (N, T)
    per_token = -torch.min(ratio * A, clipped * A)                          # (N, T)

    k3 = None
    if ref_logp is not None:
        d = torch.where(keep, ref_logp - logp, torch.zeros_like(logp))      # (N, T)
        k3 = torch.exp(d) - d - 1.0                                         # (N, T), >= 0
        if beta != 0.0:
            per_token = per_token + beta * k3

    if loss_type == "grpo":
        per_seq = masked_mean(per_token, m, dim=-1)                         # (N,)
        has_tokens = (m.sum(-1) > 0).to(logp.dtype)                         # (N,)
        loss = masked_mean(per_seq, has_tokens)
    elif loss_type == "dapo":
        loss = masked_mean(per_token, m)
    else:  # dr_grpo
        loss = (per_token * m).sum() / max(m.shape[0] * m.shape[1], 1)

    with torch.no_grad():
        is_clipped = ((ratio < 1.0 - clip_eps) & (A < 0)) | ((ratio > 1.0 + eps_high) & (A > 0))
        stats = {
            "loss": loss.item(),
            "clip_frac": masked_mean(is_clipped.to(logp.dtype), m).item(),
            "k3": masked_mean(k3, m).item() if k3 is not None else 0.0,
            "ratio_mean": masked_mean(ratio, m).item(),
        }
    bad = [k for k in ("loss", "k3", "ratio_mean") if not math.isfinite(stats[k])]
    if bad:  # a NaN here would reach every weight through the backward
        raise ValueError(f"grpo.grpo_loss: non-finite {', '.join(bad)} on sampled tokens "
                         f"({stats}): the policy's log-probabilities are NaN or infinite, so the "
                         "weights have diverged (try a lower --lr); no update was made from this "
                         "batch")
    return loss, stats


def _check_loss_args(logp, old_logp, ref_logp, advantages, mask, beta: float,
                     loss_type: str) -> None:
    """grpo_loss's arguments checked, the first bad one a ValueError: a known loss_type, ref_logp
    when β != 0, every (N, T) tensor of logp's shape, advantages (N,) or (N, T)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"grpo.grpo_loss: loss_type must be one of {LOSS_TYPES}, got "
                         f"{loss_type!r}")
    if beta != 0.0 and ref_logp is None:
        raise ValueError("grpo.grpo_loss: beta != 0 needs ref_logp")
    for name, t in (("old_logp", old_logp), ("ref_logp", ref_logp), ("mask", mask)):
        if t is not None and t.shape != logp.shape:
            raise ValueError(f"grpo.grpo_loss: {name} shape {tuple(t.shape)} != logp shape "
                             f"{tuple(logp.shape)}")
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(f"grpo.grpo_loss: advantages shape {tuple(advantages.shape)} is neither "
                         f"({logp.shape[0]},) nor {tuple(logp.shape)}")
