"""Benchmark: what finding the end of thinking in the text costs, side by side in one run.

    python bench/forcing.py --threads 2  # the embedded judge, its first 64 test pairs, budget 3

The sampler looks for `</think>` in the decoded text of a thinking row's last tokens, but only when
the sampled token can complete it (its text holds `>`, j1_min/forcing.py:Marker.closers). With the
embedded judge, whose `</think>` is one added token, that is a set lookup per row and step, and a
short decode when the judge closes its thinking. A tokenizer that writes the marker as several
tokens (Qwen2.5) decodes a tail more often; the worst case is a vocabulary in which every token
could complete the marker. This benchmark times generate on the same rows both ways, interleaved,
`--repeats` times each:
  - "as shipped": closers as the tokenizer gives them;
  - "every step": closers = every id, so every thinking row decodes its tail every step (the
    text-level path at its most expensive).
It prints the fastest run of each, their ratio, and whether the generations are identical (they must
be: the check only decides when to look).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import j1_min.sampling as S  # noqa: E402
from j1_min import forcing  # noqa: E402
from j1_min.checkpoint import load_judge  # noqa: E402
from j1_min.data import read_pairs  # noqa: E402
from j1_min.judge_format import encode_prompt, forcing_kwargs  # noqa: E402
from j1_min.sampling import generate  # noqa: E402

EMBEDDED = Path(__file__).resolve().parents[1] / "j1_min" / "embedded"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=64, help="test pairs judged per run (one batch)")
    ap.add_argument("--budget", type=int, default=3, help="forced Waits")
    ap.add_argument("--max-new-tokens", type=int, default=600, help="tokens per trace at most")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each way")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok, _ = load_judge(EMBEDDED / "j1-tiny")
    items = list(read_pairs(EMBEDDED / "test.jsonl"))[:args.pairs]
    prompts = [encode_prompt(tok, r["question"], r["response_a"], r["response_b"]) for r in items]
    kw = forcing_kwargs(tok, args.budget)
    shipped = forcing.marker(tok, kw["think_end"], kw["wait"], kw["answer_prefix"])
    every = dataclasses.replace(shipped, closers=frozenset(range(model.config.vocab_size)))

    def run(m):
        """Time one generate call whose rows use Marker m (sampling looks it up as
        prepare_marker)."""
        S.prepare_marker = lambda *a: m  # noqa: E731
        t0 = time.perf_counter()
        out = generate(model, prompts, args.max_new_tokens, **kw)
        return time.perf_counter() - t0, out

    times = {"as shipped": [], "every step": []}
    outs = {}
    run(shipped)  # warm-up
    for _ in range(args.repeats):
        for name, m in (("as shipped", shipped), ("every step", every)):
            t, outs[name] = run(m)
            times[name].append(t)
    tokens = sum(len(g.tokens) for g in outs["as shipped"])
    same = outs["as shipped"] == outs["every step"]
    print(f"embedded judge, {len(prompts)} pairs, budget {args.budget}: {tokens} tokens, "
          f"{sum(g.num_waits for g in outs['as shipped'])} forced Waits; generations identical: "
          f"{same}")
    for name, ts in times.items():
        print(f"  {name:>10}: fastest {min(ts):.2f} s ({tokens / min(ts):.0f} tok/s; runs "
              + ", ".join(f"{t:.2f}" for t in ts) + ")")
    S.prepare_marker = forcing.marker
    print(f"  every step / as shipped: {min(times['every step']) / min(times['as shipped']):.2f}x")


if __name__ == "__main__":
    main()
