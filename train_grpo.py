"""RL with J1's rule-based correctness reward (stage 2 of the J1 recipe): GRPO, or REINFORCE++ as
J1-7B used.

    python train_grpo.py --ckpt sft.pt --data data/train.jsonl --val data/val.jsonl --out rl.pt
    python train_grpo.py --algo reinforce_pp --beta 0.01 --ckpt sft.pt --data data/train.jsonl \\
        --out rl.pt
    torchrun --nproc_per_node=2 train_grpo.py --ckpt sft.pt --data data/train.jsonl \\
        --out rl.pt   # DDP
    torchrun --nproc_per_node=2 train_grpo.py --shard --ckpt sft_run --data data/train.jsonl \\
        --out rl_run  # FSDP2

Each step (j1_min/rl.py:step): take B prompts, sample G completions of each with the KV-cached
sampler (the prompt is prefilled once and its cache copied to the G rows), score each with
`judge_format.reward` (1 for the right verdict, else 0), compute advantages (--algo grpo:
group-relative, DeepSeekMath sec. 4.1.2; reinforce_pp: per-token returns with the k1 KL in the
reward, whitened over the global batch, Hu et al. 2025), recompute the log-probabilities with
gradients under the sampler's temperature, and take --ppo-epochs optimizer steps of the clipped
surrogate `grpo.grpo_loss`. Only sampled completion tokens up to and including the stop token are in
the loss; prompt, forced ("Wait", a forced `</think>`) and padding tokens never are. --budget 0-3
draws each group's forcing budget uniformly from 0..3 (seeded by --seed and the step, so --resume
draws the same).

Log (<out>.log.jsonl, one JSON line per step): reward, accuracy, no_verdict, completion_len, waits
(forced "Wait"s per rollout), budget_mean (the step's mean forcing budget per group), flat_groups
(the number of the step's --prompts groups whose G rewards are all equal: they have no
group-relative signal; flat_share is that count divided by --prompts), loss_tokens, clip_frac, k3,
ratio_mean, grad_norm, logp_diff_max, the seconds of each part; every --eval-every steps a line with
val_acc_budget0 and val_acc_budget<--eval-budget> (and at the last step). `python scripts/results.py
--rl-plot` draws the reward curve, the flat share and the validation points.

Stopping (j1_min/stopping.py, the second experiment's rule): --patience N stops the run once N
consecutive validation points of the trained policy bring no budget---eval-budget count at least
--min-improvement pairs above the best so far (step 0, the start, is validated and logged as the
reference, never a candidate); --max-hours stops it after that much training time
(summed over resumes); --keep-best writes the best point's weights to <out>.best.pt (its run config
records best_step). The counter, the best so far and the time are in the run state, so they
survive --resume; under torchrun every rank judges a share of the validation pairs and the counts
are summed, so every rank decides alike.

Top to bottom: parse_args; setup (data, policy, reference, the run's config); rollout_forcing;
train_step (one RL step: its prompts and budgets, then rl.step); main (the loop: log, validate,
stop, save, Ctrl-C, resume through j1_min/runs.py).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from j1_min import checks, runs, shard, templates
from j1_min.checkpoint import load_judge, load_model, save_pt
from j1_min.data import fit, read_pairs, step_order
from j1_min.judge_format import encode_prompt, forcing_kwargs
from j1_min.rl import ALGOS, RLConfig, group_budgets, parse_budget, step as rl_step
from j1_min.stopping import Patience, best_path, validate

# ----------------------------------------------------------------------------------------------
# defaults
ALGO = "grpo"          # or reinforce_pp / reinforce_pp_baseline (J1-7B's RL used REINFORCE++)
STEPS = 100
PROMPTS = 8            # B: prompts per step, over all processes
GROUP = 8  # G: completions per prompt (DeepSeekMath uses 64; TRL's num_generations default is 8)
TEMPERATURE = 1.0      # rollout temperature; the loss recomputes log-probs at the same temperature
MAX_NEW_TOKENS = 512   # completion length at most (dr_grpo's constant divisor)
LR = 1e-4              # AdamW; ~1e-6 for a 7B model (DeepSeekMath: 1e-6), higher for the tiny one
CLIP_EPS = 0.2         # epsilon (PPO, Schulman et al. 2017; TRL default)
BETA = 0.0  # KL coefficient (TRL default 0.0; DeepSeekMath used 0.04; OpenRLHF's default 0.01)
GAMMA = 1.0            # REINFORCE++ discount (OpenRLHF default 1)
LOSS_TYPE = "dapo"     # token-level reduction (TRL default)
PPO_EPOCHS = 1         # optimizer steps per batch of rollouts (TRL's num_iterations default 1)
MICRO = 16             # rows per forward/backward
EVAL_EVERY, EVAL_ITEMS, EVAL_BUDGET = 25, 200, 2
SAVE_EVERY = 25
# --resume with these changed goes on with a warning (logged); any other changed setting is refused
# (the data's content is compared through its checksum, not its path)
RESUME_MAY_CHANGE = {"steps", "val", "eval_every", "eval_items", "eval_budget", "save_every",
                     "device", "micro", "world", "data", "activation_checkpointing", "patience",
                     "max_hours"}
# flag checks (j1_min/checks.py), applied after parsing
FLAG_RULES = {**dict.fromkeys(["steps", "prompts", "max_new_tokens", "ppo_epochs", "micro",
                               "eval_items", "save_every", "stop_after", "patience",
                               "min_improvement"], checks.positive_int),
              **dict.fromkeys(["top_k", "max_think_tokens", "warmup", "eval_every", "eval_budget"],
                              checks.nonneg_int),
              **dict.fromkeys(["lr", "temperature", "clip_eps", "clip_eps_high", "max_hours"],
                              checks.positive_float),
              **dict.fromkeys(["beta", "format_penalty", "clip_grad"], checks.nonneg_float),
              "top_p": checks.probability, "seed": checks.seed_int, "device": checks.device}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="policy to start from: a .pt from train_sft.py "
                                                  "or a HF directory")
    ap.add_argument("--data", required=True, help="RL preference pairs, JSONL (RewardBench, "
                                                  "JudgeBench or ours)")
    ap.add_argument("--val", help="held-out pairs: greedy verdict accuracy at budget 0 and "
                                  "--eval-budget")
    ap.add_argument("--out", required=True, help="checkpoint to write (.pt); its log is "
                                                 "<out>.log.jsonl")
    ap.add_argument("--template", help="the judge's prompt and verdicts (prompts, verdict parsing, "
                                       "rewards): a shipped template "
                                       f"({', '.join(templates.shipped())}) or a template JSON "
                                       "file; recorded in --out (default: the one --ckpt or "
                                       f"--resume recorded, else {templates.DEFAULT})")
    ap.add_argument("--algo", default=ALGO, choices=ALGOS, help="advantages: grpo "
                                                                "(group-relative), reinforce_pp "
                                                                "(REINFORCE++: returns with the k1 "
                                                                "KL in the reward, whitened over "
                                                                "the global batch) or "
                                                                "reinforce_pp_baseline (the "
                                                                "group's mean reward subtracted "
                                                                "first)")
    ap.add_argument("--gamma", type=float, default=GAMMA, help="REINFORCE++ discount of the "
                                                               "per-token returns")
    ap.add_argument("--resume", help="continue the run saved in this checkpoint")
    ap.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    ap.add_argument("--steps", type=int, default=STEPS, help="GRPO steps (batches of rollouts)")
    ap.add_argument("--prompts", type=int, default=PROMPTS, help="B: prompts per step, all "
                                                                 "processes together")
    ap.add_argument("--group", type=int, default=GROUP, help="G: completions sampled per prompt "
                                                             "(>= 2)")
    ap.add_argument("--temperature", type=float, default=TEMPERATURE,
                    help="rollout sampling temperature (> 0)")
    ap.add_argument("--top-k", type=int, default=0, help="rollout top-k (0: off)")
    ap.add_argument("--top-p", type=float, default=1.0, help="rollout nucleus sampling (1: off)")
    ap.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS,
                    help="completion length at most")
    ap.add_argument("--budget", default="0", help="s1 budget forcing during rollouts: forced "
                                                  "'Wait's, N for every group or LO-HI to draw "
                                                  "each group's budget uniformly (e.g. 0-3); "
                                                  "forced tokens are masked out of the loss "
                                                  "(default 0)")
    ap.add_argument("--max-think-tokens", type=int, help="rollouts and validation: force </think> "
                                                         "after this many thinking tokens")
    ap.add_argument("--lr", type=float, default=LR, help="AdamW learning rate (constant after "
                                                         "--warmup)")
    ap.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    ap.add_argument("--clip-eps", type=float, default=CLIP_EPS, help="PPO clip epsilon (lower "
                                                                     "side)")
    ap.add_argument("--clip-eps-high", type=float, help="upper clip epsilon (DAPO clip-higher; "
                                                        "default: --clip-eps)")
    ap.add_argument("--beta", type=float, default=BETA, help="KL coefficient: β·k3 in GRPO's loss, "
                                                             "−β·k1 in REINFORCE++'s per-token "
                                                             "reward; > 0 keeps a frozen copy of "
                                                             "--ckpt's model as the reference "
                                                             "(after --resume too)")
    ap.add_argument("--loss-type", default=LOSS_TYPE, choices=["grpo", "dapo", "dr_grpo"],
                    help="loss reduction")
    ap.add_argument("--scale-rewards", default="group", choices=["group", "none"],
                    help="GRPO's advantage scaling: divide by the group's std (group) or not "
                         "(none, Dr. GRPO)")
    ap.add_argument("--format-penalty", type=float, default=0.0, help="reward for an unparseable "
                                                                      "verdict is minus this (0: "
                                                                      "unparseable = wrong = 0)")
    ap.add_argument("--dynamic-sampling", action="store_true", help="DAPO: leave groups whose "
                                                                    "rewards are all equal out of "
                                                                    "the loss's normaliser (they "
                                                                    "carry no signal; counted "
                                                                    "either way)")
    ap.add_argument("--ppo-epochs", type=int, default=PPO_EPOCHS,
                    help="optimizer steps per batch of rollouts")
    ap.add_argument("--micro", type=int, default=MICRO, help="rows per forward/backward on one "
                                                             "process")
    ap.add_argument("--clip-grad", type=float, default=1.0, help="max gradient norm (0: off)")
    ap.add_argument("--eval-every", type=int, default=EVAL_EVERY,
                    help="steps between evaluations (0: end only)")
    ap.add_argument("--eval-items", type=int, default=EVAL_ITEMS,
                    help="held-out items per evaluation")
    ap.add_argument("--eval-budget", type=int, default=EVAL_BUDGET,
                    help="budget of the second evaluation")
    ap.add_argument("--save-every", type=int, default=SAVE_EVERY, help="steps between checkpoints")
    ap.add_argument("--patience", type=int, help="stop after this many validation points in a row "
                                                 "without a new best at --eval-budget (needs "
                                                 "--val; step 0 is the reference, not a "
                                                 "candidate; default: run all --steps)")
    ap.add_argument("--min-improvement", type=int, default=1,
                    help="pairs right at --eval-budget by which a validation point must beat the "
                         "best so far to be the new best (a tie keeps the earlier point)")
    ap.add_argument("--max-hours", type=float, help="stop after this many hours of training, "
                                                    "summed over resumes")
    ap.add_argument("--keep-best", action="store_true",
                    help="write the best validated trained step's weights (never step 0's) to "
                         "<out>.best.pt (its run config records best_step); --out keeps the "
                         "last, resumable state")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="float32, or bfloat16 autocast for the training forwards and backward "
                         "(weights and AdamW state stay float32, so small updates are not lost to "
                         "rounding; rollouts run in float32). Faster only where bf16 matmuls are "
                         "(GPUs, CPUs with AVX512-BF16 or AMX); on an AVX2-only CPU it is many "
                         "times slower")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--seed", type=int, default=0, help="seed of data order and sampling")
    ap.add_argument("--skip-bad", action="store_true", help="skip malformed data lines (counted) "
                                                            "instead of stopping")
    ap.add_argument("--shard", action="store_true", help="under torchrun: shard the policy, its "
                                                         "gradients and AdamW state, and the β > 0 "
                                                         "reference, over the processes (FSDP2) "
                                                         "instead of DDP; rollouts gather the full "
                                                         "policy on each rank (one float32 copy); "
                                                         "--out is a run folder (j1_min/shard.py)")
    ap.add_argument("--activation-checkpointing", action="store_true",
                    help="recompute each transformer block in " "the backward instead of keeping "
                                                                "its activations (less memory, "
                                                                "~1/3 more compute)")
    # tests: simulate a kill after this step
    ap.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    checks.check_flags(ap, args, FLAG_RULES)
    if args.template:
        templates.load(args.template)  # a bad name or file is refused before any work
    args.budget_range = parse_budget(args.budget)
    lo, hi = args.budget_range
    # as saved in the run's config: an int for a fixed budget
    args.budget = lo if lo == hi else f"{lo}-{hi}"
    if args.group < 2:
        raise ValueError(f"--group {args.group}: GRPO needs at least 2 completions per prompt to "
                         "compare")
    if args.algo == "reinforce_pp_baseline" and args.gamma != 1.0:
        raise ValueError(f"--gamma {args.gamma}: reinforce_pp_baseline needs --gamma 1 (OpenRLHF "
                         "forces it)")
    for flag in ("patience", "keep_best"):
        if getattr(args, flag) and not args.val:
            raise ValueError(f"--{flag.replace('_', '-')} needs --val: it stops on validation")
    if args.keep_best and args.shard:
        raise ValueError("--keep-best: not with --shard (a sharded run saves a folder per step)")
    if args.temperature <= 0:
        raise ValueError("--temperature must be > 0 for GRPO rollouts (greedy groups would be "
                         "identical)")
    return args


def setup(args, d):
    """Everything a run starts from: (state, policy, ref, tokenizer, template, data, prompts, val,
    config). The RL pairs (a prompt too long for the context with --max-new-tokens: an error, or
    skipped with --skip-bad) and the held-out pairs, the saved state of --resume (None for a new
    run), the policy (--resume's, else --ckpt's; float32 master weights, whatever --dtype and the
    checkpoint's dtype; wrapped by shard.wrap, so before the optimizer is made), the frozen KL
    reference (--ckpt's model, also when --resume continues from later weights; None when
    β = 0), each pair's encoded prompt, and the run's config as the checkpoint records it."""
    data = read_pairs(args.data, seed=args.seed, skip_bad=args.skip_bad)
    if not data:
        raise ValueError(f"{args.data}: no records")
    val = read_pairs(args.val, seed=args.seed, skip_bad=args.skip_bad) if args.val else []
    state = runs.load_train_state(args.resume, "train_grpo") if args.resume else None
    # float32 master weights whatever the checkpoint holds (a bf16 one too); --dtype is the compute
    # dtype. Under --shard each rank loads on the CPU and fully_shard moves one block at a time to
    # the device, sharded: no rank ever holds the whole model on its GPU.
    where = shard.load_device(d.device, args.shard)
    policy, tok, template = load_judge(args.resume or args.ckpt, args.template,
                                       dtype=torch.float32, device=where)
    policy.train()
    shard.wrap(policy, args.dtype, args.activation_checkpointing, shard=args.shard)
    ref = None
    if args.beta > 0:  # loaded after the policy is sharded: one full model in memory at a time
        ref = load_model(args.ckpt, dtype=torch.float32, device=where)[0].eval()
        shard.wrap(ref.requires_grad_(False), args.dtype, shard=args.shard)
    prompts = [encode_prompt(tok, r["question"], r["response_a"], r["response_b"], template)
               for r in data]
    # checked at load, not when drawn
    room = policy.config.max_position_embeddings - args.max_new_tokens
    data = fit(data, list(map(len, prompts)), room, args.skip_bad, f"the model's context is "
               f"{policy.config.max_position_embeddings} tokens and --max-new-tokens "
               f"{args.max_new_tokens}")
    prompts = [encode_prompt(tok, r["question"], r["response_a"], r["response_b"], template)
               for r in data]
    for name, recs in (("--data", data), ("--val", val)):
        if recs and recs.skipped and d.main:
            print(f"{name}: {recs.skipped_message()}")
    config = {k: v for k, v in vars(args).items() if k not in ("stop_after", "budget_range")}
    config.update(run="train_grpo", world=d.world, params=policy.num_params(), rl_items=len(data),
                  skipped_lines=len(data.skipped),
                  val_skipped_lines=len(val.skipped) if val else 0,
                  data_sha256=runs.sha256(args.data))
    templates.record(config, template, tok)  # the checkpoint judges with it by default
    return state, policy, ref, tok, template, data, prompts, val, config


def rollout_forcing(args, tok, template) -> dict:
    """generate's budget-forcing options for the rollouts, up to the largest budget of --budget (the
    per-row budgets are set each step); a template the tokenizer cannot force is refused, naming the
    checkpoint."""
    try:
        return forcing_kwargs(tok, args.budget_range[1], args.max_think_tokens, template=template)
    except ValueError as e:
        raise ValueError(f"{args.resume or args.ckpt}: {e}") from None


def train_step(model, ref, opt, tok, template, data, prompts_all, step: int, cfg, forcing, args,
               d) -> dict:
    """One RL step, the `step`-th: its prompts (step_order; G consecutive rows per prompt, this
    process's share), the learning rate (warm-up, then constant), each group's forcing budget
    (group_budgets), then j1_min/rl.py:step: rollout, scoring, advantages, policy update. `model` is
    the DDP-wrapped (or sharded) policy. Returns the step's metrics, with budget_mean and
    flat_share."""
    items = step_order(len(data), args.prompts, step, args.seed)[d.rank::d.world]
    # G consecutive rows per prompt
    prompts = [prompts_all[i] for i in items for _ in range(args.group)]
    labels = [data[i]["label"] for i in items for _ in range(args.group)]
    for g in opt.param_groups:
        g["lr"] = runs.lr_at(step, args.lr, args.warmup, 10**12, 1.0)  # warm-up, then constant
    budgets = group_budgets(args.budget_range, args.prompts, step, args.seed)
    rows_budget = [b for b in budgets[d.rank::d.world] for _ in range(args.group)]
    metrics = rl_step(model, ref, opt, tok, prompts, labels, cfg, d,
                      forcing={**forcing, "budget": rows_budget},
                      seed=args.seed * 1_000_003 + step * 1009, template=template,
                      # gathered for the rollout, freed before the update
                      sampler=lambda: shard.full_model(getattr(model, "module", model)))
    metrics["budget_mean"] = sum(budgets) / len(budgets)
    metrics["flat_share"] = metrics["flat_groups"] / args.prompts
    return metrics


def main(argv=None):
    args = parse_args(argv)
    d, out = runs.begin(args, "--prompts", args.prompts)
    same = bool(args.resume) and Path(args.resume).resolve() == out.resolve()
    if args.keep_best:
        checks.check_output(best_path(out), args.force or same, "--keep-best's")
    state, policy, ref, tok, template, data, prompts, val, config = setup(args, d)  # wrapped
    opt = torch.optim.AdamW(policy.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    step, ddp, log = runs.start(out, d, policy, opt, state, config, RESUME_MAY_CHANGE)
    saver = runs.Saver(out, d.main, prompts[0], state)  # never saves a non-finite policy
    cfg = RLConfig.from_args(args)
    forcing = rollout_forcing(args, tok, template)
    stopper = Patience(args.patience, args.min_improvement, args.max_hours,
                       (state or {}).get("stopping"))

    def save(at_step):
        saver.save(policy, tok, config, opt, at_step, {"step": at_step}, stopping=stopper.state)

    def validate_and_log(at_step):
        """Validation at budget 0 and --eval-budget (counts summed over ranks); after step 0 (the
        reference, not a candidate) the patience update, and with --keep-best the new best's
        weights."""
        counts = validate(policy, tok, template, val, args.eval_items,
                          sorted({0, args.eval_budget}), args.max_new_tokens,
                          args.max_think_tokens, d)
        metrics = {"step": at_step}
        for b, (right, none, n) in counts.items():
            metrics.update({f"val_acc_budget{b}": right / n, f"val_no_verdict_budget{b}": none / n,
                            f"val_right_budget{b}": right, "val_n": n})
        if at_step == 0:
            metrics["reference"] = True
        else:
            if stopper.update(at_step, counts[args.eval_budget][0]) and args.keep_best and d.main:
                save_pt(best_path(out), policy, tok, run_config={**config, "best_step": at_step,
                                                                 "best_val": metrics})
            metrics.update(best_step=stopper.state["best_step"],
                           since_best=stopper.state["since_best"])
        log.write(metrics)
        return metrics

    if val and step == 0 and not state:
        validate_and_log(0)
    bar = tqdm(total=args.steps, initial=step, disable=not d.main, desc=args.algo,
               dynamic_ncols=True)
    with runs.ctrl_c() as interrupted:  # Ctrl-C: finish this step, save, exit
        while step < args.steps and not interrupted[0] and not stopper.reason():
            t0 = time.time()
            metrics = train_step(ddp, ref, opt, tok, template, data, prompts, step, cfg, forcing,
                                 args, d)
            runs.release_memory()  # rollouts and micro-batches of every length would grow the heap
            step += 1
            # a non-finite policy would break the next rollout; stop before it
            saver.check(policy, step)
            log.write({"step": step, **metrics})
            bar.update(1)
            bar.set_postfix(reward=f"{metrics['reward']:.3f}",
                            len=f"{metrics['completion_len']:.0f}", flat=metrics["flat_groups"],
                            dlogp=f"{metrics['logp_diff_max']:.1e}")
            # validated before the save, so a checkpoint holds its step's patience state
            validated = val and (step == args.steps
                                 or args.eval_every and step % args.eval_every == 0)
            if validated:
                bar.write(json.dumps(validate_and_log(step)))
            # the mean over ranks: every rank decides on the same time
            stopper.add_time(runs.all_sum(torch.tensor(time.time() - t0, dtype=torch.float64),
                                          d).item() / d.world)
            why = stopper.reason()
            if why == "max_hours" and val and not validated:  # the last policy is a candidate too
                bar.write(json.dumps(validate_and_log(step)))
            if why:
                log.write({"step": step, "stopped": why, **stopper.state})
            if (step % args.save_every == 0 or step == args.steps or step == args.stop_after
                    or why):
                save(step)
            if step == args.stop_after:
                break
    bar.close()
    if args.keep_best and d.main and (step == args.steps or stopper.reason()):  # the run's end
        log.write({"step": step, "kept": str(best_path(out)), **stopper.state})
    runs.finish(d, out, step, interrupted[0], save, None)


def run_cli(argv=None):
    """main() with user mistakes reported as `error: ...` and exit status 2."""
    runs.cli(lambda: main(argv))


if __name__ == "__main__":
    run_cli()
