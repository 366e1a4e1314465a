"""Where the time of one GRPO step goes: rollout, scoring, log-prob recomputation, backward + optimizer step.

    python bench/grpo.py --ckpt runs/reproduce/j1_sft.pt     # a trained tiny judge: realistic completion lengths
    python bench/grpo.py                                     # a random tiny model (completions run to the cap)

B=8 prompts x G=8 samples of the synthetic task, temperature 1, float32 CPU, the same calls train_grpo.py makes.
Prints the median of --reps steps after one warm-up step.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from j1_min.checkpoint import load_model  # noqa: E402
from j1_min.grpo import group_advantages, grpo_loss  # noqa: E402
from j1_min.judging import build_prompt, completion_text, encode_prompt, forcing_kwargs, reward  # noqa: E402
from j1_min.model import ModelConfig, Transformer  # noqa: E402
from j1_min.sampling import generate, selected_logprobs  # noqa: E402
from j1_min.tasks import make_pairs  # noqa: E402
from j1_min.tokenizer import Tokenizer, train_bpe  # noqa: E402
from train_grpo import rollout_tensors  # noqa: E402
from train_sft import TINY  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="policy (.pt or HF folder); default: a random tiny model")
    ap.add_argument("--prompts", type=int, default=8, help="B")
    ap.add_argument("--group", type=int, default=8, help="G")
    ap.add_argument("--max-new-tokens", type=int, default=400, help="completion cap")
    ap.add_argument("--micro", type=int, default=16, help="rows per forward/backward")
    ap.add_argument("--reps", type=int, default=3, help="timed steps")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pairs = make_pairs(args.prompts * (args.reps + 1), "train", seed=0)
    if args.ckpt:
        model, tok_text, _ = load_model(args.ckpt)
        tok = Tokenizer.from_json(tok_text)
    else:
        tok = train_bpe([build_prompt(p["question"], p["response_a"], p["response_b"]) for p in pairs] * 5, 512)
        model = Transformer(ModelConfig(vocab_size=tok.vocab_size, **TINY))
        model.init_weights(seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    kw = forcing_kwargs(tok)
    times = {k: [] for k in ("rollout", "scoring", "logprobs", "backward+step")}
    lengths = []
    for rep in range(args.reps + 1):
        batch = pairs[rep * args.prompts:(rep + 1) * args.prompts]
        prompts = [encode_prompt(tok, p["question"], p["response_a"], p["response_b"])
                   for p in batch for _ in range(args.group)]
        labels = [p["label"] for p in batch for _ in range(args.group)]
        t = [time.perf_counter()]
        model.eval()
        with torch.no_grad():
            gens = generate(model, prompts, args.max_new_tokens, temperature=1.0, seed=rep, **kw)
        model.train()
        t.append(time.perf_counter())
        rewards = torch.tensor([reward(completion_text(tok, g), y) for g, y in zip(gens, labels)])
        adv = group_advantages(rewards, args.group)
        inp, tgt, index, old, mask = rollout_tensors(prompts, gens, args.max_new_tokens, "cpu")
        t.append(time.perf_counter())
        losses = []
        for s in range(0, len(gens), args.micro):  # forward (log-probs) ...
            sl = slice(s, s + args.micro)
            logp = selected_logprobs(model, inp[sl], tgt[sl]).gather(1, index[sl])
            losses.append(grpo_loss(logp, old[sl], None, adv[sl], mask[sl])[0] * mask[sl].sum() / mask.sum())
        t.append(time.perf_counter())
        for loss in losses:  # ... then backward and the step
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t.append(time.perf_counter())
        if rep > 0:  # the first step warms up
            for k, a, b in zip(times, t, t[1:]):
                times[k].append(b - a)
            lengths.append(sum(len(g.tokens) for g in gens) / len(gens))
    total = sum(statistics.median(v) for v in times.values())
    print(f"one GRPO step, B={args.prompts} x G={args.group}, {model.num_params() / 1e6:.2f}M params, "
          f"{'ckpt ' + args.ckpt if args.ckpt else 'random init'}, threads {args.threads}, "
          f"mean completion {statistics.mean(lengths):.0f} tokens, prompt {len(prompts[0])} tokens")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"  {k:14s} {m:7.2f} s  {m / total:6.1%}")
    print(f"  {'total':14s} {total:7.2f} s")


if __name__ == "__main__":
    main()
