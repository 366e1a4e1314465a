"""Judge preference pairs with a J1 judge, and scale it at test time with s1 budget forcing.

    python judge.py --budget 3
        # the embedded tiny judge on the shipped test set
    python judge.py --budgets 0,1,2,3 --plot scaling.png
    python judge.py --ckpt ./J1-7B --device cuda --dtype bfloat16 --data judgebench.jsonl \\
        --swap --budget 1
    python judge.py --question "What is 12 + 30?" --a "The answer is 42." --b "The answer is 52."
    python judge.py --budget 1 --show-tokens 3
        # pair 3's trace token by token: watch the forcing act
    python judge.py --ckpt ./Qwen2.5-7B-Instruct --template mt_bench_pair \\
        --data rewardbench.jsonl --ties half

Budget forcing (Muennighoff et al. 2025, s1): when the judge tries to close its thinking, `</think>`
is removed and "Wait" appended, --budget times; --max-think-tokens forces the end of thinking.
--samples K instead draws K traces and takes a majority vote (parallel scaling), to compare with
budget forcing at equal tokens.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from j1_min import checks, templates
from j1_min.checkpoint import load_judge
from j1_min.data import PartialJsonl, Records, fit, read_pairs
from j1_min import show_tokens
from j1_min.evaluate import constrained, judge_pairs, score
from j1_min.files import atomic_write
from j1_min.judge_format import completion_text, encode_prompt, forcing_kwargs, judge_verdict
from j1_min.runs import cli
from j1_min.sampling import generate

EMBEDDED = Path(__file__).resolve().parent / "j1_min" / "embedded"
CKPT = EMBEDDED / "j1-tiny"  # the tiny judge this project's pipeline trained (scripts/reproduce.sh)
DATA = EMBEDDED / "test.jsonl"       # the synthetic task's shipped test split
MAX_NEW_TOKENS = 1024                # RewardBench's generative evaluation caps at 2048
BATCH = 64                           # rows the sampler decodes at once
EXAMPLES = 2                         # example traces printed


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=str(CKPT), help="judge: a Hugging Face model directory or a "
                                                      "j1_min .pt (default: the embedded tiny "
                                                      "judge)")
    ap.add_argument("--template", help=f"the judge's prompt and verdicts: a shipped template "
                    f"({', '.join(templates.shipped())}) or a template JSON file (default: the one "
                    f"the checkpoint was trained with, else {templates.DEFAULT})")
    ap.add_argument("--data", help="pairs JSONL (RewardBench, JudgeBench or j1_min; '-' reads "
                                   "standard input) (default: the embedded test set, unless "
                                   "--question is given)")
    ap.add_argument("--question", help="judge one pair: the question (with --a and --b)")
    ap.add_argument("--a", help="one pair: response A")
    ap.add_argument("--b", help="one pair: response B")
    ap.add_argument("--label", choices=["A", "B"], help="one pair: the right verdict, if known")
    ap.add_argument("--limit", type=checks.positive_int, help="judge only the first N pairs")
    ap.add_argument("--budget", type=checks.nonneg_int, default=0,
                    help="s1 budget forcing: 'Wait's forced in place of </think>")
    ap.add_argument("--budgets", help="several budgets in one run, e.g. 0,1,2,3: prints the "
                                      "scaling table")
    ap.add_argument("--max-think-tokens", type=checks.nonneg_int,
                    help="force </think> and the answer after this " "many thinking tokens")
    ap.add_argument("--wait-text", default="Wait", help="the text forced in place of </think> "
                                                        "(default Wait)")
    ap.add_argument("--temperature", type=checks.nonneg_float, default=0.0,
                    help="sampling temperature (0: greedy)")
    ap.add_argument("--samples", type=checks.positive_int, default=1,
                    help="K traces per pair and order, majority " "vote (needs --temperature > 0)")
    ap.add_argument("--swap", action="store_true", help="judge both orders; a pair counts as right "
                                                        "only when both orders are (JudgeBench's "
                                                        "position-consistent accuracy)")
    ap.add_argument("--ties", choices=["wrong", "half"], default="wrong",
                    help="score of a missing verdict and of " "a tie verdict: 0 (default) or 0.5 "
                                                              "(RewardBench's convention)")
    ap.add_argument("--verdict", choices=["free", "logprob"], default="free",
                    help="free: the verdict the judge writes after its thinking (default); "
                         "logprob: "
                         "also the constrained verdict, the template's option (A, B, or its tie) "
                         "with the highest log-probability after the judge's thinking and the "
                         "answer prefix, for a judge too weak to write one; both tables are "
                         "printed")
    ap.add_argument("--seed", type=checks.seed_int, default=0, help="sampling seed")
    ap.add_argument("--order-seed", type=checks.seed_int, default=0,
                    help="which RewardBench response is shown as " "A: a draw balanced over the "
                                                                   "file, seeded by this and "
                                                                   "recorded in each judgment "
                                                                   "(ab_seed); --seed does not "
                                                                   "change it, so two sampling "
                                                                   "seeds judge the same pairs "
                                                                   "(default 0)")
    ap.add_argument("--max-new-tokens", type=checks.positive_int,
                    help=f"tokens per trace at most (default " f"{MAX_NEW_TOKENS}, or what the "
                                                               "model's context leaves after the "
                                                               "longest prompt, if less)")
    ap.add_argument("--batch-size", type=checks.positive_int, default=BATCH,
                    help="rows the sampler decodes at " "once (its KV cache): one per pair, order "
                                                        "(--swap) and sample, so a call judges "
                                                        "batch-size / (orders x samples) pairs, at "
                                                        "least 1. A --budgets sweep adds no rows: "
                                                        "its budgets decode as one row that forks "
                                                        "where a smaller budget ends its thinking "
                                                        "(the forks answer briefly)")
    ap.add_argument("--out", help="write one JSON line per judgment (item, id, order, budget, "
                                  "verdict, correct, trace, thinking tokens, forced waits). "
                                  "Judgments go to <out>.partial as each batch finishes; <out> is "
                                  "written at the end. A killed or interrupted run keeps "
                                  "<out>.partial: the same command with --resume continues it")
    ap.add_argument("--resume", action="store_true", help="continue the interrupted run whose "
                                                          "judgments are in <out>.partial (the "
                                                          "settings must be the same)")
    ap.add_argument("--force", action="store_true", help="overwrite --out or --plot if it exists, "
                                                         "and start over when <out>.partial exists")
    ap.add_argument("--plot", help="PNG of accuracy against mean thinking tokens per budget (needs "
                                   "matplotlib)")
    ap.add_argument("--examples", type=checks.nonneg_int, default=EXAMPLES,
                    help="example traces to print")
    ap.add_argument("--show-tokens", type=checks.nonneg_int, nargs="?", const=0, metavar="N",
                    help="judge only pair N (0-based; default 0) at --budget and print its trace "
                         "token by token: forced tokens marked, each removed </think> shown, and "
                         "the verdict's log-probability under each option")
    ap.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                    help="--show-tokens marks in colour (auto: on a terminal, unless NO_COLOR is "
                         "set) or brackets")
    ap.add_argument("--device", type=checks.device, default="cpu", help="cpu, cuda, ...")
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                    help="float32 (CPU default), bfloat16, float16")
    ap.add_argument("--skip-bad", action="store_true", help="skip malformed data lines, and pairs "
                                                            "too long for the model's context "
                                                            "(counted)")
    args = ap.parse_args(argv)
    if args.template:
        templates.load(args.template)  # a bad name or file is refused before any work
    try:
        args.budget_list = [int(b)
                            for b in args.budgets.split(",")] if args.budgets else [args.budget]
    except ValueError:
        raise ValueError(f"--budgets {args.budgets!r}: expected integers like 0,1,2,3") from None
    if min(args.budget_list) < 0:
        raise ValueError(f"--budgets {args.budgets!r}: budgets must be >= 0")
    if max(args.budget_list) > 0 and not args.wait_text.strip():
        raise ValueError("--wait-text is empty: budget forcing needs a text to put in place of "
                         "</think>")
    if args.samples > 1 and args.temperature <= 0:
        raise ValueError("--samples K > 1 needs --temperature > 0 (greedy samples are equal)")
    if args.show_tokens is not None and (args.budgets or args.samples > 1 or args.swap):
        raise ValueError("--show-tokens shows one trace: use --budget, not --budgets, --samples or "
                         "--swap")
    one = [args.question, args.a, args.b]
    if any(x is not None for x in one) and (None in one or args.data):
        raise ValueError("one pair needs all of --question, --a and --b, and no --data")
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (checked before any work, so nothing is lost)
        except ImportError:
            raise ValueError("--plot needs matplotlib: pip install 'j1_min[plot]' (or pip install "
                             "matplotlib)") \
                from None
        checks.check_output(args.plot, args.force, "--plot")
    if args.resume and not args.out:
        raise ValueError("--resume continues an interrupted --out; give the same --out")
    if args.out:
        checks.check_output(args.out, args.force, "--out", make_folder=True)
        partial = Path(args.out + ".partial")
        if partial.exists() and not (args.resume or args.force):
            raise ValueError(f"{partial} holds the judgments of an interrupted run: pass --resume "
                             f"to continue it, or --force to start over")
        if args.resume and not partial.exists():
            raise ValueError(f"--resume: there is no {partial} to continue (no interrupted run of "
                             f"--out {args.out})")
    return args


def load_items(args) -> Records:
    """The pairs to judge: one from --question/--a/--b, or --data (default: the embedded test set),
    --limit'ed."""
    if args.question is not None:
        return Records([{"id": "pair", "question": args.question, "response_a": args.a,
                         "response_b": args.b, "label": args.label}], ["--question/--a/--b"])
    path = args.data or DATA
    if not Path(path).exists() and path == DATA:
        raise ValueError(f"the embedded test set {DATA} is missing; run scripts/reproduce.sh or "
                         "pass --data")
    items = read_pairs(path, seed=args.order_seed, skip_bad=args.skip_bad)
    return items.subset(range(min(len(items), args.limit or len(items))))


def fit_context(model, tok, items: Records, args, template) -> Records:
    """The pairs whose prompt (both orders with --swap) leaves room in the model's context for
    --max-new-tokens, checked before judging: a longer one is an error naming its file, line and id,
    or is skipped with --skip-bad. Without --max-new-tokens it becomes MAX_NEW_TOKENS, or what the
    context leaves after the longest prompt."""
    ctx = model.config.max_position_embeddings
    lengths = [max(len(encode_prompt(tok, it["question"], a, b, template)) for a, b in
                   ([(it["response_a"], it["response_b"])] + [(it["response_b"], it["response_a"])]
                    * args.swap))
               for it in items]
    if args.max_new_tokens is None:
        items = fit(items, lengths, ctx - 1, args.skip_bad, f"the model's context is {ctx} tokens")
        args.max_new_tokens = min(MAX_NEW_TOKENS, ctx - max(n for n in lengths if n < ctx))
    else:
        items = fit(items, lengths, ctx - args.max_new_tokens, args.skip_bad,
                    f"the model's context is {ctx} tokens and --max-new-tokens "
                    f"{args.max_new_tokens}")
    if items.skipped:
        print(items.skipped_message())
    return items


def judge_all(model, tok, items: Records, args, template) -> list[dict]:
    """judge_pairs() over the items, a batch of pairs at a time: --batch-size rows, one per pair,
    order and sample (budgets fork from one row). With --out each batch's judgments reach
    <out>.partial as soon as they exist (data.PartialJsonl), so a killed run loses one batch at
    most, and --resume goes on from the last whole batch there: batches are cut at the same items,
    so the result is what one uninterrupted run gives."""
    rows_per_pair = (2 if args.swap else 1) * args.samples  # decoded rows; budgets fork, add none
    pairs = max(1, args.batch_size // rows_per_pair)  # pairs per sampler call
    kw = dict(budgets=args.budget_list, samples=args.samples, swap=args.swap,
              temperature=args.temperature, seed=args.seed, max_new_tokens=args.max_new_tokens,
              max_think_tokens=args.max_think_tokens, wait_text=args.wait_text,
              logprob_verdict=args.verdict == "logprob")
    partial, done = None, []
    if args.out:
        settings = {**kw, "ckpt": args.ckpt, "data": args.data,
                    "question": [args.question, args.a, args.b], "limit": args.limit,
                    "order_seed": args.order_seed, "batch_rows": args.batch_size,
                    "dtype": args.dtype, "skip_bad": args.skip_bad, "template": template.to_dict()}
        partial = PartialJsonl(args.out, settings)
        done = partial.resume() if args.resume else []
        whole = Counter(j["item"] for j in done)
        first = 0
        while whole.get(first) == rows_per_pair * len(args.budget_list):  # its judgments
            first += 1
        first -= first % pairs  # a batch torn by the kill is judged again, whole
        done = [j for j in done if j["item"] < first]
        partial.start(done)
        if args.resume:
            print(f"resuming {partial.path}: {first} of {len(items)} pairs already judged")
    bar = tqdm(total=len(items), initial=len({j["item"] for j in done}), desc="judging",
               dynamic_ncols=True, disable=len(items) == 1)
    for s in range(len({j["item"] for j in done}), len(items), pairs):
        rows = judge_pairs(model, tok, items[s:s + pairs], batch_size=pairs, template=template,
                           **kw)
        for j in rows:
            j["item"] += s
            # the shown order is part of the data: record what decided it
            if "ab_seed" in items[j["item"]]:
                j["ab_seed"] = items[j["item"]]["ab_seed"]
        if partial:
            partial.append(rows)
        done += rows
        bar.update(len(items[s:s + pairs]))
    bar.close()
    return done


def plot(table: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(table.values())
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar([r["think_tokens"] for r in rows], [r["accuracy"] for r in rows],
                yerr=[r["ci95"] for r in rows], marker="o", capsize=3)
    for r in rows:
        ax.annotate(f"budget {r['budget']}", (r["think_tokens"], r["accuracy"]),
                    textcoords="offset points", xytext=(5, -12), fontsize=8)
    ax.set_xlabel("mean thinking tokens")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    print(f"wrote {path}")


def show_one(model, tok, items: list[dict], args, template) -> None:
    """judge.py --show-tokens: one pair, one trace, every token visible (j1_min/show_tokens.py)."""
    it = items[args.show_tokens]
    prompt = encode_prompt(tok, it["question"], it["response_a"], it["response_b"], template)
    gen = generate(model, [prompt], args.max_new_tokens, temperature=args.temperature,
                   seed=args.seed, **forcing_kwargs(tok, args.budget, args.max_think_tokens,
                                                    args.wait_text, template))[0]
    verdict = judge_verdict(completion_text(tok, gen), template)
    label = it.get("label")
    right = "" if label is None else " (right)" if verdict == label else f" (wrong; label {label})"
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                       and not os.environ.get("NO_COLOR"))
    print(f"pair {args.show_tokens} ({it.get('id')}), budget {args.budget}, "
          f"{'greedy' if args.temperature == 0 else f'temperature {args.temperature}, seed {args.seed}'}: "  # noqa: E501
          f"verdict {verdict}{right}; {gen.think_tokens} thinking tokens, {gen.num_waits} forced "
          f"'{args.wait_text}'{'' if gen.num_waits == 1 else 's'}"
          f"{', thinking cut at --max-think-tokens' if gen.forced_end else ''}")
    print(f"\n--- prompt ({len(prompt)} tokens)\n{tok.decode(prompt)}")
    print(f"--- completion ({len(gen.tokens)} "
          f"tokens)\n{show_tokens.LEGEND_COLOR if color else show_tokens.LEGEND_PLAIN}")
    print(show_tokens.render(tok, gen, color))
    lp = show_tokens.verdict_logprobs(model, tok, prompt, gen)
    if lp is None:
        print("--- no verdict letter after </think>")
    else:
        pa = 1 / (1 + math.exp(min(lp["B"] - lp["A"], 700.0)))  # no overflow
        print(f"--- verdict token {lp['at']} (the model's distribution, temperature 1): log p(A) = "
              f"{lp['A']:.3f}, log p(B) = {lp['B']:.3f}; p(A) / (p(A) + p(B)) = {pa:.3f}")


def print_table(table: dict, args) -> None:
    """The scaling table: one line per budget."""
    print(f"{'budget':>6} {'accuracy':>9} {'95% CI':>8} {'think tok':>9} {'waits':>6} "
          f"{'no verdict':>10} {'acc|A':>6} {'acc|B':>6}")
    for r in table.values():
        fmt = lambda x: "-" if x is None else f"{x:.3f}"
        print(f"{r['budget']:>6} {r['accuracy']:>9.3f} {'±' + format(r['ci95'], '.3f'):>8} "
              f"{r['think_tokens']:>9.1f} {r['waits']:>6.2f} {r['no_verdict']:>10.1%} "
              f"{fmt(r['accuracy_label_A']):>6} {fmt(r['accuracy_label_B']):>6}")
        if r["tie"]:
            print(f"{'':>6} tie verdicts: {r['tie']:.1%} (scored "
                  f"{0.5 if args.ties == 'half' else 0})")
    if len(table) > 1:
        b = sorted(table)
        print(f"scaling gain acc({b[-1]}) - acc({b[0]}): "
              f"{table[b[-1]]['accuracy'] - table[b[0]]['accuracy']:+.3f}")


def main(argv=None):
    args = parse_args(argv)
    if not Path(args.ckpt).exists() and args.ckpt == str(CKPT):
        raise ValueError(f"the embedded judge {CKPT} is missing; run scripts/reproduce.sh or pass "
                         "--ckpt")
    items = load_items(args)
    if args.show_tokens is not None and args.show_tokens >= len(items):
        raise ValueError(f"--show-tokens {args.show_tokens}: there are {len(items)} pairs (0 .. "
                         f"{len(items) - 1})")
    model, tok, template = load_judge(args.ckpt, args.template, dtype=args.dtype,
                                      device=args.device)
    # refused early
    forcing_kwargs(tok, max(args.budget_list), args.max_think_tokens, args.wait_text, template)
    items = fit_context(model, tok, items, args, template)
    if args.show_tokens is not None:
        return show_one(model, tok, items, args, template)
    labelled = all(it.get("label") for it in items)
    try:
        judgments = judge_all(model, tok, items, args, template)
    except KeyboardInterrupt:
        kept = (f"; the finished batches are in {args.out}.partial: add --resume to continue"
                if args.out else "")
        print(f"interrupted{kept}", file=sys.stderr)
        sys.exit(130)
    print(f"judge {args.ckpt} ({model.num_params() / 1e6:.1f}M parameters) on {len(items)} pairs; "
          f"{'greedy' if args.temperature == 0 else f'temperature {args.temperature}'}, samples "
          f"{args.samples}, orders {'AB+BA' if args.swap else 'AB'}, no verdict scores "
          f"{0.5 if args.ties == 'half' else 0}"
          + (f"; template {template.name}" if template.name != templates.DEFAULT else ""))
    if labelled:
        table = score(judgments, args.ties)
        print_table(table, args)
        if args.verdict == "logprob":
            print("constrained verdict (--verdict logprob: the option with the highest "
                  "log-probability after the thinking and the answer prefix):")
            print_table(score(constrained(judgments), args.ties), args)
    shown = [j for j in judgments if j["budget"] == args.budget_list[-1]
             and j["sample"] == 0][:args.examples]
    for j in shown:
        right = "" if j["label"] is None else (" (right)" if j["correct"]
                                               else f" (wrong; label {j['label']})")
        print(f"\n--- {j['id']} order {j['order']} budget {j['budget']}: verdict "
              f"{j['verdict']}{right}, {j['think_tokens']} thinking tokens, {j['num_waits']} "
              f"forced waits\n{j['completion']}")
    if args.out:
        PartialJsonl(args.out, {}).finish(judgments, force=args.force)
        print(f"wrote {len(judgments)} judgments to {args.out}")
    if args.plot and labelled:
        plot(table, args.plot)


def run_cli(argv=None):
    """main() with user mistakes reported as `error: ...` and exit status 2."""
    cli(lambda: main(argv))


if __name__ == "__main__":
    run_cli()
