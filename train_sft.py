"""Supervised fine-tuning of a judge on J1-style traces (stage 1 of the J1 recipe), as a plain
PyTorch loop.

    python train_sft.py --data traces.jsonl --init tiny --out sft.pt
    torchrun --nproc_per_node=2 train_sft.py --data traces.jsonl --init tiny \\
        --out sft.pt      # DDP, same math
    torchrun --nproc_per_node=2 train_sft.py --shard --data traces.jsonl --init tiny \\
        --out sft_run     # FSDP2

Loss: next-token cross-entropy on the assistant's tokens only (the prompt is masked out), summed
over tokens and divided by the number of target tokens in the whole optimizer step, so gradient
accumulation and any number of processes give the same update as one big batch. Batching: each
step's sequences are sorted by length and cut into micro-batches, each right-padded to its longest
sequence (padding carries no loss). The objective, its examples and batches are j1_min/sft.py.

Top to bottom: parse_args; build_init and setup (data, model, the run's config); optimizer;
train_step (one optimizer step); evaluate; main (the loop: log, save, evaluate, Ctrl-C, resume
through j1_min/runs.py).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from j1_min import checks, runs, shard, templates
from j1_min.checkpoint import load_judge
from j1_min.data import fit, read_pairs, step_order
from j1_min.evaluate import eval_accuracy
from j1_min.judge_format import build_prompt
from j1_min.model import TINY, TINY_4X, ModelConfig, Transformer
from j1_min.sft import sft_batches, sft_example, sft_loss, sft_nll
from j1_min.tokenizer import train_bpe

# ----------------------------------------------------------------------------------------------
# defaults
STEPS = 300            # optimizer steps
BATCH = 32             # sequences per optimizer step, over all processes
# sequences per forward/backward on one process (gradient accumulation makes up the rest)
MICRO = 16
LR = 1e-3              # peak learning rate (AdamW); 1e-5 is a sensible start for a 7B model
WARMUP = 30            # linear warm-up steps, then cosine decay to LR * MIN_LR_RATIO
MIN_LR_RATIO = 0.1
WEIGHT_DECAY = 0.1
BETAS = (0.9, 0.95)
CLIP = 1.0             # gradient-norm clipping
EVAL_EVERY = 100       # steps between evaluations (0: only at the end)
EVAL_ITEMS = 200       # held-out items judged by generation for verdict accuracy
SAVE_EVERY = 100       # steps between checkpoints
MAX_NEW_TOKENS = 512   # generation length at evaluation
# BPE vocabulary trained on the data for --init tiny and tiny4x (architectures: j1_min/model.py)
TINY_VOCAB = 512
# --resume with these changed goes on with a warning (logged); any other changed setting is refused,
# since the continued run would be another run (the data's content is compared through its checksum,
# not its path)
RESUME_MAY_CHANGE = {"steps", "val", "eval_every", "eval_items", "save_every", "max_new_tokens",
                     "device", "micro", "world", "dtype", "data", "activation_checkpointing"}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="training traces, JSONL (data_gen.py traces "
                                                  "schema)")
    ap.add_argument("--val", help="held-out JSONL: verdict accuracy by generation on its pairs, "
                                  "and eval loss on those that carry a completion (traces)")
    ap.add_argument("--init", default="tiny", help="a Hugging Face model directory, a .pt "
                                                   "checkpoint, 'tiny' (a new ~4.6M model with a "
                                                   "BPE tokenizer trained on --data) or 'tiny4x' "
                                                   "(the same, four times larger: ~18.4M)")
    ap.add_argument("--out", required=True, help="checkpoint to write (.pt); its log is "
                                                 "<out>.log.jsonl")
    ap.add_argument("--template", help=f"the judge's prompt and verdicts: a shipped template "
                    f"({', '.join(templates.shipped())}) or a template JSON file; recorded in "
                    "--out (default: the one --init or --resume recorded, else "
                    f"{templates.DEFAULT})")
    ap.add_argument("--resume", help="continue the run saved in this checkpoint (weights, "
                                     "optimizer, data position)")
    ap.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    ap.add_argument("--steps", type=checks.positive_int, default=STEPS,
                    help="total optimizer steps")
    ap.add_argument("--batch", type=checks.positive_int, default=BATCH,
                    help="sequences per optimizer step, all processes together")
    ap.add_argument("--micro", type=checks.positive_int, default=MICRO,
                    help="sequences per forward/backward on one process")
    ap.add_argument("--lr", type=checks.positive_float, default=LR, help="peak learning rate")
    ap.add_argument("--warmup", type=checks.nonneg_int, default=WARMUP, help="warm-up steps")
    ap.add_argument("--weight-decay", type=checks.nonneg_float, default=WEIGHT_DECAY,
                    help="AdamW weight decay (matrices only)")
    ap.add_argument("--clip", type=checks.nonneg_float, default=CLIP,
                    help="max gradient norm (0: no clipping)")
    ap.add_argument("--eval-every", type=checks.nonneg_int, default=EVAL_EVERY,
                    help="steps between evaluations (0: end only)")
    ap.add_argument("--eval-items", type=checks.positive_int, default=EVAL_ITEMS,
                    help="held-out items judged by generation")
    ap.add_argument("--save-every", type=checks.positive_int, default=SAVE_EVERY,
                    help="steps between checkpoints")
    ap.add_argument("--max-new-tokens", type=checks.positive_int, default=MAX_NEW_TOKENS,
                    help="generation length at evaluation")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="float32, or bfloat16 autocast (weights and optimizer stay float32)")
    ap.add_argument("--device", type=checks.device, default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--seed", type=checks.seed_int, default=0, help="seed for initialization and "
                                                                    "data order")
    ap.add_argument("--skip-bad", action="store_true", help="skip malformed data lines and traces "
                                                            "longer than the model's context "
                                                            "(counted, printed and logged) instead "
                                                            "of stopping")
    ap.add_argument("--shard", action="store_true", help="under torchrun: shard weights, gradients "
                                                         "and AdamW state over the processes "
                                                         "(FSDP2) instead of replicating them "
                                                         "(DDP); --out is then a run folder whose "
                                                         "latest/model is a Hugging Face folder "
                                                         "(j1_min/shard.py)")
    ap.add_argument("--activation-checkpointing", action="store_true",
                    help="recompute each transformer block in " "the backward instead of keeping "
                                                                "its activations (less memory, "
                                                                "~1/3 more compute)")
    # tests: a kill after this step
    ap.add_argument("--stop-after", type=checks.positive_int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.template:
        templates.load(args.template)  # a bad name or file is refused before any work
    return args


def build_init(args, records):
    """(model, tokenizer, template) from --init: a checkpoint, or a new tiny model with a tokenizer
    trained on the data's prompts and completions (the template's text is learned too)."""
    if args.init in ("tiny", "tiny4x"):
        template = templates.load(args.template or templates.DEFAULT)
        if template.chat == "model":
            raise ValueError(f"--template {template.name} applies the model's own chat template; "
                             f"--init {args.init} has none (use a chatml template)")
        tok = train_bpe([build_prompt(r["question"], r["response_a"], r["response_b"], template)
                         + r["completion"]
                         for r in records], TINY_VOCAB)
        size = TINY if args.init == "tiny" else TINY_4X
        model = Transformer(ModelConfig(vocab_size=tok.vocab_size, **size))
        model.init_weights(seed=args.seed)
        return model, tok, templates.for_model(args.template, None, {}, tok)
    if not Path(args.init).exists():
        raise ValueError(f"--init {args.init}: no such checkpoint (or use 'tiny' or 'tiny4x')")
    # refuses a tokenizer larger than the model's embedding; float32 master weights whatever the
    # checkpoint holds (--dtype is the compute dtype)
    return load_judge(args.init, args.template, dtype=torch.float32, device="cpu")


def setup(args, d):
    """Everything a run starts from: (state, model, tokenizer, template, examples, val,
    val_examples, config). The data (traces too long for the model's context: an error, or skipped
    with --skip-bad), the saved state of --resume (None for a new run), the model (--resume's, else
    build_init), the tokenized examples, the held-out pairs and those of their examples that carry a
    completion, and the run's config as the checkpoint records it."""
    train = read_pairs(args.data, skip_bad=args.skip_bad, need_completion=True)
    val = read_pairs(args.val, skip_bad=args.skip_bad) if args.val else []
    state = runs.load_train_state(args.resume, "train_sft") if args.resume else None
    model, tok, template = (load_judge(args.resume, args.template, dtype=torch.float32,
                                       device="cpu") if state else build_init(args, train))
    # on the CPU under --shard: shard.wrap (main) moves it to the device one sharded block at a time
    model = model.to(shard.load_device(d.device, args.shard)).train()
    examples = [sft_example(tok, r, template) for r in train]
    ctx = model.config.max_position_embeddings
    train = fit(train, [len(ids) for ids, _ in examples], ctx, args.skip_bad,
                f"the model's context is {ctx}")
    examples = [sft_example(tok, r, template) for r in train]
    # pairs alone: accuracy only
    val_examples = [sft_example(tok, r, template) for r in val if "completion" in r]
    for name, recs in (("--data", train), ("--val", val)):
        if recs and recs.skipped and d.main:
            print(f"{name}: {recs.skipped_message()}")
    config = {k: v for k, v in vars(args).items() if k != "stop_after"}
    config.update(run="train_sft", world=d.world, params=model.num_params(),
                  train_items=len(examples), vocab=tok.vocab_size, skipped_lines=len(train.skipped),
                  val_skipped_lines=len(val.skipped) if val else 0,
                  data_sha256=runs.sha256(args.data))
    templates.record(config, template, tok)  # the checkpoint judges with it by default
    return state, model, tok, template, examples, val, val_examples, config


def optimizer(model, args) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (not on norms and biases)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=BETAS)


def train_step(model, opt, examples, step: int, args, d, autocast, saver, pad_id: int) -> dict:
    """One optimizer step, the `step`-th: this process's share of the step's batch in micro-batches,
    each one's summed NLL over the step's target tokens (all processes) backpropagated, then
    clipping and AdamW. `model` is the DDP-wrapped (or sharded) model. A non-finite loss stops the
    run (saver.stop) before any update. Returns what the log records: loss (per target token), lr,
    grad_norm (before clipping), target_tok_s."""
    t0 = time.time()
    # this step's global batch (indexes)
    seqs = step_order(len(examples), args.batch, step, args.seed)
    # target tokens, all processes
    n_targets = sum(len(examples[i][0]) - examples[i][1] for i in seqs)
    mine = seqs[d.rank::d.world]
    lr = runs.lr_at(step, args.lr, args.warmup, args.steps, MIN_LR_RATIO)
    for g in opt.param_groups:
        g["lr"] = lr
    loss_sum = torch.zeros((), device=d.device)
    micro = sft_batches([examples[i] for i in mine], args.micro, pad_id)
    for j, (inp, tgt, mask) in enumerate(micro):
        inp, tgt, mask = inp.to(d.device), tgt.to(d.device), mask.to(d.device)
        sync = j == len(micro) - 1
        with runs.no_sync(model, sync), autocast:
            nll = sft_nll(model, inp, tgt, mask)
            # DDP/FSDP average over processes; * world: a sum
            (nll * d.world / n_targets).backward()
        loss_sum += nll.detach()
    loss = runs.all_sum(loss_sum, d).item() / n_targets
    if not math.isfinite(loss):
        raise saver.stop(f"loss is {loss} at step {step + 1}")
    bare = getattr(model, "module", model)
    gnorm = shard.clip_grad_norm(bare.parameters(), args.clip if args.clip > 0 else float("inf"))
    opt.step()
    opt.zero_grad(set_to_none=True)
    return {"loss": loss, "lr": lr, "grad_norm": gnorm.item(),
            "target_tok_s": n_targets / (time.time() - t0)}


def evaluate(model, tok, template, val, val_examples, args, d, autocast) -> dict:
    """Held-out figures: val_loss over the held-out traces (under the training autocast), and
    verdict accuracy by generation over the first --eval-items pairs (in the weights' dtype; a
    sharded model is gathered first)."""
    model.eval()
    metrics = {}
    with torch.no_grad():
        if val_examples:
            with autocast:
                metrics["val_loss"] = sft_loss(model, val_examples, tok, d.device)
            shard.reshard(model)  # no backward follows: a sharded root would stay gathered
        if val:
            metrics.update(eval_accuracy(shard.full_model(model), tok, val[:args.eval_items],
                                         args.max_new_tokens, template=template)[0])
    model.train()
    return metrics


def main(argv=None):
    args = parse_args(argv)
    d, out = runs.begin(args, "--batch", args.batch)
    torch.manual_seed(args.seed)
    state, model, tok, template, examples, val, val_examples, config = setup(args, d)
    # before the optimizer sees it
    shard.wrap(model, args.dtype, args.activation_checkpointing, shard=args.shard)
    opt = optimizer(model, args)
    step, ddp, log = runs.start(out, d, model, opt, state, config, RESUME_MAY_CHANGE)
    autocast = torch.autocast(d.device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
    saver = runs.Saver(out, d.main, examples[0][0], state)  # never saves a non-finite model

    def save(at_step):
        saver.save(model, tok, config, opt, at_step, {"step": at_step})

    def evaluate_and_log(at_step):
        metrics = {"step": at_step,
                   **evaluate(model, tok, template, val, val_examples, args, d, autocast)}
        log.write(metrics)
        return metrics

    bar = tqdm(total=args.steps, initial=step, disable=not d.main, desc="sft", dynamic_ncols=True)
    with runs.ctrl_c() as interrupted:  # Ctrl-C: finish this step, save, exit
        while step < args.steps and not interrupted[0]:
            m = train_step(ddp, opt, examples, step, args, d, autocast, saver,
                           tok.token_id("<|endoftext|>") or 0)
            runs.release_memory()  # micro-batches of every length would grow the heap
            step += 1
            log.write({"step": step, **m})
            bar.update(1)
            bar.set_postfix(loss=f"{m['loss']:.4f}", lr=f"{m['lr']:.2e}",
                            tok_s=f"{m['target_tok_s']:.0f}")
            if step % args.save_every == 0 or step == args.steps or step == args.stop_after:
                save(step)
            if args.eval_every and step % args.eval_every == 0 and step < args.steps:
                bar.write(json.dumps(evaluate_and_log(step)))
            if step == args.stop_after:
                break
    bar.close()
    # a sharded model evaluates on every rank together
    final = step == args.steps and (d.main or args.shard)
    runs.finish(d, out, step, interrupted[0],
                save, (lambda: evaluate_and_log(step)) if final else None)


def run_cli(argv=None):
    """main() with user mistakes reported as `error: ...` and exit status 2."""
    runs.cli(lambda: main(argv))


if __name__ == "__main__":
    run_cli()
