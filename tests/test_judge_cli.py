"""judge.py on any checkpoint: the table, --swap, --samples, --budgets, --out, one pair, and clear user errors."""
from __future__ import annotations

import json

import pytest

import judge
from conftest import judge_tokenizer, tiny_teacher
from j1_min.data import write_jsonl
from j1_min.tasks import make_pairs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("judgecli")
    pairs = make_pairs(10, "test", seed=0)
    write_jsonl(d / "test.jsonl", pairs)
    tok = judge_tokenizer(pairs)
    tiny_teacher(d / "biased", tok, strength=8.0, verdicts="A")  # always [[A]]
    tiny_teacher(d / "coin", tok, strength=8.0, verdicts="AB")  # a coin flip
    return d


def run(setup, capsys, *argv):
    judge.main([*map(str, argv)])
    return capsys.readouterr().out


def test_budgets_table_and_out_file(setup, capsys, tmp_path):
    out = run(setup, capsys, "--ckpt", setup / "biased", "--data", setup / "test.jsonl", "--budgets", "0,1,2",
              "--max-think-tokens", "6", "--max-new-tokens", "20", "--out", tmp_path / "j.jsonl")
    assert "scaling gain acc(2) - acc(0)" in out
    rows = [json.loads(l) for l in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and {r["budget"] for r in rows} == {0, 1, 2}
    assert all(r["num_waits"] <= r["budget"] for r in rows)
    # the planted judge closes its thinking at once; with a budget that becomes "Wait", rambling, the forced end
    # and `\n[[`, after which it says A; at budget 0 nothing follows its own </think> but noise
    assert all(r["verdict"] == "A" for r in rows if r["budget"] > 0)
    assert all(r["verdict"] is None for r in rows if r["budget"] == 0)
    assert {"id", "order", "verdict", "correct", "completion", "think_tokens", "num_waits"} <= set(rows[0])


def test_swap_scores_a_position_biased_judge_zero(setup, capsys, tmp_path):
    run(setup, capsys, "--ckpt", setup / "biased", "--data", setup / "test.jsonl", "--swap", "--max-think-tokens",
        "0", "--max-new-tokens", "8", "--out", tmp_path / "s.jsonl")
    rows = [json.loads(l) for l in (tmp_path / "s.jsonl").read_text().splitlines()]
    from j1_min.evaluate import score
    assert score(rows)[0]["accuracy"] == 0.0  # right in one order, wrong in the other, for every pair
    assert sum(r["correct"] for r in rows) == 10  # exactly half of the 20 single-order judgments


def test_samples_majority_vote_uses_k_samples(setup, capsys, tmp_path):
    run(setup, capsys, "--ckpt", setup / "coin", "--data", setup / "test.jsonl", "--samples", "5",
        "--temperature", "1.0", "--max-think-tokens", "0", "--max-new-tokens", "8", "--out", tmp_path / "m.jsonl")
    rows = [json.loads(l) for l in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 50 and {r["sample"] for r in rows} == set(range(5))
    assert 0 < sum(r["verdict"] == "A" for r in rows) < 50  # the coin flips both ways


def test_one_pair_from_flags_prints_its_verdict(setup, capsys):
    out = run(setup, capsys, "--ckpt", setup / "biased", "--question", "What is 2 + 2?", "--a", "The answer is 4.",
              "--b", "The answer is 5.", "--max-think-tokens", "0", "--max-new-tokens", "8")
    assert "verdict A" in out and "accuracy" not in out  # no label, so no score


@pytest.mark.parametrize("argv,message", [
    (["--question", "q", "--a", "x"], "--question, --a and --b"),
    (["--budgets", "0,x"], "--budgets"),
    (["--samples", "3"], "temperature"),
    (["--data", "missing.jsonl"], "no such file"),
])
def test_user_mistakes_are_one_line_errors(setup, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        judge.run_cli(["--ckpt", str(setup / "biased"), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_an_existing_out_file_is_not_overwritten(setup, capsys, tmp_path):
    out = tmp_path / "keep.jsonl"
    out.write_text("precious\n")
    with pytest.raises(SystemExit):
        judge.run_cli(["--ckpt", str(setup / "biased"), "--data", str(setup / "test.jsonl"), "--out", str(out)])
    assert out.read_text() == "precious\n" and "--force" in capsys.readouterr().err
