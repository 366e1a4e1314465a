"""One RL step in four named parts, shared by train_grpo.py and bench/grpo.py so that both run the
same code:

    rollout     sample G completions of each prompt with the KV-cached sampler (budget forcing
                optional)
    scoring     the verifiable reward of each completion (judge_format.reward)
    advantages  GRPO's group-relative ones, or REINFORCE++'s per-token returns whitened over the
                global batch
    update      --ppo-epochs optimizer steps of the clipped surrogate (grpo.grpo_loss),
                micro-batched by length (micro_batches)

The training forwards (the policy with gradients, the frozen reference, and REINFORCE++'s old
policy) run in the float32 master weights, under bfloat16 autocast with --dtype bfloat16, as
train_sft.py does.
"""
from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, fields

import torch

from . import runs, shard
from .grpo import group_advantages, grpo_loss, k1_kl, loss_normalizer, reinforce_pp_advantages
from .judge_format import J1_MIN, completion_text, parse_verdict, reward
from .logprobs import selected_logprobs
from .sampling import Generation, generate

ALGOS = ("grpo", "reinforce_pp", "reinforce_pp_baseline")


@dataclass(frozen=True)
class RLConfig:
    """The options of one step; train_grpo.py's flags of the same names (--help) say what each
    does."""
    algo: str
    group: int
    temperature: float
    top_k: int
    top_p: float
    max_new_tokens: int
    clip_eps: float
    clip_eps_high: float | None
    beta: float
    gamma: float
    loss_type: str
    scale_rewards: str
    format_penalty: float
    dynamic_sampling: bool
    ppo_epochs: int
    micro: int
    clip_grad: float
    dtype: str

    @classmethod
    def from_args(cls, args) -> RLConfig:
        """The fields of the same names from an argparse namespace."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def autocast(cfg: RLConfig, device: torch.device):
    """bfloat16 autocast with --dtype bfloat16 (weights and AdamW state stay float32), else a
    no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")


def parse_budget(text: str) -> tuple[int, int]:
    """train_grpo.py --budget: "N" (every rollout forced N times) or "LO-HI" (each group's budget
    drawn uniformly from LO..HI, see group_budgets) as (LO, HI)."""
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", str(text).strip())
    if not m or int(m.group(2) or m.group(1)) < int(m.group(1)):
        raise ValueError(f"--budget {text!r}: expected N or LO-HI with 0 <= LO <= HI, e.g. 2 "
                         "or 0-3")
    return int(m.group(1)), int(m.group(2) or m.group(1))


def group_budgets(budget: tuple[int, int], groups: int, step: int, seed: int) -> list[int]:
    """The forcing budget of each of a step's `groups` groups (all processes' groups, in order),
    drawn uniformly from budget = (LO, HI). A pure function of (seed, step), like the step's prompts
    (data.step_order), so a resumed run draws what the uninterrupted run drew. All G rollouts of a
    group share its budget, so GRPO's group-relative advantage compares completions under the same
    forcing."""
    rng = random.Random(f"budget:{seed}:{step}")
    return [rng.randint(*budget) for _ in range(groups)]


# ------------------------------------------------------------------------------------------------
# the parts

def rollout(policy, prompts: list[list[int]], cfg: RLConfig, forcing: dict,
            seed: int) -> list[Generation]:
    """G completions per prompt (`prompts` repeats each prompt G times; generate prefills it once).
    forcing's budget may be one per row (sampling.generate), as train_grpo.py gives it for a budget
    drawn per group."""
    policy.eval()
    with torch.no_grad():
        gens = generate(policy, prompts, cfg.max_new_tokens, temperature=cfg.temperature,
                        top_k=cfg.top_k, top_p=cfg.top_p, seed=seed, **forcing)
    policy.train()
    return gens


def score(tok, gens: list[Generation], labels: list[str], format_penalty: float,
          template=J1_MIN) -> tuple[torch.Tensor, list]:
    """(rewards (N,), verdicts): judge_format.reward of each completion against its label, under the
    template."""
    texts = [completion_text(tok, g) for g in gens]
    rewards = torch.tensor([reward(t, y, format_penalty, template) for t, y in zip(texts, labels)])
    return rewards, [parse_verdict(t, template) for t in texts]


def rollout_tensors(prompts, gens: list[Generation], T: int, device):
    """Pack prompts + completions for the log-prob recomputation.

    Returns input_ids (N, L) (right-padded), targets (N, L), index (N, T) of each completion token's
    predicting position, the sampler's log-probs (N, T), and mask (N, T): 1 on sampled completion
    tokens only (prompt, forced "Wait" / `</think>` and padding tokens carry no gradient, no KL and
    no reward)."""
    N = len(gens)
    L = max(len(p) + len(g.tokens) for p, g in zip(prompts, gens))
    ids = torch.zeros(N, L + 1, dtype=torch.long)
    index = torch.zeros(N, T, dtype=torch.long)
    old = torch.zeros(N, T)
    mask = torch.zeros(N, T)
    for i, (p, g) in enumerate(zip(prompts, gens)):
        n = len(g.tokens)
        ids[i, :len(p) + n] = torch.tensor(p + g.tokens)
        index[i, :n] = torch.arange(len(p) - 1, len(p) - 1 + n)  # position t predicts token t + 1
        old[i, :n] = torch.tensor(g.logprobs)
        mask[i, :n] = 1.0 - torch.tensor(g.forced, dtype=torch.float)
    to = lambda t: t.to(device)
    return to(ids[:, :-1]), to(ids[:, 1:]), to(index), to(old), to(mask)


def flat_groups(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """(P,) bool: the groups whose rewards are all equal (GRPO gives them advantage 0)."""
    r = rewards.view(-1, group)
    return r.max(1).values == r.min(1).values


def micro_batches(index: torch.Tensor, micro: int) -> list[tuple[torch.Tensor, int]]:
    """The rows in micro-batches of `micro`, longest first, each with the input length its rows
    need (the position that predicts their last completion token, + 1): [(rows (n,), length)].

    A micro-batch is cut to that length, so the short rollouts of a step do not pay for the longest
    one's padding in every forward and backward; the longest come first, so a batch too big for
    memory fails at once. Exact: the cut positions are right padding, which causal attention never
    lets an earlier position see, and the loss is a sum over micro-batches, so their makeup does
    not change it. index: (N, T), rollout_tensors' (0 on padding)."""
    need = index.max(1).values + 1  # (N,)
    order = torch.argsort(need, descending=True, stable=True)
    return [(rows, int(need[rows].max())) for rows in order.split(micro)]


def completion_logprobs(model, inp, tgt, index, cfg: RLConfig) -> torch.Tensor:
    """log π(y_t) of every completion token, (N, T), without gradients, micro-batched by length,
    under the training autocast: the frozen reference's, or REINFORCE++'s old policy's for the KL in
    its reward."""
    out = torch.zeros(index.shape, device=inp.device)  # (N, T)
    with torch.no_grad(), autocast(cfg, inp.device):
        for rows, n in micro_batches(index, cfg.micro):
            out[rows] = selected_logprobs(model, inp[rows, :n], tgt[rows, :n],
                                          temperature=cfg.temperature).gather(1, index[rows])
    shard.reshard(model)  # no backward follows, so a sharded root would stay gathered
    return out


def advantages(cfg: RLConfig, rewards: torch.Tensor, mask: torch.Tensor, d: runs.Dist,
               old_logp: torch.Tensor | None = None, ref_logp: torch.Tensor | None = None):
    """(advantages, mean k1 or None): GRPO's (N,) group-relative advantages (grpo.group_advantages),
    or REINFORCE++'s (N, T) whitened returns (grpo.reinforce_pp_advantages) with β·k1 in the reward
    when ref_logp is given and the whitening statistics summed over all processes."""
    rewards = rewards.to(mask.device)
    if cfg.algo == "grpo":
        return group_advantages(rewards, cfg.group, cfg.scale_rewards), None
    kl = k1_kl(old_logp, ref_logp, mask) if ref_logp is not None else None
    adv = reinforce_pp_advantages(rewards, mask, kl, beta=cfg.beta, gamma=cfg.gamma,
                                  group_size=cfg.group if cfg.algo == "reinforce_pp_baseline"
                                  else None,
                                  all_sum=lambda t: runs.all_sum(t, d))
    kl_mean = None if kl is None else (runs.all_sum(torch.stack([kl.sum(), mask.sum()]),
                                                    d)).tolist()
    return adv, None if kl_mean is None else kl_mean[0] / max(kl_mean[1], 1.0)


def policy_update(model, opt, inp, tgt, index, mask, adv, cfg: RLConfig, d: runs.Dist,
                  old_logp: torch.Tensor | None = None, ref_logp: torch.Tensor | None = None,
                  sampler_logp: torch.Tensor | None = None) -> dict:
    """cfg.ppo_epochs optimizer steps on grpo_loss over the rows in micro-batches of cfg.micro, by
    length (micro_batches); the gradient is the whole batch's (each micro-batch's loss weighted by
    its share of loss_normalizer over all processes).

    π_old is old_logp when given, else the first epoch's own log-probs (detached): before the first
    optimizer step they are the rollout policy's, computed under the training autocast (TRL does the
    same), so the first epoch's ratio is exactly 1. ref_logp (GRPO with β > 0) adds β·k3 to the
    loss. A non-finite gradient norm raises ValueError before the optimizer step. Returns the stats
    of grpo_loss averaged over micro-batches and epochs, the gradient norm before clipping (last
    epoch) and logp_diff_max, the largest |π_old − sampler_logp| on masked tokens (the sampler and
    the trainer agree to float rounding in float32)."""
    bare = getattr(model, "module", model)
    # the whole step's normaliser
    total = runs.all_sum(loss_normalizer(mask, cfg.loss_type), d).clamp(min=1)
    batches = micro_batches(index, cfg.micro)
    stats, fresh_old, diff = {}, [], 0.0
    for epoch in range(cfg.ppo_epochs):
        for j, (sl, n) in enumerate(batches):  # sl: the micro-batch's rows, n: their input length
            sync = j == len(batches) - 1
            with runs.no_sync(model, sync), autocast(cfg, d.device):
                logp = selected_logprobs(model, inp[sl, :n], tgt[sl, :n],
                                         temperature=cfg.temperature).gather(1, index[sl])
                if old_logp is None and epoch == 0:
                    fresh_old.append(logp.detach())
                old = old_logp[sl] if old_logp is not None else fresh_old[j]
                if epoch == 0 and sampler_logp is not None and mask[sl].any():
                    diff = max(diff, (old - sampler_logp[sl])[mask[sl].bool()].abs().max().item())
                loss, st = grpo_loss(logp, old, None if ref_logp is None else ref_logp[sl], adv[sl],
                                     mask[sl], clip_eps=cfg.clip_eps,
                                     clip_eps_high=cfg.clip_eps_high, beta=cfg.beta
                                     if cfg.algo == "grpo" else 0.0, loss_type=cfg.loss_type)
                # the micro-batch's share of the step's loss; * world because DDP and FSDP average
                # gradients
                (loss * loss_normalizer(mask[sl], cfg.loss_type) / total * d.world).backward()
            for k, v in st.items():
                stats[k] = stats.get(k, 0.0) + v / (len(batches) * cfg.ppo_epochs)
        limit = cfg.clip_grad if cfg.clip_grad > 0 else float("inf")
        norm = shard.clip_grad_norm(bare.parameters(), limit)  # (); before clipping
        if not torch.isfinite(norm):
            raise ValueError(f"the gradient norm is {norm.item()}: the weights would become NaN "
                             "(try a lower --lr); no update was made from this batch")
        opt.step()
        opt.zero_grad(set_to_none=True)
    stats["grad_norm"], stats["logp_diff_max"] = norm.item(), diff
    return stats


# ------------------------------------------------------------------------------------------------
# the step

def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def step(model, ref, opt, tok, prompts: list[list[int]], labels: list[str], cfg: RLConfig,
         d: runs.Dist, *, forcing: dict, seed: int, template=J1_MIN, sampler=None) -> dict:
    """One RL step on this process's rows: rollout, scoring, advantages, policy update. `model` is
    the policy, DDP-wrapped under torchrun (or sharded, --shard); `ref` the frozen reference (None
    when β = 0); `template` parses the verdicts; `sampler` a function that returns the weights to
    sample with (default: the policy itself; under --shard, shard.full_model's gathered copy, so
    that generation needs no collective per token). A function, not the copy: the copy is made for
    the rollout and is held by nothing once the rollout returns, so its memory (30.5 GB per rank for
    J1-7B) is free before the update; an argument would live in this frame until the step returns.
    Returns the step's metrics (rollout figures averaged over all processes) and the seconds of each
    part (this process's)."""
    policy = getattr(model, "module", model)
    t = [_clock(d.device)]
    gens = rollout(sampler() if sampler else policy, prompts, cfg, forcing, seed)  # 1. rollout
    t.append(_clock(d.device))
    rewards, verdicts = score(tok, gens, labels, cfg.format_penalty, template)  # 2. scoring
    t.append(_clock(d.device))
    inp, tgt, index, sampler_logp, mask = rollout_tensors(prompts, gens, cfg.max_new_tokens,
                                                          d.device)
    flat = flat_groups(rewards, cfg.group)  # 3. advantages
    # DAPO: groups without signal leave the loss (and REINFORCE++'s whitening)
    if cfg.dynamic_sampling:
        mask = mask * (~flat).repeat_interleave(cfg.group).float()[:, None].to(d.device)
    ref_logp = completion_logprobs(ref, inp, tgt, index, cfg) if ref is not None else None
    old_logp = None  # REINFORCE++ needs π_old before the update, for the KL in its reward
    if cfg.algo != "grpo" and ref is not None:
        old_logp = completion_logprobs(policy, inp, tgt, index, cfg)
    adv, k1 = advantages(cfg, rewards, mask, d, old_logp, ref_logp)
    t.append(_clock(d.device))
    # 4. policy update
    stats = policy_update(model, opt, inp, tgt, index, mask, adv, cfg, d, old_logp,
                          ref_logp if cfg.algo == "grpo" else None, sampler_logp)
    t.append(_clock(d.device))
    n_tok = sum(len(g.tokens) for g in gens)
    m = {"reward": rewards.mean().item(), "accuracy": sum(v == y for v, y in zip(verdicts, labels))
         / len(gens),
         "no_verdict": sum(v is None for v in verdicts) / len(gens),
         "completion_len": n_tok / len(gens), "waits": sum(g.num_waits for g in gens) / len(gens)}
    if d.world > 1:  # the logged figures cover every process's groups
        m = {k: runs.all_sum(torch.tensor(v), d).item() / d.world for k, v in m.items()}
    m["flat_groups"] = int(runs.all_sum(flat.sum(), d).item())
    m["loss_tokens"] = int(runs.all_sum(mask.sum(), d).item())
    m.update({k: stats[k] for k in ("clip_frac", "k3", "ratio_mean", "grad_norm", "logp_diff_max")})
    if k1 is not None:
        m["k1"] = k1
    m.update({f"{k}_s": b - a for k, a, b in zip(("rollout", "scoring", "advantages", "update"), t,
                                                 t[1:])})
    m["step_s"], m["rollout_tok_s"] = t[-1] - t[0], n_tok / (t[1] - t[0])
    return m
