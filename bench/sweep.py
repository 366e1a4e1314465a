"""Benchmark: a budget sweep forked against one row per budget, side by side in one run.

    python bench/sweep.py --threads 2  # the embedded judge, its first 200 test pairs, budgets 0-3

`judge.py --budgets 0,1,2,3` judges every pair at four budgets. Under greedy decoding (and under
sampling with common random numbers) the budget-b trace is the budget-3 trace up to its (b+1)-th end
of thinking, then a short answer, so the sampler decodes the four budgets of a pair as one row that
forks at each smaller budget's end of thinking (j1_min/sampling.py:families, j1_min/forcing.py:Row).
This benchmark runs the same sweep (evaluate.judge_pairs, as judge.py calls it) both ways,
interleaved, `--repeats` times each:
  - "forked": as shipped;
  - "one row per budget": every row decodes on its own (the families are switched off), as before
    forking;
  - "budget B alone": the largest budget only, with the forked way's pairs per call (judge.py
    --budget B against judge.py --budgets ...), what the whole sweep should cost about as much as.
Both ways are given judge.py's `--batch-size`, the rows the sampler decodes at once (its KV cache):
the forked way decodes one row per pair, so it judges batch-size pairs per call; one row per budget
judges batch-size / len(budgets). With `--equal pairs` both judge batch-size pairs per call instead,
so the forked way holds a quarter of the rows (and memory). It prints the fastest run of each and
their ratio, whether the judgments are identical (they must be), the decoded row-steps per pair both
ways (one token of one row through the model), and the ideal ratio: the sum of the four budgets'
trace lengths over the longest's, which forking reaches if the answers after each fork cost nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import j1_min.sampling as S  # noqa: E402
from j1_min.checkpoint import load_judge  # noqa: E402
from j1_min.data import read_pairs  # noqa: E402
from j1_min.evaluate import judge_pairs  # noqa: E402

EMBEDDED = Path(__file__).resolve().parents[1] / "j1_min" / "embedded"
BATCH = 64  # judge.py's default --batch-size
FAMILIES = S.families


def alone(prompts, rows, streams, temperature):
    """No families: every row leads itself and nothing forks."""
    return list(range(len(prompts)))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=200, help="shipped test pairs judged per run")
    ap.add_argument("--budgets", default="0,1,2,3", help="the sweep's budgets")
    ap.add_argument("--max-new-tokens", type=int, default=600, help="tokens per trace at most")
    ap.add_argument("--batch-size", type=int, default=BATCH, help="rows decoded at once, "
                                                                  "judge.py's --batch-size "
                                                                  f"(default {BATCH}, judge.py's)")
    ap.add_argument("--equal", choices=("rows", "pairs"), default="rows",
                    help="what both ways hold equal: rows decoded at once (the KV cache's memory, "
                         "judge.py's --batch-size), or pairs per sampler call (the forked way then "
                         "holds fewer rows)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each way")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    budgets = tuple(int(b) for b in args.budgets.split(","))
    model, tok, _ = load_judge(EMBEDDED / "j1-tiny")
    items = list(read_pairs(EMBEDDED / "test.jsonl"))[:args.pairs]

    steps = []  # rows of each one-token forward
    forward = model.hidden_states

    def counting(x, cache=None):
        if cache is not None and x.shape[1] == 1:
            steps.append(x.shape[0])
        return forward(x, cache)

    model.hidden_states = counting

    def run(families, sweep=budgets):
        S.families = families
        steps.clear()
        # a row per budget: fewer pairs for the same rows
        narrow = families is alone and args.equal == "rows"
        t0 = time.perf_counter()
        out = judge_pairs(model, tok, items, budgets=sweep, max_new_tokens=args.max_new_tokens,
                          batch_size=max(1, args.batch_size // len(budgets)) if narrow
                          else args.batch_size)
        return time.perf_counter() - t0, out, sum(steps)

    top = (max(budgets),)
    ways = {"forked": (FAMILIES, budgets), "one row per budget": (alone, budgets),
            f"budget {top[0]} alone": (FAMILIES, top)}
    times = {name: [] for name in ways}
    outs, decoded = {}, {}
    for _ in range(args.repeats):
        for name, (families, sweep) in ways.items():
            t, outs[name], decoded[name] = run(families, sweep)
            times[name].append(t)
    S.families = FAMILIES
    same = outs["forked"] == outs["one row per budget"]
    length = {b: sum(j["tokens"] for j in outs["forked"] if j["budget"] == b) / len(items)
              for b in budgets}
    print(f"embedded judge, {len(items)} pairs, budgets {args.budgets}, equal {args.equal} per "
          f"call (--batch-size {args.batch_size}): judgments identical: {same}")
    print("  mean trace tokens per "
          "budget: " + ", ".join(f"{b}: {n:.0f}" for b, n in length.items()))
    for name, ts in times.items():
        print(f"  {name:>18}: fastest {min(ts):.2f} s (runs " + ", ".join(f"{t:.2f}" for t in ts)
              + f"); decoded row-steps per pair {decoded[name] / len(items):.0f}")
    print("  one row per budget / forked: "
          f"{min(times['one row per budget']) / min(times['forked']):.2f}x time, "
          f"{decoded['one row per budget'] / decoded['forked']:.2f}x row-steps; ideal (sum of the "
          f"budgets' lengths / the longest): {sum(length.values()) / max(length.values()):.2f}x")
    last = f"budget {top[0]} alone"
    same_top = [j for j in outs["forked"] if j["budget"] == top[0]] == outs[last]
    print(f"  forked sweep / {last}: {min(times['forked']) / min(times[last]):.2f}x time "
          f"(budget-{top[0]} judgments identical: {same_top})")


if __name__ == "__main__":
    main()
