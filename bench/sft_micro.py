"""SFT step time by micro-batch size, on real traces: the same step's sequences, sorted by length
and cut into micro-batches (j1_min/sft.py:sft_batches), each padded to its longest. The gradient
is the same whatever the micro-batch size (each micro-batch's summed NLL over the step's target
tokens, train_sft.py:train_step); fewer, longer micro-batches pad more.

    python bench/sft_micro.py --ckpt runs/v2seed0/j1_sft.pt --data runs/v2seed0/traces_j1.jsonl \
        --micro 32,16,8 --threads 2 --dtype bfloat16 --reps 6
        # teacher v2's J1 traces (100-1,000 tokens) at the experiment's batch of 32

Each rep draws one step's batch (train_sft's order, step = rep) and runs forward + backward at
every micro size in turn, alternating the order between reps so a slow spell of a shared machine
falls on all sizes. Prints each size's median step time, its padded share of the tokens computed,
the ratio against the first size, and the largest gradient difference from the first size
(relative to its norm), which should be rounding only.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from j1_min.checkpoint import load_judge  # noqa: E402
from j1_min.data import read_pairs, step_order  # noqa: E402
from j1_min.sft import sft_batches, sft_example, sft_nll  # noqa: E402


def step(model, examples, micro: int, pad_id: int, autocast) -> tuple[float, float, torch.Tensor]:
    """(seconds, padded share, flat gradient) of one forward + backward over `examples`."""
    model.zero_grad(set_to_none=True)
    n_targets = sum(len(ids) - n_prompt for ids, n_prompt in examples)
    t = time.perf_counter()
    batches = sft_batches(examples, micro, pad_id)
    for inp, tgt, mask in batches:
        with autocast:
            (sft_nll(model, inp, tgt, mask) / n_targets).backward()
    seconds = time.perf_counter() - t
    computed = sum(inp.numel() for inp, _, _ in batches)
    real = sum(len(ids) - 1 for ids, _ in examples)
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return seconds, 1 - real / computed, grad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="a judge checkpoint (its weights and tokenizer)")
    ap.add_argument("--data", required=True, help="SFT traces, JSONL (data_gen.py traces)")
    ap.add_argument("--micro", default="32,16,8", help="micro-batch sizes, comma-separated")
    ap.add_argument("--batch", type=int, default=32, help="sequences per step")
    ap.add_argument("--reps", type=int, default=6, help="steps timed (after one warm-up)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"],
                    help="autocast dtype of the step (weights float32)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(m) for m in args.micro.split(",")]
    model, tok, template = load_judge(args.ckpt, dtype=torch.float32, device="cpu")
    records = read_pairs(args.data, skip_bad=True, need_completion=True)
    ctx = model.config.max_position_embeddings
    examples = [e for e in (sft_example(tok, r, template) for r in records) if len(e[0]) <= ctx]
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.dtype == "bfloat16"
                else contextlib.nullcontext())
    pad_id = tok.token_id("<|endoftext|>") or 0  # as train_sft.py: padding carries no loss
    times = {m: [] for m in sizes}
    pads, diffs = {m: [] for m in sizes}, {m: 0.0 for m in sizes}
    for rep in range(args.reps + 1):
        batch = [examples[i] for i in step_order(len(examples), args.batch, rep, 0)]
        grads = {}
        for m in (sizes if rep % 2 == 0 else sizes[::-1]):
            seconds, pad, grads[m] = step(model, batch, m, pad_id, autocast)
            if rep > 0:  # rep 0 warms up
                times[m].append(seconds)
                pads[m].append(pad)
        ref = grads[sizes[0]]
        for m in sizes:
            diffs[m] = max(diffs[m], ((grads[m] - ref).norm() / ref.norm()).item())
    base = statistics.median(times[sizes[0]])
    print(f"{len(examples)} traces, batch {args.batch}, {args.dtype}, {args.threads} threads, "
          f"{args.reps} steps")
    print("micro  median s/step  padded  vs first  max |grad diff|/|grad|")
    for m in sizes:
        med = statistics.median(times[m])
        print(f"{m:5d}  {med:13.2f}  {sum(pads[m]) / len(pads[m]):6.1%}  {base / med:7.2f}x  "
              f"{diffs[m]:.1e}")


if __name__ == "__main__":
    main()
