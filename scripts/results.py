"""The miniature reproduction's table and plot, from the judgments judge.py wrote for each row.

    python scripts/results.py runs/reproduce --plot runs/reproduce/scaling.png
    python scripts/results.py runs/reproduce runs/seed1 --plot scaling.png   # several seeds: one row per seed

Reads DIR/judge_{plain_sft,j1_sft,j1_rl,plain_rl}.jsonl and prints, per row, accuracy at each budget with its
95% interval, mean thinking tokens, and the scaling gain acc(3) - acc(0), as a Markdown table; then, per row and
budget, how many verdicts forcing fixed and how many it broke.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from j1_min.evaluate import item_key, score

ROWS = {"plain_sft": "ordinary judge (SFT, plain traces)", "j1_sft": "J1-SFT (reflection traces)",
        "j1_rl": "J1-SFT + GRPO", "plain_rl": "plain SFT + GRPO"}


def changes(judgments: list[dict]) -> dict:
    """budget -> (fixed, broken): judgments (first sample, each order) wrong at the lowest budget and right at this
    one, and the reverse. The net of the two is the accuracy change; the pair shows how much forcing moves."""
    right = {(item_key(j), j["order"], j["budget"]): j["correct"] for j in judgments if j["sample"] == 0}
    budgets = sorted({k[2] for k in right})
    out = {}
    for b in budgets[1:]:
        pairs = [(right[(i, o, budgets[0])], right[(i, o, b)]) for i, o, bb in right if bb == b]
        out[b] = (sum(not r0 and r for r0, r in pairs), sum(r0 and not r for r0, r in pairs))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", help="run folders of scripts/reproduce.sh")
    ap.add_argument("--plot", help="PNG: accuracy against mean thinking tokens, one line per row")
    args = ap.parse_args()
    lines = []
    for d in map(Path, args.dirs):
        for key, name in ROWS.items():
            f = d / f"judge_{key}.jsonl"
            if f.exists():
                judgments = [json.loads(l) for l in f.read_text().splitlines()]
                lines.append((f"{name} [{d.name}]", score(judgments), changes(judgments)))
    budgets = sorted({b for _, t, _ in lines for b in t})
    print("| row | " + " | ".join(f"acc @ budget {b}" for b in budgets) + " | think tokens @ " +
          "/".join(map(str, budgets)) + f" | gain acc({budgets[-1]}) - acc({budgets[0]}) |")
    print("|---" * (len(budgets) + 3) + "|")
    for name, t, _ in lines:
        accs = " | ".join(f"{t[b]['accuracy']:.3f} ± {t[b]['ci95']:.3f}" for b in budgets)
        think = "/".join(f"{t[b]['think_tokens']:.0f}" for b in budgets)
        gain = t[budgets[-1]]["accuracy"] - t[budgets[0]]["accuracy"]
        print(f"| {name} | {accs} | {think} | {gain:+.3f} |")
    print(f"\n(n = {lines[0][1][budgets[0]]['n']} test pairs per cell; interval: normal approximation)")
    print(f"\nverdicts that forcing changed, against budget {budgets[0]} (fixed: wrong there, right here; broken: "
          "the reverse)\n")
    print("| row | " + " | ".join(f"budget {b}: fixed / broken" for b in budgets[1:]) + " |")
    print("|---" * len(budgets) + "|")
    for name, _, c in lines:
        print(f"| {name} | " + " | ".join(f"{c[b][0]} / {c[b][1]}" for b in budgets[1:]) + " |")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, t, _ in lines:
            rows = [t[b] for b in budgets]
            ax.errorbar([r["think_tokens"] for r in rows], [r["accuracy"] for r in rows],
                        yerr=[r["ci95"] for r in rows], marker="o", capsize=3, label=name)
        ax.set_xlabel("mean thinking tokens (budget 0, 1, 2, 3 left to right)")
        ax.set_ylabel("accuracy on the test pairs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
