"""Benchmark: resident memory and time of training steps at changing lengths, with and without
runs.release_memory (glibc's malloc_trim) after each step.

    python bench/heap.py --steps 40 --threads 1

Each configuration runs in a fresh process (the heap is per process), in turn, --rounds times:
the tiny model (j1_min/model.py:TINY, 512-token vocabulary) takes --steps AdamW steps on random
tokens, 8 rows of a length drawn from 100-900 (the same lengths on both sides), under bf16 autocast
unless --dtype float32. It prints each run's resident memory at the end (VmRSS) and its seconds, and
the ratios of the medians. Linux only (it reads /proc/self/status).
"""
from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from j1_min import runs  # noqa: E402
from j1_min.model import TINY, ModelConfig, Transformer  # noqa: E402


def rss_mb() -> float:
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024


def child(args) -> None:
    """One configuration's steps; prints 'rss_mb seconds'."""
    torch.set_num_threads(args.threads)
    model = Transformer(ModelConfig(vocab_size=512, **TINY))
    model.init_weights(seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng, t0 = random.Random(0), time.time()
    for _ in range(args.steps):
        x = torch.randint(0, 512, (8, rng.randint(100, 900)))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
            loss = model(x).float().log_softmax(-1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        if args.child == "trim":
            runs.release_memory()
    print(f"{rss_mb():.0f} {time.time() - t0:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40, help="training steps per run")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16",
                    help="autocast dtype of the steps")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each configuration")
    ap.add_argument("--child", choices=["keep", "trim"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    res = {"keep": [], "trim": []}
    for r in range(args.rounds):
        for mode in res:
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--steps",
                                  str(args.steps), "--threads", str(args.threads), "--dtype",
                                  args.dtype], check=True, capture_output=True, text=True).stdout
            mb, s = map(float, out.split())
            res[mode].append((mb, s))
            print(f"round {r + 1}, {mode:4s}: {mb:.0f} MB resident, {s:.1f} s", flush=True)
    med = {m: [statistics.median(x[i] for x in v) for i in (0, 1)] for m, v in res.items()}
    print(f"{args.steps} steps, {args.dtype}, {args.threads} thread(s): resident memory "
          f"{med['keep'][0]:.0f} MB without the trim, {med['trim'][0]:.0f} MB with it "
          f"({med['keep'][0] / med['trim'][0]:.2f}x); time {med['trim'][1] / med['keep'][1]:.2f}x "
          f"with it")


if __name__ == "__main__":
    main()
