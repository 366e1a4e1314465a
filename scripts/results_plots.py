"""scripts/results.py's plots: --plot (accuracy against mean thinking tokens, sequential and
parallel, one panel per row, a line per seed) and --rl-plot (reward, flat-group share and validation
accuracy per RL step, a panel per RL row and seed folder). Written atomically, never over an
existing file without --force."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from j1_min import checks  # noqa: E402
from j1_min.evaluate import score  # noqa: E402
from j1_min.files import atomic_write  # noqa: E402
from j1_min.runs import log_path, read_log  # noqa: E402
from j1_min.scaling import item_scores, matched_k, mean_think_tokens  # noqa: E402


def save_fig(fig, path: str, force: bool) -> None:
    checks.check_output(path, force, "")
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    print(f"wrote {path}")


def plot_scaling(runs: dict, budgets: list[int], path: str, force: bool, names: dict,
                 odd: bool = False) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [row for row in names if any(k[0] == row for k in runs)]
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.2), sharey=True,
                             squeeze=False)
    for ax, row in zip(axes[0], rows):
        for (rw, seed), r in runs.items():
            if rw != row:
                continue
            t = score(r["seq"])
            line = ax.plot([t[b]["think_tokens"] for b in budgets],
                           [t[b]["accuracy"] for b in budgets], "o-", label=f"{seed} sequential")[0]
            if r["par"]:
                n_par = 1 + max(j["sample"] for j in r["par"])
                ks = [1] + [k for k in matched_k(r["seq"], budgets[1:], odd=odd).values()
                            if k <= n_par]
                par = [item_scores(r["par"], 0, k) for k in ks]
                ax.plot([mean_think_tokens(r["par"], 0, k) for k in ks],
                        [sum(p.values()) / len(p) for p in par], "s--", color=line.get_color(),
                        label=f"{seed} parallel (K={','.join(map(str, ks))})")
        ax.set_title(names[row], fontsize=8)
        ax.set_xlabel("mean thinking tokens")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("accuracy on the test pairs")
    fig.tight_layout()
    save_fig(fig, path, force)


def plot_rl(dirs: list[Path], path: str, force: bool, names: dict, rl_rows) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [row for row in rl_rows if any(log_path(d / f"{row}.pt").exists() for d in dirs)]
    if not rows:
        raise ValueError(f"--rl-plot: no <row>.log.jsonl of an RL row ({', '.join(rl_rows)}) in "
                         "the folders")
    # one panel per RL row (down) and seed folder (across); a panel without a log stays blank
    fig, axes = plt.subplots(len(rows), len(dirs), figsize=(3.6 * len(dirs), 3.2 * len(rows)),
                             squeeze=False)
    for row, panels in zip(rows, axes):
        for d, ax in zip(dirs, panels):
            if not log_path(d / f"{row}.pt").exists():
                ax.set_axis_off()
                continue
            log = read_log(d / f"{row}.pt")
            prompts = next((r["config"]["prompts"] for r in log if "config" in r), None)
            steps = [r for r in log if "reward" in r]
            x = [r["step"] for r in steps]
            rew = [r["reward"] for r in steps]
            ax.plot(x, rew, color="C0", alpha=0.3, lw=0.8)
            ax.plot(x, [sum(rew[max(0, i - 9):i + 1]) / len(rew[max(0, i - 9):i + 1])
                        for i in range(len(rew))],
                    color="C0", label="reward (10-step mean)")
            flat = [r.get("flat_share", r["flat_groups"] / prompts if prompts else float("nan"))
                    for r in steps]
            ax.plot(x, flat, color="C3", alpha=0.6, lw=0.8, label="flat groups (share)")
            val_keys = sorted({k for r in log for k in r if k.startswith("val_acc_")})
            for c, key in enumerate(val_keys):
                pts = [(r["step"], r[key]) for r in log if key in r]
                ax.plot(*zip(*pts), "o:", color=f"C{c + 1}",
                        label=key.replace("val_acc_", "val acc "))
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{names[row]} [{d.name}]", fontsize=8)
            ax.set_xlabel("RL step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    fig.tight_layout()
    save_fig(fig, path, force)


