"""Specifications for data_gen.py: the CLI, rejection sampling with the programmatic teacher, and
the model teacher end to end on a tiny random transformers Qwen2."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import data_gen
from conftest import tiny_teacher
from test_tasks import wrong_reason
from j1_min.data import read_pairs
from j1_min.judge_format import build_prompt, parse_verdict
from j1_min.tokenizer import train_bpe

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv) -> dict:
    """Run data_gen.main and return the JSON summary line it prints (or {} for pairs)."""
    data_gen.main([str(a) for a in argv])
    lines = capsys.readouterr().out.splitlines()
    return next((json.loads(ln) for ln in lines if ln.startswith("{")), {})


def test_help_explains_every_flag(capsys):
    ap = data_gen.build_parser()
    subparsers = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == {"pairs", "traces"}
    for name, p in subparsers.choices.items():
        for a in p._actions:
            if a.dest != "help":
                assert a.help and len(a.help) > 10, (name, a.option_strings)
        with pytest.raises(SystemExit):
            p.parse_args(["--help"])
        shown = capsys.readouterr().out
        assert all(s in shown for a in p._actions for s in a.option_strings)


def test_pairs_writes_exactly_n_balanced_items(tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    run(capsys, "pairs", "--n", 9, "--split", "test", "--out", out)
    recs = read_pairs(out)
    assert len(recs) == 9 and sum(r["label"] == "A" for r in recs) in (4, 5)
    assert all(set(r) >= {"id", "question", "response_a", "response_b", "label"} for r in recs)


def test_an_existing_output_is_refused_with_exit_2_and_no_traceback(tmp_path):
    out = tmp_path / "p.jsonl"
    out.write_text("keep me\n")
    r = subprocess.run([sys.executable, str(ROOT / "data_gen.py"), "pairs", "--n", "3", "--out",
                        str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "--force" in r.stderr
    assert "Traceback" not in r.stderr and out.read_text() == "keep me\n"
    # refused before any work (a model teacher may run for hours)
    with pytest.raises(ValueError, match="exists"):
        data_gen.main(["traces", "--teacher", str(tmp_path / "no-such-model"), "--data", "x",
                       "--out", str(out)])


@pytest.mark.parametrize("argv, message", [
    (["traces", "--slip-rate", "2"], "--slip-rate"),
    (["traces", "--reflections", "a,b"], "--reflections"),
    (["traces", "--reflections", "0,0"], "--reflections"),
    (["traces", "--k", "0"], "--k"),
    (["traces", "--digits", "0-3"], "--digits"),
    (["pairs", "--n", "0"], "--n"),
    (["pairs", "--ops", "+/"], "--ops"),
    (["pairs", "--wrong-kinds", "carry,sign"], "--wrong-kinds"),
    (["traces", "--teacher", "m", "--slip-rate", "0.1"], "--slip-rate"),
    (["traces", "--data", "d.jsonl", "--n", "5"], "--n"),
    (["traces", "--budget", "2"], "--budget .*--teacher"),
    (["traces", "--temperature", "0.5"], "--temperature"),
    (["traces", "--no-reflection", "--reflections", "1,1"], "contradict"),
    (["traces", "--land", "0.5"], "--land .*--teacher-version v2"),
    (["traces", "--teacher-version", "v3"], "--teacher-version"),
    (["traces", "--teacher", "m", "--teacher-version", "v2"], "--teacher-version"),
])
def test_user_mistakes_are_one_line_errors_naming_the_flag(tmp_path, argv, message, capsys):
    # a flag's own range is argparse's error, a combination is a ValueError
    with pytest.raises(SystemExit) as e:
        data_gen.run_cli(argv + ["--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and re.search(message, err) and "Traceback" not in err


def test_programmatic_traces_by_rejection_sampling(tmp_path, capsys):
    out = tmp_path / "t.jsonl"
    s = run(capsys, "traces", "--n", 300, "--split", "val", "--k", 3, "--max-keep", 2,
            "--slip-rate", 0.3, "--out", out)
    recs = read_pairs(out, need_completion=True)
    assert s["drawn"] == 900 and s["kept"] == len(recs) and 300 <= len(recs) <= 600
    for r in recs:
        assert parse_verdict(r["completion"]) == r["label"] == r["verdict"]
        assert r["has_reflection"] == ("\nWait, " in r["completion"]) and r[
            "source"] == "teacher:arith"
        assert not r["completion"].endswith("<|im_end|>")
    assert 0.5 < s["reflection_rate"] < 1 and s["changed_by_reflection"] > 0
    ids = [r["id"] for r in recs]
    assert all(ids.count(i) <= 2 for i in ids)  # at most --max-keep per item


def test_without_reflection_rejection_sampling_rejects_slipped_traces(tmp_path, capsys):
    out = tmp_path / "t.jsonl"
    s = run(capsys, "traces", "--n", 300, "--split", "val", "--no-reflection", "--slip-rate", 0.5,
            "--out", out)
    recs = read_pairs(out, need_completion=True)
    assert s["acceptance_rate"] < 0.95 and s["reflection_rate"] == 0
    assert all("Wait" not in r["completion"] and parse_verdict(r["completion"]) == r["label"]
               for r in recs)


@pytest.mark.parametrize("kind",
                         [["--no-reflection"], [], ["--reflections", "0.35,0.4,0.15,0.05,0.05"]],
                         ids=["plain", "reflection", "reproduce-reflection"])
def test_no_kept_trace_is_right_for_a_wrong_reason(tmp_path, capsys, kind):
    """Over 3,000 items at a high slip rate, every kept trace's verdict rests on a true check (the
    spec is test_tasks.wrong_reason); the rejected ones are counted. Before the fix 9% of kept plain
    traces were slipped first passes that matched neither response and defaulted to "So A is
    right."."""
    out = tmp_path / "t.jsonl"
    s = run(capsys, "traces", "--n", 3000, "--slip-rate", 0.3, *kind, "--out", out)
    recs = read_pairs(out, need_completion=True)
    assert len(recs) > 2900 and sum(wrong_reason(r, r["completion"]) for r in recs) == 0
    assert (s["right_for_wrong_reason"] > 300) == (kind == ["--no-reflection"])


def test_plain_and_reflection_data_draw_the_same_first_passes(tmp_path):
    """data_gen's two teachers differ only by reflection: draw j of item i has the same first pass
    (same slip, same decision) with and without --no-reflection."""
    def draws(*flags):
        args = data_gen.parse_args(["traces", "--n", "400", "--k", "3", *flags, "--out",
                                    str(tmp_path / "x")])
        data_gen.check_args(args)
        return list(data_gen.program_completions(args, data_gen.load_items(args)))
    first = lambda c: c.split("\n</think>\n")[0].split("\nWait, ")[0]
    plain, refl = draws("--no-reflection"), draws()
    assert [it for it, _ in plain] == [it for it, _ in refl]
    for (_, ps), (_, rs) in zip(plain, refl):
        assert [first(c) for c in ps] == [first(c) for c in rs]
        # "So X is right."
        assert [c.split("\n</think>\n")[1][2] for c in ps] == [first(c)[-11] for c in rs]
    # and the reflection teacher does reflect
    assert sum("Wait" in c for _, rs in refl for c in rs) > 400


@pytest.mark.parametrize("kind", [["--no-reflection"], []], ids=["plain", "reflection"])
def test_teacher_v2_keeps_plain_and_reflection_traces_by_the_same_grounded_rule(tmp_path, capsys,
                                                                                kind):
    from j1_min.teacher_v2 import grounded
    out = tmp_path / "t.jsonl"
    s = run(capsys, "traces", "--n", 400, "--teacher-version", "v2", "--wrong-kinds",
            "carry,digit", *kind, "--out", out)
    recs = read_pairs(out, need_completion=True)
    assert len(recs) > 380 and all(
        r["verdict"] == r["label"] and grounded(r["question"], r["response_a"], r["response_b"],
                                                r["completion"]) for r in recs)
    assert ("Vote" in recs[0]["completion"]) and (s["reflection_rate"] > 0.5) == (not kind)
    # only the plain teacher can end on an even tally, where its coin is not kept
    assert (s["right_for_wrong_reason"] > 10) == bool(kind)


def test_teacher_v2_plain_and_reflection_data_draw_the_same_first_passes(tmp_path):
    def draws(*flags):
        args = data_gen.parse_args(["traces", "--n", "300", "--k", "3", "--teacher-version", "v2",
                                    *flags, "--out", str(tmp_path / "x")])
        data_gen.check_args(args)
        return list(data_gen.program_completions(args, data_gen.load_items(args)))
    tally = lambda c: c.split("\n</think>\n")[0].split("\nWait, ")[0].split("\nSo ")[0]
    plain, refl = draws("--no-reflection"), draws()
    for (_, ps), (_, rs) in zip(plain, refl):
        assert [tally(c) for c in ps] == [tally(c) for c in rs]
    assert sum("Wait" in c for _, rs in refl for c in rs) > 300


def test_pairs_exclude_the_questions_of_an_earlier_test_set(tmp_path, capsys):
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    run(capsys, "pairs", "--n", 400, "--split", "test", "--ops", "*", "--out", old)
    run(capsys, "pairs", "--n", 300, "--split", "test", "--ops", "*", "--seed", 7, "--exclude", old,
        "--out", new)
    seen = {it["question"] for it in read_pairs(old)}
    fresh = [it["question"] for it in read_pairs(new)]
    assert len(fresh) == 300 and not seen & set(fresh)
    # without --exclude the same seed reuses many (products are few)
    run(capsys, "pairs", "--n", 300, "--split", "test", "--ops", "*", "--seed", 7, "--out",
        tmp_path / "again.jsonl")
    assert len(seen & {it["question"] for it in read_pairs(tmp_path / "again.jsonl")}) > 30


def test_wrong_kinds_flag_reaches_the_pairs(tmp_path, capsys):
    run(capsys, "pairs", "--n", 200, "--wrong-kinds", "power", "--out", tmp_path / "p.jsonl")
    assert {r["wrong_kind"] for r in read_pairs(tmp_path / "p.jsonl")} == {"power"}


def test_traces_are_reproducible_from_the_seed(tmp_path, capsys):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        run(capsys, "traces", "--n", 50, "--seed", seed, "--out", tmp_path / f"{name}.jsonl")
    a, b, c = ((tmp_path / f"{n}.jsonl").read_text() for n in "abc")
    assert a == b and a != c


def test_programmatic_teacher_refuses_other_questions(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "q9", "question": "Is the sky blue?",
                                "response_a": "Yes. The answer is 1.",
                                "response_b": "No. The answer is 0.", "label": "A"}) + "\n")
    with pytest.raises(ValueError, match="item q9: .*--teacher"):
        data_gen.main(["traces", "--data", str(data), "--out", str(tmp_path / "o.jsonl")])


# ------------------------------------------------------------------------------------------------
# model teacher

def test_model_teacher_rejection_sampling_end_to_end(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    run(capsys, "pairs", "--n", 8, "--split", "test", "--out", pairs)
    recs = read_pairs(pairs)
    tok = train_bpe([build_prompt(r["question"], r["response_a"], r["response_b"])
                     + "\n</think>\n[[A]] [[B]]"
                     for r in recs] * 4, 400)
    tiny_teacher(tmp_path / "teacher", tok)
    out = tmp_path / "traces.jsonl"
    s = run(capsys, "traces", "--teacher", tmp_path / "teacher", "--data", pairs, "--k", 4,
            "--max-keep", 4, "--max-new-tokens", 24, "--max-think-tokens", 6, "--budget", 1,
            "--batch-size", 3, "--out", out)
    assert s["items"] == 8 and s["drawn"] == 32 and s["mean_tokens_drawn"] <= 24
    # near chance: the random teacher's verdict is a coin flip
    assert 0.2 < s["acceptance_rate"] < 0.8
    kept = read_pairs(out, need_completion=True)
    assert len(kept) == s["kept"] > 0
    for r in kept:
        assert parse_verdict(r["completion"]) == r["label"] and r["source"].startswith("model:")
        assert r["completion"].endswith("]]") and "<|im_end|>" not in r["completion"]
        # its own `</think>` was suppressed and "Wait" forced
        assert r["completion"].startswith("Wait")
    # (random letters glued to "Wait" do not make it a word, hence not all)
    assert s["reflection_rate"] > 0


def test_skip_bad_reports_how_many_lines_were_skipped(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    run(capsys, "pairs", "--n", 4, "--out", pairs)
    pairs.write_text(pairs.read_text() + "{broken\n")
    with pytest.raises(ValueError, match=r"pairs.jsonl, line 5: not valid JSON"):
        data_gen.main(["traces", "--data", str(pairs), "--out", str(tmp_path / "t.jsonl")])
    s = run(capsys, "traces", "--data", pairs, "--skip-bad", "--out", tmp_path / "t.jsonl")
    assert s["items"] == 4
    data_gen.main(["traces", "--data", str(pairs), "--skip-bad", "--out",
                   str(tmp_path / "u.jsonl")])
    assert "skipped 1 bad line (first: " in capsys.readouterr().out
