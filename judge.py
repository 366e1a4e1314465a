"""Judge preference pairs with a J1 judge, and scale it at test time with s1 budget forcing.

    python judge.py --budget 3                         # the embedded tiny judge on the shipped test set
    python judge.py --budgets 0,1,2,3 --plot scaling.png
    python judge.py --ckpt ./J1-7B --device cuda --dtype bfloat16 --data judgebench.jsonl --swap --budget 1
    python judge.py --question "What is 12 + 30?" --a "The answer is 42." --b "The answer is 52."
    python judge.py --budget 1 --show-tokens 3         # pair 3's trace token by token: watch the forcing act

Budget forcing (Muennighoff et al. 2025, s1): when the judge tries to close its thinking, `</think>` is removed and
"Wait" appended, --budget times; --max-think-tokens forces the end of thinking. --samples K instead draws K traces
and takes a majority vote (parallel scaling), to compare with budget forcing at equal tokens.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from j1_min.checkpoint import load_model
from j1_min.data import read_pairs, write_jsonl
from j1_min import show_tokens
from j1_min.evaluate import judge, score
from j1_min.judging import completion_text, encode_prompt, forcing_kwargs, parse_verdict
from j1_min.runs import cli
from j1_min.sampling import generate
from j1_min.tokenizer import Tokenizer

EMBEDDED = Path(__file__).resolve().parent / "j1_min" / "embedded"
CKPT = EMBEDDED / "j1-tiny"          # the tiny judge this project's pipeline trained (scripts/reproduce.sh)
DATA = EMBEDDED / "test.jsonl"       # the synthetic task's shipped test split
MAX_NEW_TOKENS = 1024                # RewardBench's generative evaluation caps at 2048 (DESIGN pitfall 8)
BATCH = 64                           # items per sampler call
EXAMPLES = 2                         # example traces printed


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=str(CKPT), help="judge: a Hugging Face model directory or a j1_min .pt "
                    "(default: the embedded tiny judge)")
    ap.add_argument("--data", help="pairs JSONL (RewardBench, JudgeBench or j1_min; '-' reads standard input) "
                    "(default: the embedded test set, unless --question is given)")
    ap.add_argument("--question", help="judge one pair: the question (with --a and --b)")
    ap.add_argument("--a", help="one pair: response A")
    ap.add_argument("--b", help="one pair: response B")
    ap.add_argument("--label", choices=["A", "B"], help="one pair: the right verdict, if known")
    ap.add_argument("--limit", type=int, help="judge only the first N pairs")
    ap.add_argument("--budget", type=int, default=0, help="s1 budget forcing: 'Wait's forced in place of </think>")
    ap.add_argument("--budgets", help="several budgets in one run, e.g. 0,1,2,3: prints the scaling table")
    ap.add_argument("--max-think-tokens", type=int, help="force </think> and the answer after this many thinking "
                    "tokens")
    ap.add_argument("--wait-text", default="Wait", help="the text forced in place of </think> (default Wait)")
    ap.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0: greedy)")
    ap.add_argument("--samples", type=int, default=1, help="K traces per pair and order, majority vote "
                    "(needs --temperature > 0)")
    ap.add_argument("--swap", action="store_true", help="judge both orders; a pair counts as right only when both "
                    "orders are (JudgeBench's position-consistent accuracy)")
    ap.add_argument("--ties", choices=["wrong", "half"], default="wrong", help="score of a missing verdict: 0 "
                    "(default) or 0.5 (RewardBench's convention)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--max-new-tokens", type=int, help=f"tokens per trace at most (default {MAX_NEW_TOKENS}, or what "
                    "the model's context leaves after the longest prompt, if less)")
    ap.add_argument("--batch-size", type=int, default=BATCH, help="pairs per sampler call")
    ap.add_argument("--out", help="write one JSON line per judgment (id, order, budget, verdict, correct, trace, "
                    "thinking tokens, forced waits)")
    ap.add_argument("--force", action="store_true", help="overwrite --out or --plot if it exists")
    ap.add_argument("--plot", help="PNG of accuracy against mean thinking tokens per budget (needs matplotlib)")
    ap.add_argument("--examples", type=int, default=EXAMPLES, help="example traces to print")
    ap.add_argument("--show-tokens", type=int, nargs="?", const=0, metavar="N",
                    help="judge only pair N (0-based; default 0) at --budget and print its trace token by token: "
                    "forced tokens marked, each removed </think> shown, and the verdict's log-probability under "
                    "each option")
    ap.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                    help="--show-tokens marks in colour (auto: on a terminal, unless NO_COLOR is set) or brackets")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    ap.add_argument("--dtype", help="float32 (CPU default), bfloat16, float16")
    ap.add_argument("--skip-bad", action="store_true", help="skip malformed data lines (counted)")
    args = ap.parse_args(argv)
    try:
        args.budget_list = [int(b) for b in args.budgets.split(",")] if args.budgets else [args.budget]
    except ValueError:
        raise ValueError(f"--budgets {args.budgets!r}: expected integers like 0,1,2,3") from None
    if args.samples < 1 or (args.samples > 1 and args.temperature <= 0):
        raise ValueError("--samples K needs K >= 1, and K > 1 needs --temperature > 0 (greedy samples are equal)")
    if args.show_tokens is not None and (args.budgets or args.samples > 1 or args.swap):
        raise ValueError("--show-tokens shows one trace: use --budget, not --budgets, --samples or --swap")
    if min(args.budget_list) < 0:
        raise ValueError("budgets must be >= 0")
    one = [args.question, args.a, args.b]
    if any(x is not None for x in one) and (None in one or args.data):
        raise ValueError("one pair needs all of --question, --a and --b, and no --data")
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (checked before any work, so nothing is lost)
        except ImportError:
            raise ValueError("--plot needs matplotlib: pip install 'j1_min[plot]' (or pip install matplotlib)") \
                from None
    for name in ("out", "plot"):
        path = getattr(args, name)
        if path and Path(path).exists() and not args.force:
            raise ValueError(f"--{name} {path} exists; pass --force to overwrite it")
    return args


def load_items(args) -> list[dict]:
    if args.question is not None:
        return [{"id": "pair", "question": args.question, "response_a": args.a, "response_b": args.b,
                 "label": args.label}]
    if args.data == "-":
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "stdin.jsonl"
            path.write_text(sys.stdin.read())
            items = read_pairs(path, seed=args.seed, skip_bad=args.skip_bad)
    else:
        path = args.data or DATA
        if not Path(path).exists() and path == DATA:
            raise ValueError(f"the embedded test set {DATA} is missing; run scripts/reproduce.sh or pass --data")
        items = read_pairs(path, seed=args.seed, skip_bad=args.skip_bad)
    if items.skipped:
        print(f"skipped {len(items.skipped)} malformed lines (first: {items.skipped[0]})")
    return list(items)[:args.limit] if args.limit else list(items)


def plot(table: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(table.values())
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar([r["think_tokens"] for r in rows], [r["accuracy"] for r in rows], yerr=[r["ci95"] for r in rows],
                marker="o", capsize=3)
    for r in rows:
        ax.annotate(f"budget {r['budget']}", (r["think_tokens"], r["accuracy"]), textcoords="offset points",
                    xytext=(5, -12), fontsize=8)
    ax.set_xlabel("mean thinking tokens")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def show_one(model, tok, items: list[dict], args) -> None:
    """judge.py --show-tokens: one pair, one trace, every token visible (j1_min/show_tokens.py)."""
    if not 0 <= args.show_tokens < len(items):
        raise ValueError(f"--show-tokens {args.show_tokens}: there are {len(items)} pairs (0 .. {len(items) - 1})")
    it = items[args.show_tokens]
    prompt = encode_prompt(tok, it["question"], it["response_a"], it["response_b"])
    gen = generate(model, [prompt], args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                   **forcing_kwargs(tok, args.budget, args.max_think_tokens, args.wait_text))[0]
    verdict = parse_verdict(completion_text(tok, gen))
    label = it.get("label")
    right = "" if label is None else " (right)" if verdict == label else f" (wrong; label {label})"
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    print(f"pair {args.show_tokens} ({it.get('id')}), budget {args.budget}, "
          f"{'greedy' if args.temperature == 0 else f'temperature {args.temperature}, seed {args.seed}'}: "
          f"verdict {verdict}{right}; {gen.think_tokens} thinking tokens, {gen.num_waits} forced "
          f"'{args.wait_text}'{'' if gen.num_waits == 1 else 's'}"
          f"{', thinking cut at --max-think-tokens' if gen.forced_end else ''}")
    print(f"\n--- prompt ({len(prompt)} tokens)\n{tok.decode(prompt)}")
    print(f"--- completion ({len(gen.tokens)} tokens)\n{show_tokens.LEGEND_COLOR if color else show_tokens.LEGEND_PLAIN}")
    print(show_tokens.render(tok, gen, color))
    lp = show_tokens.verdict_logprobs(model, tok, prompt, gen)
    if lp is None:
        print("--- no verdict letter after </think>")
    else:
        pa = 1 / (1 + math.exp(min(lp["B"] - lp["A"], 700.0)))  # no overflow
        print(f"--- verdict token {lp['at']} (the model's distribution, temperature 1): log p(A) = {lp['A']:.3f}, "
              f"log p(B) = {lp['B']:.3f}; p(A) / (p(A) + p(B)) = {pa:.3f}")


def main(argv=None):
    args = parse_args(argv)
    if not Path(args.ckpt).exists() and args.ckpt == str(CKPT):
        raise ValueError(f"the embedded judge {CKPT} is missing; run scripts/reproduce.sh or pass --ckpt")
    model, tok_text, _ = load_model(args.ckpt, dtype=args.dtype, device=args.device)
    if tok_text is None:
        raise ValueError(f"--ckpt {args.ckpt}: no tokenizer.json in the checkpoint")
    tok = Tokenizer.from_json(tok_text)
    items = load_items(args)
    if args.max_new_tokens is None:  # as long as the context allows, up to MAX_NEW_TOKENS
        longest = max(len(encode_prompt(tok, it["question"], it["response_a"], it["response_b"])) for it in items)
        args.max_new_tokens = min(MAX_NEW_TOKENS, model.config.max_position_embeddings - longest)
        if args.max_new_tokens < 1:
            raise ValueError(f"a prompt has {longest} tokens: no room left in the model's context of "
                             f"{model.config.max_position_embeddings}")
    if args.show_tokens is not None:
        return show_one(model, tok, items, args)
    labelled = all(it.get("label") for it in items)
    judgments = judge(model, tok, items, budgets=args.budget_list, samples=args.samples, swap=args.swap,
                      temperature=args.temperature, seed=args.seed, max_new_tokens=args.max_new_tokens,
                      max_think_tokens=args.max_think_tokens, wait_text=args.wait_text,
                      batch_size=args.batch_size, progress=len(items) > 1)
    print(f"judge {args.ckpt} ({model.num_params() / 1e6:.1f}M parameters) on {len(items)} pairs; "
          f"{'greedy' if args.temperature == 0 else f'temperature {args.temperature}'}, samples {args.samples}, "
          f"orders {'AB+BA' if args.swap else 'AB'}, no verdict scores {0.5 if args.ties == 'half' else 0}")
    if labelled:
        table = score(judgments, args.ties)
        print(f"{'budget':>6} {'accuracy':>9} {'95% CI':>8} {'think tok':>9} {'waits':>6} {'no verdict':>10} "
              f"{'acc|A':>6} {'acc|B':>6}")
        for r in table.values():
            fmt = lambda x: "-" if x is None else f"{x:.3f}"
            print(f"{r['budget']:>6} {r['accuracy']:>9.3f} {'±' + format(r['ci95'], '.3f'):>8} "
                  f"{r['think_tokens']:>9.1f} {r['waits']:>6.2f} {r['no_verdict']:>10.1%} "
                  f"{fmt(r['accuracy_label_A']):>6} {fmt(r['accuracy_label_B']):>6}")
        if len(table) > 1:
            b = sorted(table)
            print(f"scaling gain acc({b[-1]}) - acc({b[0]}): {table[b[-1]]['accuracy'] - table[b[0]]['accuracy']:+.3f}")
    shown = [j for j in judgments if j["budget"] == args.budget_list[-1] and j["sample"] == 0][:args.examples]
    for j in shown:
        right = "" if j["label"] is None else (" (right)" if j["correct"] else f" (wrong; label {j['label']})")
        print(f"\n--- {j['id']} order {j['order']} budget {j['budget']}: verdict {j['verdict']}{right}, "
              f"{j['think_tokens']} thinking tokens, {j['num_waits']} forced waits\n{j['completion']}")
    if args.out:
        write_jsonl(args.out, judgments, force=args.force)
        print(f"wrote {len(judgments)} judgments to {args.out}")
    if args.plot and labelled:
        plot(table, args.plot)


def run_cli(argv=None):
    """main() with user mistakes reported as `error: ...` and exit status 2."""
    cli(lambda: main(argv))


if __name__ == "__main__":
    run_cli()
