"""Benchmark: model.decode_attention against torch's scaled_dot_product_attention for one query per
row.

    python bench/decode_attention.py --threads 2

Inputs shaped as a decode step reads them: q (B, H, 1, D), and k, v slices of a (B, Hkv, S_max, D)
cache for each layer in turn (so the cache does not sit in the CPU's caches between calls), with an
additive mask (B, 1, 1, S). The two sides alternate round by round; it prints each side's best time
for all layers and the ratio, and the largest difference between their outputs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from j1_min.model import decode_attention  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch CPU threads")
    ap.add_argument("--batch", type=int, default=16, help="rows (B)")
    ap.add_argument("--heads", type=int, nargs=2, default=[8, 2], metavar=("H", "HKV"),
                    help="query and key/value heads")
    ap.add_argument("--head-dim", type=int, default=32, help="D")
    ap.add_argument("--layers", type=int, default=6, help="caches cycled through, one per layer")
    ap.add_argument("--keys", type=int, nargs="+", default=[100, 1000],
                    help="cache lengths S to time")
    ap.add_argument("--rounds", type=int, default=20, help="timed rounds per side (best kept)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    B, (H, Hkv), D, L = args.batch, args.heads, args.head_dim, args.layers
    gen = torch.Generator().manual_seed(0)
    s_max = max(args.keys) + 64
    caches = [(torch.randn(B, Hkv, s_max, D, generator=gen),
               torch.randn(B, Hkv, s_max, D, generator=gen))
              for _ in range(L)]
    q = torch.randn(B, H, 1, D, generator=gen)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, B {B}, H {H}, Hkv {Hkv}, "
          f"D {D}, {L} layers, float32, best of {args.rounds}")
    for S in args.keys:
        lengths = torch.randint(S // 2, S + 1, (B,), generator=gen)
        lengths[0] = S  # rows end at different positions, the longest at S
        mask = torch.zeros(B, 1, 1, S).masked_fill_(torch.arange(S) >= lengths[:, None, None, None],
                                                    float("-inf"))
        sides = {
            "decode_attention": lambda k, v: decode_attention(q, k, v, mask),
            "sdpa": lambda k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                                enable_gqa=True),
        }
        diff = (sides["decode_attention"](*[t[:, :, :S] for t in caches[0]])
                - sides["sdpa"](*[t[:, :, :S] for t in caches[0]])).abs().max().item()
        best = {k: float("inf") for k in sides}
        for r in range(args.rounds + 1):  # round 0 warms up
            for name, fn in sides.items():
                t0 = time.perf_counter()
                for k, v in caches:
                    fn(k[:, :, :S], v[:, :, :S])
                if r:
                    best[name] = min(best[name], time.perf_counter() - t0)
        ours, sdpa = best["decode_attention"] * 1e3, best["sdpa"] * 1e3
        print(f"  S {S:5d}: decode_attention {ours:6.2f} ms, sdpa {sdpa:6.2f} ms for {L} layers: "
              f"sdpa / decode_attention = {sdpa / ours:.2f}x   (max |difference| {diff:.1e})")


if __name__ == "__main__":
    main()
