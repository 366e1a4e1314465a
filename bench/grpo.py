"""Where the time of one RL step goes, per algorithm and dtype: rollout, scoring, advantages, policy
update.

    python bench/grpo.py --ckpt j1_min/embedded/j1-tiny --threads 2
        # a trained tiny judge: real lengths
    python bench/grpo.py --algo all --dtype both --prompts 2 --group 4
        # a random tiny model (runs to the cap)
    python bench/grpo.py --ckpt j1_min/embedded/j1-tiny --threads 2 --micro-batching both
        # the update's micro-batches by length (rl.micro_batches) against in order

Each step is j1_min.rl.step, the function train_grpo.py calls, on B=8 prompts x G=8 samples of the
synthetic task (temperature 1, β 0, one update per batch unless told otherwise). The configurations
(--algo x --dtype) take their steps in turn on the same prompts, so a noisy machine slows them
alike; one warm-up round, then the median of --reps rounds. The policy is updated at lr 1e-6 and
each configuration keeps its own copy, optimizer included. --micro-batching in-order times the
update as it was before rl.micro_batches: the rows in order, every micro-batch padded to the step's
longest row (the bench swaps rl.micro_batches for that split; the gradient is the same, as
tests/test_train_grpo.py checks).
"""
from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from j1_min import rl, runs  # noqa: E402
from j1_min.checkpoint import load_judge  # noqa: E402
from j1_min.judge_format import build_prompt, encode_prompt, forcing_kwargs  # noqa: E402
from j1_min.model import TINY, ModelConfig, Transformer  # noqa: E402
from j1_min.rl import ALGOS, RLConfig, step  # noqa: E402
from j1_min.tasks import make_pairs  # noqa: E402
from j1_min.tokenizer import train_bpe  # noqa: E402

PARTS = ("rollout", "scoring", "advantages", "update")
BY_LENGTH = rl.micro_batches


def in_order(index: torch.Tensor, micro: int) -> list[tuple[torch.Tensor, int]]:
    """The update's split before rl.micro_batches: rows in order, all cut to the longest row."""
    rows = torch.arange(index.shape[0], device=index.device)
    return [(r, int(index.max()) + 1) for r in rows.split(micro)]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="policy (.pt or HF folder); default: a random tiny model")
    ap.add_argument("--algo", default="grpo", choices=[*ALGOS, "all"],
                    help="RL algorithm(s) to time")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "both"],
                    help="training dtype(s)")
    ap.add_argument("--beta", type=float, default=0.0, help="KL coefficient (> 0 adds the "
                                                            "reference forward)")
    ap.add_argument("--prompts", type=int, default=8, help="B")
    ap.add_argument("--group", type=int, default=8, help="G")
    ap.add_argument("--max-new-tokens", type=int, default=400, help="completion cap")
    ap.add_argument("--micro", type=int, default=16, help="rows per forward/backward")
    ap.add_argument("--micro-batching", default="length", choices=["length", "in-order", "both"],
                    help="the update's micro-batches: by length (rl.micro_batches, what "
                         "train_grpo.py does) or in order, each padded to the longest row")
    ap.add_argument("--reps", type=int, default=3, help="timed rounds")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pairs = make_pairs(args.prompts * (args.reps + 1), "train", seed=0)
    if args.ckpt:
        model, tok, _ = load_judge(args.ckpt)
    else:
        tok = train_bpe([build_prompt(p["question"], p["response_a"], p["response_b"])
                         for p in pairs] * 5, 512)
        model = Transformer(ModelConfig(vocab_size=tok.vocab_size, **TINY))
        model.init_weights(seed=0)
    algos = ALGOS if args.algo == "all" else (args.algo,)
    dtypes = ("float32", "bfloat16") if args.dtype == "both" else (args.dtype,)
    splits = ("length", "in-order") if args.micro_batching == "both" else (args.micro_batching,)
    runs_ = {}
    for algo, dtype, split in itertools.product(algos, dtypes, splits):
        cfg = RLConfig(algo=algo, group=args.group, temperature=1.0, top_k=0, top_p=1.0,
                       max_new_tokens=args.max_new_tokens, clip_eps=0.2, clip_eps_high=None,
                       beta=args.beta, gamma=1.0, loss_type="dapo", scale_rewards="group",
                       format_penalty=0.0, dynamic_sampling=False, ppo_epochs=1,
                       micro=args.micro, clip_grad=1.0, dtype=dtype)
        policy = copy.deepcopy(model).train()
        opt = torch.optim.AdamW(policy.parameters(), lr=1e-6, betas=(0.9, 0.99),
                                weight_decay=0.0)
        ref = copy.deepcopy(model).eval().requires_grad_(False) if args.beta > 0 else None
        runs_[algo, dtype, split] = (cfg, policy, opt, ref, [])
    forcing = forcing_kwargs(tok)
    for rep in range(args.reps + 1):
        batch = pairs[rep * args.prompts:(rep + 1) * args.prompts]
        prompts = [encode_prompt(tok, p["question"], p["response_a"], p["response_b"])
                   for p in batch for _ in range(args.group)]
        labels = [p["label"] for p in batch for _ in range(args.group)]
        for (_, _, split), (cfg, policy, opt, ref, steps) in runs_.items():
            rl.micro_batches = BY_LENGTH if split == "length" else in_order
            m = step(policy, ref, opt, tok, prompts, labels, cfg, runs.Dist(), forcing=forcing,
                     seed=rep)
            rl.micro_batches = BY_LENGTH
            if rep > 0:  # the first round warms up
                steps.append(m)
    print(f"one RL step, B={args.prompts} x G={args.group}, {model.num_params() / 1e6:.2f}M "
          f"params, {'ckpt ' + args.ckpt if args.ckpt else 'random init'}, threads {args.threads}, "
          f"beta {args.beta}, prompt {len(prompts[0])} tokens, median of {args.reps} rounds, torch "
          f"{torch.__version__}")
    for (algo, dtype, split), (_, _, _, _, steps) in runs_.items():
        med = {k: statistics.median(s[f"{k}_s"] for s in steps) for k in PARTS}
        total = sum(med.values())
        toks = statistics.median(s["completion_len"] for s in steps) * args.prompts * args.group
        parts = "  ".join(f"{k} {med[k]:.2f} s ({med[k] / total:.0%})" for k in PARTS)
        print(f"  {algo:22s} {dtype:8s} {split:8s}  {parts}  total {total:.2f} s, "
              f"{toks / total:.0f} completion tok/s (mean completion "
              f"{toks / args.prompts / args.group:.0f} tokens)")


if __name__ == "__main__":
    main()
