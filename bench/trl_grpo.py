"""One GRPO step of ours beside one of TRL's GRPOTrainer: completion tokens per second of the whole
step.

Runs ONLY in a side environment where TRL is installed; TRL is never a dependency of j1_min:

    python -m venv .trl && . .trl/bin/activate
    pip install torch==2.13.0 trl && pip install -e .
    python bench/trl_grpo.py --threads 2

Both sides take the same model (the embedded judge: TRL loads its Hugging Face Qwen2 folder with
transformers, ours with j1_min.checkpoint.load_judge), the same prompts (B=8 of the synthetic task's
train split, built as bench/grpo.py builds them; the script checks that TRL's tokenizer gives our
token ids) and the same settings: G=8 samples, temperature 1, no top-k/top-p, <= 400 new tokens, β
0, one optimizer step per batch of 64 completions (4 micro-batches of 16 rows), the DAPO token-level
loss with ε 0.2, group-scaled advantages, AdamW lr 1e-6, betas (0.9, 0.99), no weight decay,
gradient clipping at 1, float32, CPU, no gradient checkpointing on TRL's side, no logging,
evaluation or saving. TRL's reward is our judge_format.reward of the completion text (decoded with
special tokens kept, as ours does).

The steps are interleaved: TRL's trainer runs --reps + 1 steps, and after each of its optimizer
steps a callback runs one step of ours on the same 8 prompts; the first round warms up. Each side's
step time is wall time (TRL's: from one optimizer step's end to the next, our step excluded). The
samplers draw different random streams, so completion lengths differ: the figure is completion
tokens (the stop token included, on both sides) per second of the whole step, and the ratio is ours
over TRL's.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDE_ENV = ("bench/trl_grpo.py needs TRL, which j1_min never depends on; run it in a side "
            "environment:\n    python -m venv .trl && . .trl/bin/activate\n"
            "    pip install torch==2.13.0 trl && pip install -e .\n"
            "    python bench/trl_grpo.py --threads 2")

try:
    import trl
except ImportError:
    sys.exit(SIDE_ENV)

import accelerate  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from datasets import Dataset  # noqa: E402
# noqa: E402
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

sys.path.insert(0, str(ROOT))
from j1_min import runs  # noqa: E402
from j1_min.checkpoint import load_judge  # noqa: E402
from j1_min.judge_format import build_prompt, encode_prompt, forcing_kwargs, reward  # noqa: E402
from j1_min.rl import RLConfig, step  # noqa: E402
from j1_min.tasks import make_pairs  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=str(ROOT / "j1_min/embedded/j1-tiny"),
                    help="a Hugging Face model folder with tokenizer.json (default: the embedded "
                         "judge)")
    ap.add_argument("--prompts", type=int, default=8, help="B")
    ap.add_argument("--group", type=int, default=8, help="G")
    ap.add_argument("--max-new-tokens", type=int, default=400, help="completion cap")
    ap.add_argument("--micro", type=int, default=16, help="rows per forward/backward, both sides")
    ap.add_argument("--lr", type=float, default=1e-6, help="AdamW learning rate, both sides")
    ap.add_argument("--reps", type=int, default=3, help="timed rounds (after one warm-up round)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch CPU threads")
    return ap.parse_args()


def hf_tokenizer(args, tok, texts, ids) -> PreTrainedTokenizerFast:
    """TRL's tokenizer: the same tokenizer.json through transformers, checked to give our prompts'
    ids."""
    hf_tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(args.ckpt) / "tokenizer.json"),
                                     eos_token=tok.tok.id_to_token(tok.eos_id),
                                     pad_token="<|endoftext|>")
    for t, i in zip(texts, ids):  # TRL tokenizes the prompt text: it must give our prompt's ids
        if hf_tok(text=t)["input_ids"] != i:
            sys.exit("TRL's tokenization of a prompt differs from encode_prompt's; the prompts "
                     "would not be the same")
    return hf_tok


def trl_reward(tok, tokens: list, longest: list):
    """TRL's reward function: our judge_format.reward on the completion text; each call (one per
    generation batch) appends the batch's completion tokens to `tokens` and its longest completion
    to `longest`."""
    def j1_reward(prompts, completions, completion_ids, label, **_):
        """our judge_format.reward on the completion text, decoded as ours decodes it (special
        tokens kept, the stop token dropped)"""
        tokens.append(sum(len(c) for c in completion_ids))
        # transformers' generate runs every row this far
        longest.append(max(len(c) for c in completion_ids))
        texts = [tok.decode(c[:-1] if c and c[-1] == tok.eos_id else c) for c in completion_ids]
        return [reward(t, y) for t, y in zip(texts, label)]
    return j1_reward


def trl_config(args, rows: int, steps: int) -> GRPOConfig:
    """TRL's settings, ours in its terms (the module docstring lists them)."""
    return GRPOConfig(
        output_dir="/tmp/trl_grpo_bench", use_cpu=True, bf16=False, fp16=False,
        gradient_checkpointing=False, per_device_train_batch_size=args.micro,
        gradient_accumulation_steps=rows // args.micro, num_generations=args.group,
        max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0, beta=0.0,
        num_iterations=1, epsilon=0.2, loss_type="dapo", scale_rewards="group",
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
        adam_beta1=0.9, adam_beta2=0.99, weight_decay=0.0, max_grad_norm=1.0, max_steps=steps,
        shuffle_dataset=False, logging_strategy="no", save_strategy="no", eval_strategy="no",
        report_to="none", disable_tqdm=True, log_completions=False, dataloader_num_workers=0,
        seed=0)


def our_config(args) -> RLConfig:
    """Our settings: the same RLConfig as bench/grpo.py."""
    return RLConfig(algo="grpo", group=args.group, temperature=1.0, top_k=0, top_p=1.0,
                    max_new_tokens=args.max_new_tokens, clip_eps=0.2, clip_eps_high=None, beta=0.0,
                    gamma=1.0, loss_type="dapo", scale_rewards="group", format_penalty=0.0,
                    dynamic_sampling=False, ppo_epochs=1, micro=args.micro, clip_grad=1.0,
                    dtype="float32")


class Interleave(TrainerCallback):
    """After each TRL optimizer step: note its wall time, then run one step of ours on the same
    prompts (ours(r) for round r: (seconds, completion tokens)) and print the round."""

    def __init__(self, ours, threads: int, trl_tokens: list, trl_longest: list):
        self.ours, self.threads, self.trl_tokens, self.trl_longest = (ours, threads, trl_tokens,
                                                                      trl_longest)
        # each round's TRL step time; each round's (seconds, tokens) of ours
        self.trl, self.mine = [], []

    def on_train_begin(self, *_, **__):
        self.t = time.perf_counter()

    def on_step_end(self, _args, state, *_, **__):
        self.trl.append(time.perf_counter() - self.t)
        r = state.global_step - 1
        torch.set_num_threads(self.threads)
        self.mine.append(self.ours(r))
        print(f"round {r}{' (warm-up)' if r == 0 else ''}: TRL {self.trl[-1]:.2f} s "
              f"{self.trl_tokens[-1]} tokens (longest {self.trl_longest[-1]}), "
              f"ours {self.mine[-1][0]:.2f} s {self.mine[-1][1]:.0f} tokens", flush=True)
        self.t = time.perf_counter()


def check_fair(trainer, cfg_trl: GRPOConfig, args, rows: int) -> None:
    """The fairness checks: TRL trains what we train, as we train it (else exit, saying what
    differs)."""
    checkpointing = any(getattr(m, "gradient_checkpointing", False)
                        for m in trainer.model.modules())
    dtypes = {p.dtype for p in trainer.model.parameters()}
    if checkpointing or dtypes != {torch.float32} or trainer.ref_model is not None or cfg_trl.bf16 \
            or str(trainer.accelerator.device) != "cpu" \
            or trainer.args.steps_per_generation * args.micro != rows:
        sys.exit(f"TRL is not set up as ours: activation checkpointing {checkpointing}, dtypes "
                 f"{dtypes}, reference model {trainer.ref_model is not None}, bf16 {cfg_trl.bf16}, "
                 f"device {trainer.accelerator.device}, generation batch "
                 f"{trainer.args.steps_per_generation * args.micro} rows")


def report(args, model, rows: int, trl_tokens: list, trl_times: list, ours: list) -> None:
    """Each side's median step and completion tokens per second after the warm-up round, and ours
    over TRL's."""
    tps_trl = [n / s for n, s in zip(trl_tokens[1:], trl_times[1:])]
    tps_ours = [n / s for s, n in ours[1:]]
    med_trl, med_ours = statistics.median(tps_trl), statistics.median(tps_ours)
    print(f"one GRPO step, B={args.prompts} x G={args.group}, {model.num_params() / 1e6:.2f}M "
          f"params, {args.ckpt}, threads {args.threads}, float32, <= {args.max_new_tokens} new "
          f"tokens, median of {args.reps} rounds")
    for name, tps, times, toks in (("TRL GRPOTrainer", tps_trl, trl_times[1:], trl_tokens[1:]),
                                   ("j1_min rl.step", tps_ours, [s for s, _ in ours[1:]],
                                    [n for _, n in ours[1:]])):
        print(f"  {name:16s} step {statistics.median(times):.2f} s (runs "
              f"{', '.join(f'{x:.1f}' for x in times)}), mean completion "
              f"{statistics.median(toks) / rows:.0f} tokens, {statistics.median(tps):.0f} "
              f"completion tok/s (runs {', '.join(f'{x:.0f}' for x in tps)})")
    print(f"  ours / TRL: {med_ours / med_trl:.2f}x  (per round: "
          f"{', '.join(f'{o / t:.2f}' for o, t in zip(tps_ours, tps_trl))})")
    print(f"  versions: torch {torch.__version__}, transformers {transformers.__version__}, trl "
          f"{trl.__version__}, accelerate {accelerate.__version__}, python "
          f"{sys.version.split()[0]}")


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    # transformers' renames (gradient -> activation ckpt)
    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    rows = args.prompts * args.group
    if rows % args.micro:
        sys.exit(f"--micro {args.micro} must divide B x G = {rows}")
    steps = args.reps + 1

    # the prompts: bench/grpo.py's, round r takes pairs[r*B:(r+1)*B]
    pairs = make_pairs(args.prompts * steps, "train", seed=0)
    model, tok, _ = load_judge(args.ckpt)
    ids = [encode_prompt(tok, p["question"], p["response_a"], p["response_b"]) for p in pairs]
    texts = [build_prompt(p["question"], p["response_a"], p["response_b"]) for p in pairs]

    # --- TRL's side: the same folder through transformers
    hf_tok = hf_tokenizer(args, tok, texts, ids)
    hf_model = AutoModelForCausalLM.from_pretrained(args.ckpt, dtype=torch.float32)
    dataset = Dataset.from_list([{"prompt": t, "label": p["label"]} for t, p in zip(texts, pairs)])
    # completion tokens of each TRL step (one reward call per generation batch)
    trl_tokens, trl_longest = [], []
    cfg_trl = trl_config(args, rows, steps)

    # --- our side: rl.step on round r's prompts, timed
    cfg = our_config(args)
    policy = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(policy.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    forcing = forcing_kwargs(tok)

    def ours(r):
        batch = range(r * args.prompts, (r + 1) * args.prompts)
        prompts = [ids[i] for i in batch for _ in range(args.group)]
        labels = [pairs[i]["label"] for i in batch for _ in range(args.group)]
        t = time.perf_counter()
        m = step(policy, None, opt, tok, prompts, labels, cfg, runs.Dist(), forcing=forcing, seed=r)
        return time.perf_counter() - t, m["completion_len"] * rows

    cb = Interleave(ours, args.threads, trl_tokens, trl_longest)
    trainer = GRPOTrainer(model=hf_model, reward_funcs=trl_reward(tok, trl_tokens, trl_longest),
                          args=cfg_trl, train_dataset=dataset, processing_class=hf_tok,
                          callbacks=[cb])
    check_fair(trainer, cfg_trl, args, rows)
    torch.set_num_threads(args.threads)
    trainer.train()

    if len(trl_tokens) != steps or len(cb.trl) != steps:
        sys.exit(f"expected {steps} TRL steps with one generation each, got {len(cb.trl)} steps "
                 f"and {len(trl_tokens)} generations")
    report(args, model, rows, trl_tokens, cb.trl, cb.mine)


if __name__ == "__main__":
    main()
