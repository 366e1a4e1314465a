"""Benchmark: j1_min.sampling.generate against transformers' generate on the same random weights
(greedy).

    python bench/sampling.py  # the issue's CPU benchmark: configs small and medium, batch 16
    python bench/sampling.py --device cuda --dtype bfloat16 --configs qwen2.5-0.5b --batch 64
    python bench/sampling.py --model models/smollm2-135m --batch 16 --new-tokens 32
        # a real model folder (scripts/get_smollm2.py): the side-by-side ratio only

For each config: prompt length 64, 128 new tokens, no stop; one warm-up run of each side, then
`repeats` runs of each side interleaved. It prints tokens/s of each side's fastest run (the minimum
is robust to other load on a shared machine), the ratio to transformers, and how many rows have
identical greedy tokens. Then two bounds measured on this machine:
  - the time the step's linear layers alone take at this batch size (the kernels both engines call):
    transformers' time per token divided by it bounds the ratio any engine could reach here; and how
    many PyTorch ops our decode step dispatches (each costs the dispatcher's overhead, whatever its
    size);
  - decode ms/step with the cache at position ~1000 and at ~100 (the call generate makes each step,
    timed directly after one prefill, at the batch size and at batch 1), their ratio, and the ratio
    that reading the larger KV cache at this machine's measured memory read rate would give on its
    own.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from j1_min.checkpoint import load_model  # noqa: E402
from j1_min.sampling import generate  # noqa: E402

CONFIGS = {
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=6,
                  num_attention_heads=8, num_key_value_heads=2, vocab_size=512),
    "medium": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                   num_attention_heads=8, num_key_value_heads=2, vocab_size=4096),
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14,
                         # GPU only
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
}
PROMPT_LEN, NEW = 64, 128


def timed(fn):
    t0 = time.perf_counter()
    out = fn()  # both sides return Python lists, so the GPU has finished when this returns
    return time.perf_counter() - t0, out


def build(cfg: dict, seed: int, device: str, dtype: torch.dtype):
    """A random transformers Qwen2 (its own default init) and our Transformer loaded from its saved
    folder."""
    import transformers as T
    torch.manual_seed(seed)
    hf = T.Qwen2ForCausalLM(T.Qwen2Config(**cfg, max_position_embeddings=2048)).eval()
    d = tempfile.mkdtemp()
    hf.save_pretrained(d)
    return hf.to(device=device, dtype=dtype), load_model(d, dtype=dtype, device=device)[0]


def bench_config(name: str, cfg: dict, args, dtype: torch.dtype, models=None):
    import transformers as T
    hf, ours = models or build(cfg, args.seed, args.device, dtype)
    B, NEW = args.batch, args.new_tokens
    prompts = torch.randint(0, cfg["vocab_size"], (B, PROMPT_LEN),
                            generator=torch.Generator().manual_seed(args.seed))
    gc = T.GenerationConfig(do_sample=False, max_new_tokens=NEW, min_new_tokens=NEW,
                            eos_token_id=None, pad_token_id=0)
    x = prompts.to(args.device)
    # both sides write exactly NEW tokens and stop on nothing: without this, transformers merges the
    # model folder's generation_config.json eos_token_id into gc, and min_new_tokens then forbids
    # that token, which j1_min (no stop ids here) may pick: a real folder's rows parted for that
    hf.generation_config.eos_token_id = None

    def run_hf():
        with torch.inference_mode():
            return hf.generate(x, attention_mask=torch.ones_like(x),
                               generation_config=gc)[:, PROMPT_LEN:].tolist()

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
        print(f"  {k:18s} {tps[k]:7.0f} tok/s  {tps[k] / tps['transformers']:.2f}x   identical "
              f"greedy rows {same}/{B}   (runs: {', '.join(f'{t:.3f}s' for t in times[k])})")
    return ours, min(times["transformers"]) / NEW * 1e3


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def decode_step_ms(model, rows: int, positions, n: int, repeats: int, device: str) -> dict:
    """ms per decode step with the cache at each of `positions`: prefill P random tokens once, then
    time n steps of the call generate() makes each step (one token per row through the KV cache,
    lm_head on it, greedy), rolling the cache back to P between repeats. The positions are timed in
    turn within each repeat; best of `repeats`."""
    vocab = model.config.vocab_size
    caches = {}
    for P in positions:
        prompts = torch.randint(0, vocab, (rows, P),
                                generator=torch.Generator().manual_seed(P)).to(device)
        caches[P] = (model.new_cache(rows, P + n), prompts[:, -1:])
        model.hidden_states(prompts, caches[P][0])
    best = {P: float("inf") for P in positions}
    for _ in range(repeats + 1):  # the first round warms up
        for P, (cache, x) in caches.items():
            cache.lengths = torch.full((rows,), P, dtype=torch.long, device=device)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(n):
                # (rows, 1)
                x = model.lm_head(model.hidden_states(x, cache)[:, -1]).argmax(-1, keepdim=True)
            sync(device)
            best[P] = min(best[P], (time.perf_counter() - t0) / n * 1e3)
    return best


class CountOps(TorchDispatchMode):
    """Counts the PyTorch ops dispatched while it is active (each one a trip through the
    dispatcher)."""
    n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


@torch.inference_mode()
def ops_per_step(model, rows: int, device: str) -> int:
    """PyTorch ops one decode step dispatches (embedding to lm_head), after a 32-token prefill."""
    cache = model.new_cache(rows, 64)
    model.hidden_states(torch.zeros(rows, 32, dtype=torch.long, device=device), cache)
    with CountOps() as counter:
        model.lm_head(model.hidden_states(torch.zeros(rows, 1, dtype=torch.long, device=device),
                                          cache)[:, -1])
    return counter.n


@torch.inference_mode()
def matmul_ms(model, rows: int, repeats: int, device: str, steps: int = 20) -> float:
    """ms per decode step spent in the linear layers alone (q, k, v, o, gate, up, down per layer,
    and lm_head) on (rows, in_features) inputs: the same F.linear kernels transformers' step calls,
    with nothing else around them."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    xs = {m.in_features: torch.randn(rows, m.in_features, device=device) for m in linears}
    best = float("inf")
    for _ in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            for m in linears:
                F.linear(xs[m.in_features], m.weight, m.bias)
        sync(device)
        best = min(best, (time.perf_counter() - t0) / steps * 1e3)
    return best


def read_gbps(device: str, mb: int = 512) -> float:
    """This machine's memory read rate (GB/s): the best of 5 sums over a float32 tensor of `mb`
    MB."""
    t = torch.ones(mb * 2**18, device=device)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        t.sum()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return mb * 2**20 / best / 1e9


def position_ratio(model, rows: int, repeats: int, device: str, gbps: float, n: int = 32,
                   near=(96, 992)) -> None:
    """Decode ms/step with the cache at ~near[1] positions relative to ~near[0] (target <= 1.3), and
    what reading the larger cache alone must add: KV bytes per step = 2 (k, v) x layers x rows x
    kv_heads x P x head_dim x 4."""
    ms = decode_step_ms(model, rows, near, n, repeats, device)
    c = model.config
    kv_mb = {P: 2 * c.num_hidden_layers * rows * c.num_key_value_heads * (P + n / 2) * c.head_dim
             * model.lm_head.weight.element_size() / 1e6 for P in near}
    lo, hi = near
    floor = ms[lo] + (kv_mb[hi] - kv_mb[lo]) / 1e3 / gbps * 1e3
    print(f"  decode, batch {rows:2d}: {ms[lo]:6.2f} ms/step at positions {lo}..{lo + n}, "
          f"{ms[hi]:6.2f} ms/step at {hi}..{hi + n}: ratio {ms[hi] / ms[lo]:.2f}   (reading the KV "
          f"cache, {kv_mb[lo]:.0f} -> {kv_mb[hi]:.0f} MB per step at {gbps:.0f} GB/s, alone makes "
          f"it >= {floor / ms[lo]:.2f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each side after a "
                                                           "warm-up (best kept)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights and prompts")
    ap.add_argument("--batch", type=int, default=16, help="prompts per generate call")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="weights, activations and KV cache")
    ap.add_argument("--configs", nargs="+", default=["small", "medium"], choices=list(CONFIGS),
                    help="model shapes to run (qwen2.5-0.5b's vocabulary is meant for a GPU)")
    ap.add_argument("--model", help="a model folder (Hugging Face) to run instead of --configs: "
                                    "both "
                                    "sides load its weights; only the side-by-side ratio is "
                                    "measured")
    ap.add_argument("--new-tokens", type=int, default=NEW, help=f"new tokens per row (default "
                                                                f"{NEW})")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    import transformers
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {where}, "
          f"{args.dtype}, threads {torch.get_num_threads()}, batch {args.batch}, prompt "
          f"{PROMPT_LEN}, new tokens {args.new_tokens}, greedy, best of {args.repeats}")
    if args.model:
        hf = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).eval()
        ours = load_model(args.model, dtype=dtype, device=args.device)[0]
        cfg = {"vocab_size": ours.config.vocab_size}
        bench_config(args.model, cfg, args, dtype, (hf.to(args.device), ours))
        return
    gbps = read_gbps(args.device)
    for name in args.configs:
        model, hf_step_ms = bench_config(name, CONFIGS[name], args, dtype)
        mm = matmul_ms(model, args.batch, args.repeats, args.device)
        print(f"  the {args.batch}-row step's linear layers alone take {mm:.2f} ms; transformers' "
              f"whole generate takes {hf_step_ms:.2f} ms per step, so no engine calling the same "
              f"kernels exceeds {hf_step_ms / mm:.2f}x here; our decode step dispatches "
              f"{ops_per_step(model, args.batch, args.device)} PyTorch ops")
        for rows in (args.batch, 1):
            position_ratio(model, rows, args.repeats, args.device, gbps)


if __name__ == "__main__":
    main()
