"""The RL stopping rule of the second experiment (docs/experiment.md, "RL: run until validation at
budget 3 stops improving"), and the validation it rests on.

* Validation (validate): greedy verdicts on the first --eval-items held-out pairs at budget 0 and at
  --eval-budget. Under torchrun each rank judges its share (items rank, rank + world, ...) and the
  right-verdict counts are summed over ranks (collective.all_sum), so every rank sees the same
  counts and takes the same decision.
* Patience (Patience): the score of a validation point is c, the number of pairs right at
  --eval-budget. Step 0, the starting policy, is validated and logged as the reference, but it is
  not a candidate: the candidates are the trained points (steps --eval-every, 2 * --eval-every,
  ...), so the kept checkpoint is always a policy that RL has changed (a run whose start could win
  would return its SFT checkpoint, and a comparison of that row with its start would be zero by
  construction). The best so far is c* (the first trained point's c). A point improves when
  c >= c* + m, m = --min-improvement pairs (>= 1, so a tie keeps the earlier point); the run stops
  once --patience consecutive points have not improved (early stopping with patience, Prechelt
  1998, "Early stopping - but when?"), or once --max-hours of the run's training time (summed over
  resumes) have passed.
* The best point's weights (--keep-best) are written to `<out>.best.pt`, a model checkpoint whose
  run config records best_step and its validation; `--out` keeps the last step's resumable state.

The tracker's state is a plain dict saved in the run checkpoint's train state, so the counter, the
best so far and the elapsed time survive a kill and --resume.
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import collective, shard
from .evaluate import eval_accuracy


def best_path(out) -> Path:
    """Where --keep-best writes the best validated weights: `runs/rl.pt` -> `runs/rl.best.pt`."""
    return Path(out).with_suffix(".best.pt")


def validate(policy, tok, template, val: list[dict], items: int, budgets, max_new_tokens: int,
             max_think_tokens: int | None, d) -> dict:
    """{budget: (right, no_verdict, n)} over the first `items` pairs of `val`, greedy, with the
    rollouts' length limits, summed over all ranks (each judges its share). A sharded policy is
    gathered on every rank first (a collective)."""
    mine = val[:items][d.rank::d.world]
    counts = [0.0] * (3 * len(budgets))
    policy.eval()
    with torch.no_grad():
        model = shard.full_model(policy)
        if mine:
            accs = eval_accuracy(model, tok, mine, max_new_tokens, budgets=tuple(budgets),
                                 max_think_tokens=max_think_tokens, template=template)
            counts = []
            for b in budgets:
                n = accs[b]["n"]
                counts += [round(accs[b]["accuracy"] * n), round(accs[b]["no_verdict"] * n), n]
    policy.train()
    total = collective.all_sum(torch.tensor(counts, dtype=torch.float64), d.device).tolist()
    return {b: tuple(int(x) for x in total[3 * k:3 * k + 3]) for k, b in enumerate(budgets)}


class Patience:
    """Early stopping on the validation count at --eval-budget (module docstring)."""

    def __init__(self, patience: int | None, min_improvement: int = 1,
                 max_hours: float | None = None, state: dict | None = None):
        if min_improvement < 1:
            raise ValueError(f"--min-improvement {min_improvement}: must be at least 1 pair (a tie "
                             "keeps the earlier point)")
        self.patience, self.min_improvement, self.max_hours = patience, min_improvement, max_hours
        self.state = dict(state) if state else {"best": None, "best_step": None, "since_best": 0,
                                                "points": 0, "seconds": 0.0}

    def update(self, step: int, right: int) -> bool:
        """Record a validation point (step, pairs right at the eval budget); True when it is the
        new best."""
        s = self.state
        s["points"] += 1
        if s["best"] is None or right >= s["best"] + self.min_improvement:
            s.update(best=right, best_step=step, since_best=0)
            return True
        s["since_best"] += 1
        return False

    def add_time(self, seconds: float) -> None:
        """Training time spent, counted against --max-hours."""
        self.state["seconds"] += seconds

    def reason(self) -> str | None:
        """Why the run stops now ("patience", "max_hours"), or None to go on."""
        if self.patience is not None and self.state["since_best"] >= self.patience:
            return "patience"
        if self.max_hours is not None and self.state["seconds"] >= 3600 * self.max_hours:
            return "max_hours"
        return None
