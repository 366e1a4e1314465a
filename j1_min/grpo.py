"""The GRPO objective as small pure functions: group-relative advantages and the
clipped, optionally KL-regularised policy loss with TRL's three reductions.
Rollout generation and the optimiser step live in train_grpo.py, not here."""
from __future__ import annotations

import torch

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")


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
        raise ValueError(f"grpo.group_advantages: rewards must be 1-D (N,), got shape {tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError(f"grpo.group_advantages: group_size must be >= 2, got {group_size}")
    if rewards.numel() % group_size != 0:
        raise ValueError(f"grpo.group_advantages: {rewards.numel()} rewards do not split into groups of {group_size}")
    if scale not in ("group", "none"):
        raise ValueError(f"grpo.group_advantages: scale must be 'group' or 'none', got {scale!r}")
    r = rewards.float().view(-1, group_size)                      # (P, G)
    centred = r - r.mean(dim=1, keepdim=True)                     # (P, G)
    if scale == "group":
        centred = centred / (r.std(dim=1, keepdim=True) + 1e-4)   # unbiased std
    return centred.reshape(-1)                                    # (N,)


def loss_normalizer(mask: torch.Tensor, loss_type: str) -> torch.Tensor:
    """The denominator each reduction of grpo_loss divides by: number of masked tokens ("dapo"), of sequences with
    at least one ("grpo"), or N · T ("dr_grpo"). A loop that splits a batch into micro-batches scales each one's
    loss by its normaliser over the whole batch's, and so gets exactly the whole batch's loss. mask: (N, T)."""
    m = mask.float()
    if loss_type == "dapo":
        return m.sum()
    if loss_type == "grpo":
        return (m.sum(-1) > 0).float().sum()
    if loss_type == "dr_grpo":
        return torch.tensor(float(m.numel()), device=m.device)
    raise ValueError(f"grpo.loss_normalizer: loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


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
    """Clipped GRPO surrogate with an optional k3 KL penalty (DeepSeekMath eq. 3-4).

    Per completion token t of sequence i, with ρ = exp(logp − old_logp):
        ℓ_it = −min(ρ·A_i, clip(ρ, 1 − ε_low, 1 + ε_high)·A_i) + β·k3_it
        k3_it = exp(ref − logp) − (ref − logp) − 1   (Schulman's k3, DeepSeekMath eq. 4; always >= 0)
    ε_low = clip_eps; ε_high = clip_eps_high, or clip_eps when None
    (a larger ε_high is DAPO's "clip-higher", Yu et al. 2025).

    Reduction over the masked tokens M (loss_type):
        "grpo":    mean over the sequences with |M_i| > 0 of (1/|M_i|) Σ_t ℓ_it   (DeepSeekMath eq. 3)
        "dapo":    Σ_{i,t∈M} ℓ_it / |M|                                         (DAPO, token-level)
        "dr_grpo": Σ_{i,t∈M} ℓ_it / (N · T),  T = mask.shape[-1]                (Dr. GRPO)
    TRL's "grpo" averages over all N sequences, empty ones included; here an empty
    sequence (e.g. fully forced) does not dilute the others.

    Defaults follow TRL's GRPOTrainer: loss_type="dapo", beta=0.0, epsilon=0.2.

    Shapes: logp, old_logp, ref_logp, mask (N, T); advantages (N,). mask is bool or
    0/1 float and is 1 only on sampled completion tokens (not prompt, forced or pad).
    Masked-out tokens are zeroed before exp, so garbage there (±inf, overflow) can
    not leak NaN into the loss or its gradient. An all-zero mask gives loss 0.

    stats (python floats, over masked tokens):
        "clip_frac":  fraction where the clipped term is the active one, as TRL:
                      (ρ < 1 − ε_low and A < 0) or (ρ > 1 + ε_high and A > 0)
        "k3":         mean k3 (0.0 when ref_logp is None)
        "ratio_mean": mean ρ
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"grpo.grpo_loss: loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if beta != 0.0 and ref_logp is None:
        raise ValueError("grpo.grpo_loss: beta != 0 needs ref_logp")
    for name, t in (("old_logp", old_logp), ("ref_logp", ref_logp), ("mask", mask)):
        if t is not None and t.shape != logp.shape:
            raise ValueError(f"grpo.grpo_loss: {name} shape {tuple(t.shape)} != logp shape {tuple(logp.shape)}")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"grpo.grpo_loss: advantages shape {tuple(advantages.shape)} != ({logp.shape[0]},)")
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    keep = mask.bool()                                                    # (N, T)
    m = keep.to(logp.dtype)                                               # (N, T)
    A = advantages.to(logp.dtype).unsqueeze(1)                            # (N, 1)

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
    return loss, stats
