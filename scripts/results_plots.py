"""scripts/results.py's plots: --plot (accuracy against mean thinking tokens, sequential and
parallel; the first experiment's a panel per row and a line per seed, the second's a 2 x 2 grid of
comparisons, each row's mean over seeds with its seed-level band) and --rl-plot (reward,
flat-group share and validation accuracy per RL step, a panel per RL row and seed folder). Written
atomically, never over an existing file without --force."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from j1_min import checks  # noqa: E402
from j1_min.evaluate import score  # noqa: E402
from j1_min.files import atomic_write  # noqa: E402
from j1_min.runs import logged, read_log  # noqa: E402
from j1_min.scaling import item_scores, matched_k, mean_think_tokens, t_interval  # noqa: E402


def save_fig(fig, path: str, force: bool) -> None:
    checks.check_output(path, force, "")
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    print(f"wrote {path}")


def plot_scaling(runs: dict, budgets: list[int], path: str, force: bool, names: dict) -> None:
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
                ks = [1] + [k for k in matched_k(r["seq"], budgets[1:]).values()
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
    rows = [row for row in rl_rows if any(logged(d / f"{row}.pt") for d in dirs)]
    if not rows:
        raise ValueError(f"--rl-plot: no <row>.log.jsonl(.gz) of an RL row "
                         f"({', '.join(rl_rows)}) in the folders")
    # one panel per RL row (down) and seed folder (across); a panel without a log stays blank
    fig, axes = plt.subplots(len(rows), len(dirs), figsize=(3.6 * len(dirs), 3.2 * len(rows)),
                             squeeze=False)
    for row, panels in zip(rows, axes):
        for d, ax in zip(dirs, panels):
            if not logged(d / f"{row}.pt"):
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
            kept = next((r["best_step"] for r in log if "kept" in r), None)
            if kept is not None:  # the stopping rule's choice: the row's checkpoint
                ax.axvline(kept, color="0.3", ls="--", lw=0.9, label=f"kept: step {kept}")
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{names[row]} [{d.name}]", fontsize=8)
            ax.set_xlabel("RL step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    fig.tight_layout()
    save_fig(fig, path, force)


# the second experiment's plot: one panel per comparison, the later row in colour, the row it is
# compared with in grey, so that each panel's picture is the comparison
V2_PANELS = (("j1_rpp", "j1_sft", "primary: J1-SFT + REINFORCE++ against J1-SFT"),
             ("j1_rpp_budget", "j1_sft", "budget-forced rollouts against J1-SFT"),
             ("plain_rpp", "plain_sft", "plain SFT + REINFORCE++ against plain SFT"),
             ("j1_sft", "plain_sft", "J1-SFT against the ordinary judge"))


def v2_curves(runs: dict, row: str, budgets=(0, 1, 2, 3)) -> dict:
    """A row's curves over its seeds: {"sequential": [(x, y, lo, hi) per budget], "parallel":
    [(x, y, lo, hi) per point], "seeds": n}. x is the mean over seeds of the mean thinking tokens,
    y the mean over seeds of the accuracy, [lo, hi] the t-interval over seeds (scaling.t_interval,
    clipped to [0, 1]; y itself with one seed). Parallel points: the sampled K = 1, then the
    majority of K_b samples for b = 1..3, K_b each seed's odd matched K
    (scaling.matched_k(odd=True)), while each seed's parallel pass has its K_b samples (a seed
    whose K_3 is 1 has a pass of one sample)."""
    seeds = [r for (rw, _), r in runs.items() if rw == row and set(budgets) <= {
        j["budget"] for j in r["seq"]}]

    def point(xs: list[float], ys: list[float]) -> tuple:
        m, lo, hi = t_interval(ys) if len(ys) > 1 else (ys[0], ys[0], ys[0])
        # an accuracy's interval, clipped to where accuracy can be
        return sum(xs) / len(xs), m, max(lo, 0.0), min(hi, 1.0)

    acc = lambda s: sum(s.values()) / len(s)  # noqa: E731
    seq = [point([mean_think_tokens(r["seq"], b) for r in seeds],
                 [acc(item_scores(r["seq"], b)) for r in seeds]) for b in budgets] if seeds else []
    par = []
    with_par = [r for r in seeds if r["par"]]
    if seeds and len(with_par) == len(seeds):
        n_par = [1 + max(j["sample"] for j in r["par"]) for r in seeds]  # samples per seed
        ks = [[1] + list(matched_k(r["seq"], budgets[1:], odd=True).values()) for r in seeds]
        for i in range(len(ks[0])):
            if any(k[i] > n for k, n in zip(ks, n_par)) or (
                    i and all(k[i] == k[i - 1] for k in ks)):
                continue
            par.append(point([mean_think_tokens(r["par"], 0, k[i]) for r, k in zip(seeds, ks)],
                             [acc(item_scores(r["par"], 0, k[i])) for r, k in zip(seeds, ks)]))
    return {"sequential": seq, "parallel": par, "seeds": len(seeds)}


def plot_v2(runs: dict, path: str, force: bool, names: dict) -> None:
    """The second experiment's scaling plot: a 2 x 2 grid, a panel per comparison (V2_PANELS);
    in each, accuracy on the test pairs against mean thinking tokens, sequential (greedy, budgets
    0-3, solid) and parallel (majority of K samples, dashed), each row's mean over seeds with its
    seed-level band (the t-interval over seeds), the compared row in grey."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    present = {row for row, _ in runs}
    panels = [p for p in V2_PANELS if p[0] in present or p[1] in present]
    if not panels:
        raise ValueError("--plot: no row of the second experiment's comparisons was judged")
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), squeeze=False)
    for ax, (row, base, title) in zip(axes.flat, panels):
        for r, color in ((base, "0.55"), (row, "C0" if row != "j1_sft" else "C1")):
            c = v2_curves(runs, r)
            for kind, style in (("sequential", "o-"), ("parallel", "s--")):
                pts = c[kind]
                if not pts:
                    continue
                x, y, lo, hi = zip(*pts)
                # a legend line per row (the colour); the line style is the figure's title
                label = (f"{names[r]} ({c['seeds']} seed{'s' * (c['seeds'] > 1)})"
                         if kind == "sequential" else None)
                ax.plot(x, y, style, color=color, lw=1.6, label=label)
                if c["seeds"] > 1:
                    ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("mean thinking tokens")
        ax.set_ylabel("accuracy (test pairs)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")  # the least covered corner: curves rise or fall
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    fig.suptitle("solid, circles: sequential (greedy, budgets 0-3); dashed, squares: parallel "
                 "(majority of K sampled traces,\nK = 1, then K matched to budgets 1-3); bands: "
                 "95% t-interval over seeds (clipped to [0, 1])",
                 fontsize=9)
    fig.tight_layout()
    save_fig(fig, path, force)
