"""The four scripts under careless use: a wrong flag or output costs one line naming it, exit status
2, before any work (the checkpoint and data paths below do not even exist), and no file is
written."""
from __future__ import annotations

import pytest
import torch

import data_gen
import judge
import train_grpo
import train_sft

NO_CUDA = [] if torch.cuda.is_available() else [["--device", "cuda"]]

# (script, the flags that make a run, the cases: wrong flags whose first item is the flag the
# message must name)
SCRIPTS = {
    "judge": (judge.run_cli, ["--ckpt", "{d}/none", "--data", "{d}/none.jsonl"], [
        ["--batch-size", "-1"], ["--batch-size", "0"], ["--limit", "0"], ["--limit", "-1"],
        ["--max-new-tokens", "0"], ["--temperature", "nan"], ["--temperature", "-1"],
        ["--samples", "0"], ["--budget", "-1"], ["--budgets", "0,-1"], ["--max-think-tokens", "-1"],
        ["--wait-text", "", "--budget", "1"], ["--seed", "-1"], ["--order-seed", "x"],
        ["--show-tokens", "-1"], ["--examples", "-2"], ["--resume"],
        ["--resume", "--out", "{d}/j.jsonl"], ["--template", "nosuch"], *NO_CUDA]),
    "train_sft": (train_sft.run_cli,
                  ["--data", "{d}/none.jsonl", "--init", "tiny", "--out", "{d}/o.pt"], [
        ["--steps", "0"], ["--batch", "0"], ["--batch", "-2"], ["--micro", "0"],
        ["--save-every", "0"], ["--eval-items", "0", "--val", "{d}/none.jsonl"], ["--lr", "nan"],
        ["--lr", "0"], ["--lr", "-1"], ["--warmup", "-1"], ["--clip", "-1"],
        ["--weight-decay", "inf"], ["--max-new-tokens", "0"], ["--eval-every", "-1"],
        ["--seed", "-5"], ["--template", "nosuch"], *NO_CUDA]),
    "train_grpo": (train_grpo.run_cli,
                   ["--ckpt", "{d}/none", "--data", "{d}/none.jsonl", "--out", "{d}/o.pt"], [
        ["--steps", "0"], ["--prompts", "0"], ["--ppo-epochs", "0"], ["--clip-eps", "-1"],
        ["--clip-eps-high", "0"], ["--beta", "-1"], ["--top-p", "0"], ["--top-p", "1.5"],
        ["--temperature", "nan"], ["--micro", "0"], ["--save-every", "0"], ["--eval-items", "0"],
        ["--max-new-tokens", "0"], ["--top-k", "-1"], ["--lr", "inf"], ["--format-penalty", "-1"],
        ["--budget", "-1"], ["--group", "1"], ["--template", "nosuch"], *NO_CUDA]),
    "data_gen": (data_gen.run_cli, ["traces", "--out", "{d}/o.jsonl"], [
        ["--k", "0"], ["--max-keep", "0"], ["--n", "-3"], ["--slip-rate", "1.5"], ["--top-p", "2"],
        ["--temperature", "nan"], ["--max-new-tokens", "0"], ["--batch-size", "0"],
        ["--template", "nosuch"], *NO_CUDA]),
}
CASES = [(name, case) for name, (_, _, cases) in SCRIPTS.items() for case in cases]


def fail(capsys, tmp_path, name: str, extra: list[str]) -> str:
    """Run a script with its base flags plus `extra`; assert exit status 2, no traceback, nothing
    written."""
    run, base, _ = SCRIPTS[name]
    argv = [a.replace("{d}", str(tmp_path)) for a in base + extra]
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as e:
        run(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "error" in err and "Traceback" not in err, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
    return err


@pytest.mark.parametrize("name,case", CASES, ids=[f"{n}:{' '.join(c)}" for n, c in CASES])
def test_a_bad_flag_value_is_refused_naming_the_flag(capsys, tmp_path, name, case):
    assert case[0] in fail(capsys, tmp_path, name, case)


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_an_output_that_is_a_folder_is_refused_before_any_work_even_with_force(
        capsys, tmp_path, name):
    (tmp_path / "dir").mkdir()
    err = fail(capsys, tmp_path, name, ["--out", str(tmp_path / "dir"), "--force"])
    assert "is a folder" in err


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_an_output_under_a_regular_file_is_refused_before_any_work(capsys, tmp_path, name):
    (tmp_path / "file").write_text("x")
    err = fail(capsys, tmp_path, name, ["--out", str(tmp_path / "file" / "o.out")])
    assert "is a file, not a folder" in err and (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("name", ["train_sft", "train_grpo"])
def test_a_trainers_log_is_output_too_and_is_kept_without_force(capsys, tmp_path, name):
    log = tmp_path / "o.log.jsonl"
    log.write_text('{"step": 1}\n')
    err = fail(capsys, tmp_path, name, [])
    assert "o.log.jsonl exists" in err and log.read_text() == '{"step": 1}\n'


def test_judge_plot_is_checked_before_any_work(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "p.png").write_text("keep")
    assert "--plot" in fail(capsys, tmp_path, "judge", ["--plot", str(tmp_path / "p.png")])


def test_the_trl_bench_without_trl_says_how_to_make_its_side_environment():
    """bench/trl_grpo.py runs only where TRL is installed, which j1_min never depends on: elsewhere
    it exits with the commands that make that side environment, before any work."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    if importlib.util.find_spec("trl") is not None:
        pytest.skip("TRL is installed here: this is the side environment")
    script = Path(__file__).resolve().parents[1] / "bench" / "trl_grpo.py"
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "side environment" in r.stderr \
        and "pip install torch==2.13.0 trl" in r.stderr
