"""Make J1-style judge data: verifiable preference pairs, and reflection-enhanced SFT traces by
rejection sampling.

    python data_gen.py pairs --task arith --n 2000 --split test --out data/test.jsonl
    python data_gen.py traces --task arith --n 10000 --split train --out data/traces.jsonl
    python data_gen.py traces --task arith --n 10000 --split train --no-reflection \\
        --out data/plain.jsonl
    python data_gen.py traces --task arith --n 10000 --split train --teacher-version v2 \\
        --wrong-kinds carry,digit --out data/traces_v2.jsonl
    python data_gen.py traces --teacher ./my-model --data prefs.jsonl --k 8 --budget 1 \\
        --out data/traces.jsonl

Rejection sampling (J1 sec. 3.1), the same for both teachers: draw --k traces per item, keep those
whose verdict parses and matches the label (j1_min.judge_format.parse_verdict), drop duplicates,
keep at most --max-keep per item. The programmatic teacher's traces must also be right for the right
reason (j1_min.teacher.grounded: the last decision rests on a true check), so a plain trace that
matched neither response and fell back on "So A is right." is rejected whatever the label; the
summary counts them (right_for_wrong_reason). With and without --no-reflection the teacher draws the
same first passes (same slips, same decisions); the plain one stops before its first "Wait".

--teacher-version chooses the programmatic teacher: v1 (j1_min/teacher.py, the default: only the
first pass slips, reflections re-check B and the last one decides) or v2 (j1_min/teacher_v2.py:
every check slips at --slip-rate and lands on the wrong response's number with --land, reflections
check both responses, a running tally of votes decides; its traces are kept by its own
teacher_v2.grounded, the same rule for plain and reflection traces).

Output, one JSON object per line. Pairs: id, question, response_a, response_b, label ("A" or "B"),
origin, wrong_kind. Traces: the pair's fields and completion (the judge's text after the prompt's
`<think>\\n`: thinking, `</think>`, verdict; without `<|im_end|>`, which trainers append), verdict,
has_reflection, num_reflections, source.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics

from tqdm import tqdm

from j1_min import checks, teacher_v2, templates
from j1_min.data import read_pairs, write_jsonl
from j1_min.judge_format import count_reflections, parse_verdict, select_traces
from j1_min.runs import cli
from j1_min.tasks import WRONG_KINDS, make_pairs, parse_difficulty
from j1_min.teacher import grounded, reflection_changed, teacher_trace

# ----------------------------------------------------------------------------------------------
# defaults
N, SPLIT, SEED = 1000, "train", 0
# the synthetic task's difficulty (see tasks.Difficulty)
DIGITS, MUL_DIGITS, OPS = "2-3", "2-3x1", "+-*"
KINDS = ",".join(WRONG_KINDS)                    # how a wrong response is wrong
K, MAX_KEEP = 4, 1                               # traces drawn per item, traces kept per item
SLIP_RATE = 0.2  # programmatic teacher v1: chance of one slip in the first pass
SLIP_RATE_V2, LAND = teacher_v2.SLIP_RATE, teacher_v2.LAND  # v2: per check; landing on the wrong N
VERSIONS = {"v1": (teacher_trace, grounded), "v2": (teacher_v2.teacher_trace, teacher_v2.grounded)}
REFLECTIONS = "0.3,0.5,0.2"  # programmatic teacher: weights of 0, 1, 2, ... reflections
TEMPERATURE, TOP_P, TOP_K = 1.0, 1.0, 0          # model teacher sampling
# model teacher: length, forced "Wait"s (s1), items per batch
MAX_NEW_TOKENS, BUDGET, BATCH = 1024, 0, 8
MODEL_DEFAULTS = dict(temperature=TEMPERATURE, top_p=TOP_P, top_k=TOP_K,
                      max_new_tokens=MAX_NEW_TOKENS, budget=BUDGET, max_think_tokens=None,
                      batch_size=BATCH, device="cpu", dtype=None)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True, metavar="{pairs,traces}")
    p_pairs = sub.add_parser("pairs", help="synthetic preference pairs of the arithmetic task")
    p_tr = sub.add_parser("traces", help="judge traces by rejection sampling (programmatic or "
                                         "model teacher)")
    for p in (p_pairs, p_tr):
        p.add_argument("--out", required=True, help="output JSONL file (never overwritten without "
                                                    "--force)")
        p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
        p.add_argument("--seed", type=checks.seed_int,
                       default=SEED, help=f"seed of every random draw (default {SEED})")
        p.add_argument("--task", choices=["arith"], default="arith",
                       help="synthetic task: arith, 'What is a op b?' answer checking (the only "
                            "one)")
        p.add_argument("--n", type=checks.positive_int,
                       help=f"number of synthetic pairs, exactly (default {N})")
        p.add_argument("--split", choices=["train", "val", "test"],
                       help="split of the synthetic questions; splits never share a question "
                            f"(default {SPLIT})")
        p.add_argument("--digits", default=DIGITS, help="digits of each operand of + and -, LO-HI "
                                                        f"(default {DIGITS})")
        p.add_argument("--mul-digits", default=MUL_DIGITS,
                       help=f"digits of a and b in a * b, AxB, each LO-HI (default {MUL_DIGITS})")
        p.add_argument("--ops", default=OPS, help="operations to draw from, a subset of +-* "
                                                  f"(default {OPS})")
        p.add_argument("--wrong-kinds", default=KINDS, help="how the wrong response is wrong, a "
                                                            f"subset of {KINDS}; 'power' (x10, "
                                                            "/10) is the easiest to spot (default "
                                                            f"{KINDS})")
    p_pairs.add_argument("--exclude", help="a JSONL file of pairs whose questions the new pairs "
                                          "must not reuse (an earlier experiment's test pairs)")
    p_tr.add_argument("--data", help="preference pairs JSONL (RewardBench, JudgeBench or j1_min "
                                     "format) instead of synthetic pairs; the programmatic teacher "
                                     "needs arith questions")
    p_tr.add_argument("--skip-bad", action="store_true", help="skip malformed --data lines "
                                                              "(counted) instead of stopping at "
                                                              "the first")
    p_tr.add_argument("--teacher", help="model teacher: a Hugging Face model folder or j1_min .pt "
                                        "checkpoint (with a tokenizer); without it the "
                                        "programmatic teacher writes the traces")
    p_tr.add_argument("--template", help="the judge's format for prompts, verdict parsing and "
                                         "rejection sampling: a shipped template "
                                         f"({', '.join(templates.shipped())}) or a template JSON "
                                         "file (default: the one --teacher recorded, else "
                                         f"{templates.DEFAULT}); the programmatic teacher writes "
                                         f"{templates.DEFAULT}'s format only")
    p_tr.add_argument("--k", type=checks.positive_int,
                      default=K, help=f"traces drawn per item (default {K})")
    p_tr.add_argument("--max-keep", type=checks.positive_int,
                      default=MAX_KEEP,
                      help=f"correct traces kept per item (default {MAX_KEEP})")
    p_tr.add_argument("--no-reflection", action="store_true", help="plain traces for the ablation: "
                                                                   "the programmatic teacher never "
                                                                   "writes 'Wait'; a model "
                                                                   "teacher's traces that contain "
                                                                   "'Wait' are rejected")
    p_tr.add_argument("--slip-rate", type=checks.unit_interval,
                      help=f"programmatic teacher: chance of a slip (a wrong carry or a "
                      f"column sum off by one) in the first pass (v1, default {SLIP_RATE}) or in "
                      f"each check (v2, default {SLIP_RATE_V2})")
    p_tr.add_argument("--teacher-version", choices=sorted(VERSIONS), default="v1",
                      help="programmatic teacher: v1 (reflections never slip, the last check "
                           "decides) or v2 (every check slips, a tally of votes decides) (default "
                           "v1)")
    p_tr.add_argument("--land", type=checks.unit_interval,
                      help="programmatic teacher v2: chance that a slipped check lands on the "
                           f"wrong response's number (default {LAND})")
    p_tr.add_argument("--reflections", help="programmatic teacher: weights of 0, 1, 2, ... "
                                            f"reflections per trace (default {REFLECTIONS})")
    p_tr.add_argument("--temperature", type=checks.nonneg_float,
                      default=TEMPERATURE,
                      help="model teacher sampling temperature, 0 = greedy (default "
                           f"{TEMPERATURE})")
    p_tr.add_argument("--top-p", type=checks.probability,
                      default=TOP_P, help=f"model teacher nucleus sampling (default {TOP_P})")
    p_tr.add_argument("--top-k", type=checks.nonneg_int,
                      default=TOP_K, help=f"model teacher top-k, 0 = off (default {TOP_K})")
    p_tr.add_argument("--max-new-tokens", type=checks.positive_int,
                      default=MAX_NEW_TOKENS,
                      help=f"model teacher: tokens per trace at most (default {MAX_NEW_TOKENS})")
    p_tr.add_argument("--budget", type=checks.nonneg_int,
                      default=BUDGET, help=f"model teacher: s1 budget forcing, times the end "
                      f"of thinking is replaced by 'Wait' (default {BUDGET})")
    p_tr.add_argument("--max-think-tokens", type=checks.nonneg_int,
                      help="model teacher: thinking cap; then `</think>` and the "
                      "answer prefix are forced (default: none)")
    p_tr.add_argument("--batch-size", type=checks.positive_int,
                      default=BATCH, help=f"model teacher: items per generation batch, "
                      f"k rows each (default {BATCH})")
    p_tr.add_argument("--device", type=checks.device,
                      default="cpu", help="model teacher: cpu, cuda, ... (default cpu)")
    p_tr.add_argument("--dtype", help="model teacher: float32, bfloat16, float16 (default: float32 "
                                      "on CPU, the checkpoint's elsewhere)")
    return ap


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def check_args(args) -> None:
    """Refuse contradictory or out-of-range flags, and an existing --out, before any work is
    done."""
    checks.check_output(args.out, args.force, "--out", make_folder=True)
    if args.mode == "pairs":
        return
    # the judge's format; a model teacher's default is the one its checkpoint recorded (set in
    # model_completions)
    args.judge_template = templates.load(args.template or templates.DEFAULT)
    j1, t = templates.load(templates.DEFAULT), args.judge_template
    if not args.teacher and (t.think_end, t.verdicts) != (j1.think_end, j1.verdicts):
        raise ValueError(f"--template {args.template}: the programmatic teacher writes {j1.name}'s "
                         f"format ({j1.think_end}, [[A]]/[[B]]); use --teacher to sample another "
                         "format")
    if args.teacher and (args.slip_rate is not None or args.reflections is not None
                         or args.land is not None or args.teacher_version != "v1"):
        raise ValueError("--slip-rate, --reflections, --land and --teacher-version set the "
                         "programmatic teacher; leave them out with --teacher")
    if args.land is not None and args.teacher_version != "v2":
        raise ValueError("--land sets the programmatic teacher v2; add --teacher-version v2")
    model_only = [k for k, v in MODEL_DEFAULTS.items() if getattr(args, k) != v]
    if not args.teacher and model_only:
        raise ValueError(f"--{model_only[0].replace('_', '-')} sets the model teacher; it needs "
                         "--teacher")
    if args.no_reflection and args.reflections is not None:
        raise ValueError("--reflections and --no-reflection contradict each other; give one")
    v2 = args.teacher_version == "v2"
    if args.slip_rate is None:
        args.slip_rate = SLIP_RATE_V2 if v2 else SLIP_RATE
    args.land = LAND if args.land is None else args.land
    try:
        args.weights = (1.0,) if args.no_reflection else tuple(
            map(float, (args.reflections or REFLECTIONS).split(",")))
    except ValueError:
        raise ValueError(f"--reflections {args.reflections!r}: expected weights like "
                         "0.3,0.5,0.2") from None
    if min(args.weights) < 0 or sum(args.weights) <= 0:
        raise ValueError(f"--reflections {args.reflections!r}: weights must be >= 0 with a "
                         "positive sum")


def load_items(args) -> list[dict]:
    """The pairs to work on: --data, or synthetic ones from --task/--n/--split."""
    if getattr(args, "data", None):
        if args.n is not None or args.split is not None:
            raise ValueError("--n and --split make synthetic pairs; leave them out with --data")
        items = read_pairs(args.data, seed=args.seed, skip_bad=args.skip_bad)
        if items.skipped:
            print(f"{args.data}: {items.skipped_message()}")
        return list(items)
    diff = parse_difficulty(args.digits, args.mul_digits, args.ops, args.wrong_kinds)
    exclude = {it["question"] for it in read_pairs(args.exclude)} if getattr(
        args, "exclude", None) else frozenset()
    return make_pairs(args.n or N, args.split or SPLIT, args.seed, diff, exclude)


def program_completions(args, items):
    """(item, k completions) from the programmatic teacher; each item's draws are seeded by (seed,
    item id), v2's each by (seed, item id, draw)."""
    write = VERSIONS[args.teacher_version][0]
    extra = {"land": args.land} if args.teacher_version == "v2" else {}
    for it in items:
        rng = random.Random(f"teacher:{args.seed}:{it['id']}")
        # v2's reflections draw slips too, so each draw has its own stream: draw j's first pass is
        # then the same with and without --no-reflection (v1 keeps its one stream per item)
        rngs = [random.Random(f"teacher:{args.seed}:{it['id']}:{j}") if extra else rng
                for j in range(args.k)]
        try:
            yield it, [write(it["question"], it["response_a"], it["response_b"], r,
                             args.slip_rate, args.weights, **extra)["completion"]
                       for r in rngs]
        except ValueError as e:
            raise ValueError(f"item {it['id']}: {e}; the programmatic teacher only judges the "
                             f"arith task (use --teacher for other data)") from None


def model_completions(args, items, lengths: list[int]):
    """(item, k completions) sampled from --teacher with the j1_min sampler; token counts go to
    `lengths`."""
    from j1_min.checkpoint import load_judge
    from j1_min.judge_format import completion_text, encode_prompt, forcing_kwargs
    from j1_min.sampling import generate
    model, tok, template = load_judge(args.teacher, args.template, dtype=args.dtype,
                                      device=args.device)
    args.judge_template = template
    kw = forcing_kwargs(tok, args.budget, args.max_think_tokens, template=template)
    for s in range(0, len(items), args.batch_size):
        chunk = items[s:s + args.batch_size]
        prompts = [encode_prompt(tok, it["question"], it["response_a"], it["response_b"], template)
                   for it in chunk for _ in range(args.k)]
        gens = generate(model, prompts, args.max_new_tokens, temperature=args.temperature,
                        top_k=args.top_k, top_p=args.top_p, seed=args.seed, **kw)
        for i, it in enumerate(chunk):
            mine = gens[i * args.k:(i + 1) * args.k]
            lengths += [len(g.tokens) for g in mine]
            yield it, [completion_text(tok, g) for g in mine]


def main(argv=None):
    args = parse_args(argv)
    check_args(args)
    items = load_items(args)
    if args.mode == "pairs":
        write_jsonl(args.out, items, force=args.force)
        n_a = sum(r["label"] == "A" for r in items)
        print(f"wrote {len(items)} pairs ({n_a} labeled A, {len(items) - n_a} B) to {args.out}")
        return
    lengths: list[int] = []
    stream = model_completions(args, items,
                               lengths) if args.teacher else program_completions(args, items)
    source = f"model:{args.teacher}" if args.teacher else "teacher:arith"
    kept, drawn, correct, without, wrong_reason = [], 0, 0, 0, 0
    for it, completions in tqdm(stream, total=len(items), desc="traces", dynamic_ncols=True):
        drawn += len(completions)
        if args.no_reflection:  # the ablation's traces never reflect
            completions = [c for c in completions if count_reflections(c, args.judge_template) == 0]
        if not args.teacher:  # right for the right reason only (the version's grounded)
            is_grounded = VERSIONS[args.teacher_version][1]
            sound = [is_grounded(it["question"], it["response_a"], it["response_b"], c)
                     for c in completions]
            wrong_reason += sum(not g and parse_verdict(c, args.judge_template) == it["label"]
                                for c, g in zip(completions, sound))
            completions = [c for c, g in zip(completions, sound) if g]
        traces, n_ok = select_traces(it, completions, args.max_keep, source, args.judge_template)
        correct += n_ok
        kept += traces
        without += not traces  # counted per item, not per id: ids need not be unique
    if not kept:
        raise ValueError(f"no trace was correct ({drawn} drawn): nothing to write to {args.out}")
    write_jsonl(args.out, kept, force=args.force)
    summary = {"items": len(items), "drawn": drawn, "acceptance_rate": correct / drawn,
               "kept": len(kept), "items_without_trace": without,
               "right_for_wrong_reason": wrong_reason,
               "reflection_rate": statistics.mean(t["has_reflection"] for t in kept),
               "mean_reflections": statistics.mean(t["num_reflections"] for t in kept),
               "changed_by_reflection": statistics.mean(reflection_changed(t["completion"])
                                                        for t in kept),
               "mean_chars": statistics.mean(len(t["completion"]) for t in kept)}
    if lengths:
        summary["mean_tokens_drawn"] = statistics.mean(lengths)
    print(f"acceptance rate {summary['acceptance_rate']:.3f} ({correct}/{drawn} drawn traces "
          f"correct); kept {len(kept)} traces for "
          f"{len(items) - summary['items_without_trace']}/{len(items)} items; reflection rate "
          f"{summary['reflection_rate']:.3f} ({summary['changed_by_reflection']:.3f} changed the "
          f"verdict); mean length {summary['mean_chars']:.0f} chars")
    print(json.dumps(summary))
    print(f"wrote {args.out}")


def run_cli(argv=None):
    """main() with user mistakes reported as `error: ...` and exit status 2."""
    cli(lambda: main(argv))


if __name__ == "__main__":
    run_cli()
