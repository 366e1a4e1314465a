"""train_grpo.py's stopping rule (j1_min/stopping.py; docs/experiment.md): --patience stops after N
validation points without a new best at --eval-budget, --keep-best writes the best point's weights,
both survive a kill and --resume, and under torchrun every rank decides alike on counts summed over
the ranks' shares of the validation pairs. End to end through main() on the planted teacher of
test_train_grpo.py."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_grpo
from j1_min.checkpoint import load_model
from j1_min.data import read_pairs, write_jsonl
from j1_min.stopping import Patience, best_path
from test_train_grpo import args, log_of, setup  # noqa: F401 (setup: that module's fixture)

ROOT = Path(__file__).resolve().parents[1]
# every step validated on 8 pairs at budgets 0 and 1; 1000 pairs of improvement never come, so
# only step 1, the first trained point, is ever the best (step 0 is the reference, not a candidate)
NEVER_BETTER = ["--eval-every", "1", "--eval-items", "8", "--eval-budget", "1",
                "--min-improvement", "1000"]


def val_args(setup, out, *extra):
    """The test's arguments with validation pairs: the RL pairs, every other one swapped (label B),
    so a judge that always says one verdict is right on half."""
    val = setup / "val_mixed.jsonl"
    if not val.exists():
        pairs = read_pairs(setup / "rl.jsonl")
        for r in pairs[1::2]:
            r["response_a"], r["response_b"], r["label"] = r["response_b"], r["response_a"], "B"
        write_jsonl(val, pairs)
    return args(setup, out, "--val", val, *extra)


def weights(path) -> dict:
    return load_model(path)[0].state_dict()


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_patience_counts_points_without_an_improvement_of_min_pairs_and_a_tie_keeps_the_earlier():
    p = Patience(2, min_improvement=2)
    assert p.update(0, 100) and p.reason() is None  # the first point is the best so far
    assert not p.update(25, 101)  # +1 pair: not enough
    assert p.update(50, 102) and p.state["best_step"] == 50 and p.state["since_best"] == 0
    assert not p.update(75, 103) and p.reason() is None
    assert not p.update(100, 90) and p.reason() == "patience"
    tie = Patience(None, min_improvement=1)
    tie.update(0, 7)
    assert not tie.update(1, 7) and tie.state["best_step"] == 0  # a tie keeps the earlier point
    assert tie.reason() is None  # no --patience: never stops on validation


def test_max_hours_stops_on_time_summed_over_resumes():
    p = Patience(None, max_hours=1.0)
    p.add_time(3000)
    assert p.reason() is None
    resumed = Patience(None, max_hours=1.0, state=p.state)  # as the run state carries it
    resumed.add_time(700)
    assert resumed.reason() == "max_hours"


def test_patience_stops_the_run_after_n_points_without_a_new_best(setup, tmp_path):
    out = tmp_path / "p.pt"
    train_grpo.main(val_args(setup, out, "--steps", "10", "--patience", "2", *NEVER_BETTER))
    log = log_of(out)
    assert [r["step"] for r in log if "reward" in r] == [1, 2, 3]  # best at 1, then 2 without
    stop = [r for r in log if "stopped" in r]
    assert stop == [stop[0]] and stop[0]["stopped"] == "patience" and stop[0]["best_step"] == 1
    assert torch.load(out, weights_only=True)["train_state"]["step"] == 3  # saved where it stopped
    ref = [r for r in log if r.get("step") == 0]
    assert ref == [ref[0]] and ref[0]["reference"] and "best_step" not in ref[0]


def test_keep_best_writes_the_best_steps_weights_and_out_stays_the_last_state(setup, tmp_path):
    out = tmp_path / "kb.pt"
    train_grpo.main(val_args(setup, out, "--steps", "3", "--keep-best", *NEVER_BETTER))
    best = torch.load(best_path(out), weights_only=True)
    assert best["run_config"]["best_step"] == 1 and "train_state" not in best
    train_grpo.main(val_args(setup, tmp_path / "one.pt", "--steps", "1", *NEVER_BETTER))
    assert same(weights(best_path(out)), weights(tmp_path / "one.pt"))  # step 1's weights
    assert not same(weights(best_path(out)), weights(setup / "teacher"))  # never the start's
    assert not same(weights(out), weights(best_path(out)))  # --out: step 3, resumable
    assert torch.load(out, weights_only=True)["train_state"]["step"] == 3
    assert [r["best_step"] for r in log_of(out) if "kept" in r] == [1]


def test_keep_best_holds_the_weights_of_the_step_it_names(setup, tmp_path):
    # validation moves here (lr 3e-3 teaches the rewarded verdict): whichever step is best, the
    # kept weights are that step's, as a run stopped there leaves them
    out = tmp_path / "kb.pt"
    common = ["--eval-every", "1", "--eval-items", "16", "--eval-budget", "1"]
    train_grpo.main(val_args(setup, out, "--steps", "4", "--keep-best", *common))
    b = torch.load(best_path(out), weights_only=True)["run_config"]["best_step"]
    vals = {r["step"]: r["val_right_budget1"] for r in log_of(out) if "val_right_budget1" in r}
    trained = [vals[s] for s in (1, 2, 3, 4)]  # step 0 is the reference, not a candidate
    assert vals[b] == max(trained) and trained.index(max(trained)) + 1 == b  # the first best
    train_grpo.main(val_args(setup, tmp_path / "at_b.pt", "--steps", b, *common))
    assert same(weights(best_path(out)), weights(tmp_path / "at_b.pt"))


def test_a_max_hours_stop_between_validation_points_validates_the_last_policy(setup, tmp_path):
    # stopped on time at step 1 with validation due every 5 steps: step 1 is validated, so the run
    # keeps a trained point (without it --keep-best would have no candidate)
    out = tmp_path / "mh.pt"
    train_grpo.main(val_args(setup, out, "--steps", "10", "--eval-every", "5", "--eval-items", "8",
                             "--eval-budget", "1", "--max-hours", "1e-9", "--keep-best"))
    log = log_of(out)
    assert [r["step"] for r in log if "val_right_budget1" in r] == [0, 1]
    assert [r["stopped"] for r in log if "stopped" in r] == ["max_hours"]
    assert torch.load(best_path(out), weights_only=True)["run_config"]["best_step"] == 1


def test_kill_and_resume_keeps_the_patience_counter_and_the_best(setup, tmp_path):
    # a lost counter would restart at the resumed step's point and stop two points later
    part = tmp_path / "part.pt"
    common = ["--steps", "10", "--patience", "2", "--keep-best", *NEVER_BETTER]
    train_grpo.main(val_args(setup, part, "--stop-after", "1", *common))
    train_grpo.main(val_args(setup, part, "--resume", part, *common))
    train_grpo.main(val_args(setup, tmp_path / "full.pt", *common))
    assert [r["step"] for r in log_of(part) if "stopped" in r] == [3]
    assert [r["step"] for r in log_of(part) if "kept" in r] == [3]  # at the end, not at the kill
    assert torch.load(part, weights_only=True)["train_state"]["step"] == 3
    assert torch.load(best_path(part), weights_only=True)["run_config"]["best_step"] == 1
    assert same(weights(part), weights(tmp_path / "full.pt"))


@pytest.mark.parametrize("extra, message", [
    (["--patience", "2"], "--patience needs --val"),
    (["--keep-best"], "--keep-best needs --val"),
    (["--patience", "0"], "--patience"),
])
def test_stopping_flags_without_what_they_need_are_refused(setup, tmp_path, extra, message,
                                                           capsys):
    with pytest.raises(SystemExit) as e:
        train_grpo.run_cli(args(setup, tmp_path / "x.pt", *extra))
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_an_existing_best_file_is_not_overwritten_without_force(setup, tmp_path, capsys):
    out = tmp_path / "x.pt"
    best_path(out).write_text("keep me")
    with pytest.raises(SystemExit):
        train_grpo.run_cli(val_args(setup, out, "--keep-best"))
    assert "--keep-best's" in capsys.readouterr().err and best_path(out).read_text() == "keep me"


def test_under_torchrun_ranks_sum_their_shares_and_stop_together(setup, tmp_path):
    """Each rank judges half of the validation pairs; the summed counts equal one process's, and
    both ranks stop at the same step (a rank that went on would hang in its next collective)."""
    single = tmp_path / "one.pt"
    common = ["--steps", "10", "--patience", "2", "--keep-best", *NEVER_BETTER]
    train_grpo.main(val_args(setup, single, *common))
    out = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train_grpo.py"), *val_args(setup, out, *common)]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    log = log_of(out)
    v0 = [r for r in log if r.get("step") == 0 and "val_right_budget1" in r][0]
    s0 = [r for r in log_of(single) if r.get("step") == 0 and "val_right_budget1" in r][0]
    assert v0["val_n"] == 8 and 0 < s0["val_right_budget1"] < 8
    assert (v0["val_right_budget0"], v0["val_right_budget1"]) == (s0["val_right_budget0"],
                                                                  s0["val_right_budget1"])
    assert [r["step"] for r in log if "stopped" in r] == [3]
    assert torch.load(best_path(out), weights_only=True)["run_config"]["best_step"] == 1
