"""Forward+backward throughput of our Transformer against transformers' Qwen2ForCausalLM on the same
weights.

    python bench/train.py
        # both configs of the sampler benchmark, batch 16 x 256 tokens, float32, CPU

The two models' steps alternate, `--reps` rounds of one step each after two warm-up steps. Prints
tokens/s from each side's median step, the ratio (ours / transformers) with its range over the
rounds, and model FLOPs utilization (MFU) against this machine's measured float32 matmul rate.
Training FLOPs per token
~ 6 * params + 12 * layers * hidden * seq (Kaplan et al. 2020; PaLM appendix B for the attention
term), with params excluding the embedding lookup.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F

from j1_min.checkpoint import load_model  # noqa: E402

CONFIGS = {
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=6,
                  num_attention_heads=8, num_key_value_heads=2, vocab_size=512),
    "medium": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                   num_attention_heads=8, num_key_value_heads=2, vocab_size=4096),
}


def matmul_flops(n: int = 1024, reps: int = 20) -> float:
    """Measured float32 matmul rate of this machine (FLOP/s) on n x n x n products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def step_times(sides: dict, reps: int) -> dict:
    """Each side's step times, the sides timed in alternating order round after round, so a slow
    spell of a shared machine falls on both rather than on whichever ran second."""
    for fn in sides.values():  # warm-up
        fn()
        fn()
    times = {k: [] for k in sides}
    for r in range(reps):
        for k in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            t = time.perf_counter()
            sides[k]()
            times[k].append(time.perf_counter() - t)
    return times


def median(v: list) -> float:
    return sorted(v)[len(v) // 2]


def saved_mb(forward) -> float:
    """MB of distinct tensor storage that autograd keeps for the backward of one forward (what a
    step must write and read back besides the weights)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(storages.values()) / 1e6


def profile(side: str, fn, reps: int) -> None:
    """Sum of the ops' own CPU time per step under torch.profiler, and the eight largest."""
    with torch.profiler.profile() as prof:
        for _ in range(reps):
            fn()
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops) / reps / 1e3
    top = ", ".join(f"{e.key.removeprefix('aten::')} {e.self_cpu_time_total / reps / 1e3:.0f}"
                    for e in ops[:8])
    print(f"  profile {side:12s} {total:6.0f} ms of op time per step; largest (ms): {top}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16, help="sequences per step")
    ap.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    ap.add_argument("--reps", type=int, default=10, help="timed steps per model, the two models "
                                                         "alternating (median reported)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch CPU threads")
    ap.add_argument("--profile", action="store_true", help="also print, per model, the memory "
                                                           "autograd saves for the backward and "
                                                           "the ops' own CPU time per step under "
                                                           "torch.profiler (sum and the top 8), to "
                                                           "see where a gap lies")
    ap.add_argument("--model", help="a model folder (Hugging Face) to run instead of the random "
                                    "configs: both sides load its weights")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="bfloat16: float32 weights, the forward under CPU autocast to bfloat16 "
                         "(both sides)")
    args = ap.parse_args()
    import transformers
    torch.set_num_threads(args.threads)
    peak = matmul_flops()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads "
          f"{args.threads}, measured fp32 matmul {peak / 1e9:.1f} GFLOP/s")
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
    runs = {args.model: None} if args.model else CONFIGS
    for name, kw in runs.items():
        torch.manual_seed(0)
        if args.model:
            hf = transformers.AutoModelForCausalLM.from_pretrained(args.model,
                                                                   dtype=torch.float32).train()
            ours = load_model(args.model)[0].train()
            cfg = hf.config
            kw = {k: getattr(cfg, k) for k in ("vocab_size", "num_hidden_layers", "hidden_size")}
        else:
            cfg = transformers.Qwen2Config(**kw, tie_word_embeddings=True,
                                           max_position_embeddings=4096)
            hf = transformers.Qwen2ForCausalLM(cfg).train()
            with tempfile.TemporaryDirectory() as d:
                hf.save_pretrained(d)
                ours = load_model(d)[0].train()
        x = torch.randint(0, kw["vocab_size"], (args.batch, args.seq))

        def ours_step():
            with amp:
                logits = ours(x[:, :-1])
            F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten()).backward()

        def hf_step():
            with amp:
                logits = hf(input_ids=x[:, :-1]).logits
            F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten()).backward()

        with torch.no_grad():
            diff = (ours(x[:2]) - hf(input_ids=x[:2]).logits).abs().max().item()
        tokens = args.batch * (args.seq - 1)
        times = step_times({"ours": ours_step, "transformers": hf_step}, args.reps)
        t_ours, t_hf = median(times["ours"]), median(times["transformers"])
        # per-round ratio
        rounds = sorted(h / o for o, h in zip(times["ours"], times["transformers"]))
        n_params = ours.num_params() - ours.model.embed_tokens.weight.numel() * (
            not cfg.tie_word_embeddings)
        flops_tok = 6 * n_params + 12 * kw["num_hidden_layers"] * kw["hidden_size"] * args.seq
        print(f"[{name}] {ours.num_params() / 1e6:.2f}M params, batch {args.batch}x{args.seq}, "
              f"{args.dtype}, max |logit diff| {diff:.1e}")
        print(f"  ours         {tokens / t_ours:9.0f} tok/s   MFU "
              f"{flops_tok * tokens / t_ours / peak:5.1%}")
        print(f"  transformers {tokens / t_hf:9.0f} tok/s   MFU "
              f"{flops_tok * tokens / t_hf / peak:5.1%}")
        print(f"  ratio ours/transformers: {t_hf / t_ours:.2f}x (medians; round by round "
              f"{rounds[0]:.2f}-{rounds[-1]:.2f}x)")
        if args.profile:
            print(f"  saved for backward: ours {saved_mb(lambda: ours(x[:, :-1])):.0f} MB, "
                  f"transformers {saved_mb(lambda: hf(input_ids=x[:, :-1]).logits):.0f} MB")
            for side, fn in (("ours", ours_step), ("transformers", hf_step)):
                profile(side, fn, args.reps)


if __name__ == "__main__":
    main()
