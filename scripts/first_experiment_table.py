"""The first experiment's mean table and plot (docs/first_experiment.md): each row's accuracy at
budgets 0-3, the mean over seeds, read from the per-seed tables committed in
docs/logs/experiment/seedN/results.md (which `scripts/results.py runs/seedN` printed). The per-pair
judgments of that experiment were not committed, so this reads the tables; nothing here is
recomputed from judgments.

    python scripts/first_experiment_table.py
        # the Markdown table docs/first_experiment.md shows
    python scripts/first_experiment_table.py --plot docs/first_experiment.png --force
        # and its plot: mean over seeds, a band from the lowest to the highest seed
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "docs" / "logs" / "experiment"
# "0.830 ± 0.023 (155)": accuracy, its interval, thinking tokens
CELL = re.compile(r"(-?[\d.]+) ± [\d.]+ \(\d+\)")


def read_seeds(folder: Path = LOGS) -> dict[str, list[list[float]]]:
    """row name -> one list of accuracies at budgets 0-3 per seed folder, in folder order."""
    rows: dict[str, list[list[float]]] = {}
    for results in sorted(folder.glob("seed*/results.md")):
        for line in results.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 7 and cells[1].startswith("seed") and CELL.fullmatch(cells[2]):
                rows.setdefault(cells[0], []).append(
                    [float(CELL.fullmatch(c).group(1)) for c in cells[2:6]])
    if not rows:
        raise ValueError(f"no per-seed table found under {folder}/seed*/results.md")
    return rows


def table(rows: dict[str, list[list[float]]]) -> str:
    """The Markdown table: the mean over seeds at each budget, each seed's gain acc(3) - acc(0)."""
    out = ["| row | budget 0 | 1 | 2 | 3 | gain acc(3) − acc(0), per seed |",
           "|---|---|---|---|---|---|"]
    for name, seeds in rows.items():
        means = [sum(s[b] for s in seeds) / len(seeds) for b in range(4)]
        gains = ", ".join(f"{s[3] - s[0]:+.3f}".replace("-", "−") for s in seeds)
        out.append(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {gains} |")
    return "\n".join(out)


def plot(rows: dict[str, list[list[float]]], path: Path) -> None:
    """Accuracy against budget, one line per row (the mean over seeds) with a band from the lowest
    to the highest seed; 900 x 420 pixels, readable at 100%."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=100)
    for name, seeds in rows.items():
        mean = [sum(s[b] for s in seeds) / len(seeds) for b in range(4)]
        line, = ax.plot(range(4), mean, marker="o", label=name)
        ax.fill_between(range(4), [min(s[b] for s in seeds) for b in range(4)],
                        [max(s[b] for s in seeds) for b in range(4)], color=line.get_color(),
                        alpha=0.12)
    ax.set_xticks(range(4))
    ax.set_xlabel("budget (forced 'Wait's)")
    ax.set_ylabel("accuracy, 1,000 test pairs")
    ax.set_title(f"first experiment: mean of {len(next(iter(rows.values())))} seeds "
                 "(band: lowest to highest seed)")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plot", type=Path, help="also write the plot to this PNG file")
    ap.add_argument("--force", action="store_true", help="overwrite --plot if it exists")
    args = ap.parse_args()
    try:
        if args.plot and args.plot.exists() and not args.force:
            raise ValueError(f"--plot {args.plot} exists; add --force to overwrite it")
        rows = read_seeds()
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(table(rows))
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
