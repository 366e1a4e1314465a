"""Benchmark: j1_min.sampling.generate against transformers' generate on the same random weights (greedy).

    python bench/sampling.py                  # the issue's CPU benchmark: configs small and medium, batch 16
    python bench/sampling.py --device cuda --dtype bfloat16 --configs qwen2.5-0.5b --batch 64

For each config: prompt length 64, 128 new tokens, no stop; one warm-up run of each side, then `repeats` runs of
each side interleaved. It prints tokens/s of each side's fastest run (the minimum is robust to other load on a
shared machine), the ratio to transformers, and how many rows have identical greedy tokens.
Then the decode cost at position ~1000 relative to ~100 for our generate, at the batch size and at batch 1:
    per-token time at P = (time(P, 1 + N new tokens) - time(P, 1 new token)) / N.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from j1_min.model import Transformer  # noqa: E402
from j1_min.sampling import generate  # noqa: E402

CONFIGS = {
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=6, num_attention_heads=8,
                  num_key_value_heads=2, vocab_size=512),
    "medium": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                   num_key_value_heads=2, vocab_size=4096),
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),  # GPU only
}
PROMPT_LEN, NEW = 64, 128


def timed(fn):
    t0 = time.perf_counter()
    out = fn()  # both sides return Python lists, so the GPU has finished when this returns
    return time.perf_counter() - t0, out


def build(cfg: dict, seed: int, device: str, dtype: torch.dtype):
    """A random transformers Qwen2 (its own default init) and our Transformer loaded from its saved folder."""
    import transformers as T
    torch.manual_seed(seed)
    hf = T.Qwen2ForCausalLM(T.Qwen2Config(**cfg, max_position_embeddings=2048)).eval()
    d = tempfile.mkdtemp()
    hf.save_pretrained(d)
    return hf.to(device=device, dtype=dtype), Transformer.from_pretrained(d, dtype=dtype, device=device)


def bench_config(name: str, cfg: dict, args, dtype: torch.dtype):
    import transformers as T
    hf, ours = build(cfg, args.seed, args.device, dtype)
    B = args.batch
    prompts = torch.randint(0, cfg["vocab_size"], (B, PROMPT_LEN), generator=torch.Generator().manual_seed(args.seed))
    gc = T.GenerationConfig(do_sample=False, max_new_tokens=NEW, min_new_tokens=NEW, eos_token_id=None,
                            pad_token_id=0)
    x = prompts.to(args.device)

    def run_hf():
        with torch.inference_mode():
            return hf.generate(x, attention_mask=torch.ones_like(x), generation_config=gc)[:, PROMPT_LEN:].tolist()

    def run_ours():
        return [g.tokens for g in generate(ours, prompts.tolist(), NEW)]

    sides = {"transformers": run_hf, "j1_min": run_ours}
    times, tokens = {k: [] for k in sides}, {}
    for fn in sides.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for k, fn in sides.items():
            dt, tokens[k] = timed(fn)
            times[k].append(dt)
    tps = {k: B * NEW / min(v) for k, v in times.items()}
    print(f"[{name}] {cfg}")
    for k in sides:
        same = sum(a == b for a, b in zip(tokens[k], tokens["transformers"]))
        print(f"  {k:18s} {tps[k]:7.0f} tok/s  {tps[k] / tps['transformers']:.2f}x   identical greedy rows "
              f"{same}/{B}   (runs: {', '.join(f'{t:.3f}s' for t in times[k])})")
    return ours


def position_ratio(model, vocab: int, repeats: int, rows: int, n: int = 48, near=(96, 992)) -> None:
    """Decode time per token with the cache at ~near[1] positions relative to ~near[0] (target <= 1.3)."""
    per_tok = {}
    for P in near:
        prompts = torch.randint(0, vocab, (rows, P), generator=torch.Generator().manual_seed(P)).tolist()
        generate(model, prompts, 1 + n)  # warm-up
        full, one = [], []
        for _ in range(repeats):
            full.append(timed(lambda: generate(model, prompts, 1 + n))[0])
            one.append(timed(lambda: generate(model, prompts, 1))[0])
        per_tok[P] = (min(full) - min(one)) / n
    lo, hi = near
    print(f"  decode, batch {rows:2d}: {per_tok[lo] * 1e3:6.2f} ms/step at positions {lo}..{lo + n}, "
          f"{per_tok[hi] * 1e3:6.2f} ms/step at {hi}..{hi + n}: ratio {per_tok[hi] / per_tok[lo]:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--configs", nargs="+", default=["small", "medium"], choices=list(CONFIGS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    import transformers
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {where}, {args.dtype}, "
          f"threads {torch.get_num_threads()}, batch {args.batch}, prompt {PROMPT_LEN}, new tokens {NEW}, greedy, "
          f"best of {args.repeats}")
    for name in args.configs:
        model = bench_config(name, CONFIGS[name], args, dtype)
        for rows in (args.batch, 1):
            position_ratio(model, CONFIGS[name]["vocab_size"], args.repeats, rows)


if __name__ == "__main__":
    main()
