"""judge.py on any checkpoint: the table, --swap, --samples, --budgets, --out, one pair, and clear
user errors."""
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
    out = run(setup, capsys, "--ckpt", setup / "biased", "--data", setup / "test.jsonl",
              "--budgets", "0,1,2", "--max-think-tokens", "6", "--max-new-tokens", "20", "--out",
              tmp_path / "j.jsonl")
    assert "scaling gain acc(2) - acc(0)" in out
    rows = [json.loads(l) for l in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and {r["budget"] for r in rows} == {0, 1, 2}
    assert all(r["num_waits"] <= r["budget"] for r in rows)
    # the planted judge closes its thinking at once; with a budget that becomes "Wait", rambling,
    # the forced end and `\n[[`, after which it says A; at budget 0 nothing follows its own </think>
    # but noise
    assert all(r["verdict"] == "A" for r in rows if r["budget"] > 0)
    assert all(r["verdict"] is None for r in rows if r["budget"] == 0)
    assert {"id", "order", "verdict", "correct", "completion", "think_tokens",
            "num_waits"} <= set(rows[0])


def test_swap_scores_a_position_biased_judge_zero(setup, capsys, tmp_path):
    run(setup, capsys, "--ckpt", setup / "biased", "--data", setup / "test.jsonl", "--swap",
        "--max-think-tokens", "0", "--max-new-tokens", "8", "--out", tmp_path / "s.jsonl")
    rows = [json.loads(l) for l in (tmp_path / "s.jsonl").read_text().splitlines()]
    from j1_min.evaluate import score
    # right in one order, wrong in the other, for every pair
    assert score(rows)[0]["accuracy"] == 0.0
    assert sum(r["correct"] for r in rows) == 10  # exactly half of the 20 single-order judgments


def test_samples_majority_vote_uses_k_samples(setup, capsys, tmp_path):
    run(setup, capsys, "--ckpt", setup / "coin", "--data", setup / "test.jsonl", "--samples", "5",
        "--temperature", "1.0", "--max-think-tokens", "0", "--max-new-tokens", "8", "--out",
        tmp_path / "m.jsonl")
    rows = [json.loads(l) for l in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 50 and {r["sample"] for r in rows} == set(range(5))
    assert 0 < sum(r["verdict"] == "A" for r in rows) < 50  # the coin flips both ways


def test_one_pair_from_flags_prints_its_verdict(setup, capsys):
    out = run(setup, capsys, "--ckpt", setup / "biased", "--question", "What is 2 + 2?", "--a",
              "The answer is 4.", "--b", "The answer is 5.", "--max-think-tokens", "0",
              "--max-new-tokens", "8")
    assert "verdict A" in out and "accuracy" not in out  # no label, so no score


def test_one_labelled_pair_says_whether_its_verdict_is_right(setup, capsys):
    argv = ["--ckpt", setup / "biased", "--question", "What is 2 + 2?", "--a", "The answer is 4.",
            "--b", "The answer is 5.", "--max-think-tokens", "0", "--max-new-tokens", "8"]
    assert "verdict A (right)" in run(setup, capsys, *argv, "--label", "A")
    assert "verdict A (wrong; label B)" in run(setup, capsys, *argv, "--label", "B")


def test_wait_text_is_what_forcing_writes(setup, capsys, tmp_path):
    run(setup, capsys, "--ckpt", setup / "biased", "--data", setup / "test.jsonl", "--budget", "1",
        "--wait-text", "Hmm", "--max-think-tokens", "6", "--max-new-tokens", "20", "--out",
        tmp_path / "w.jsonl")
    rows = [json.loads(l) for l in (tmp_path / "w.jsonl").read_text().splitlines()]
    assert all(r["num_waits"] == 1 and "Hmm" in r["completion"] and "Wait" not in r["completion"]
               for r in rows)


def test_examples_prints_that_many_traces_and_plot_draws_the_table(setup, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out = run(setup, capsys, "--ckpt", setup / "biased", "--data", setup / "test.jsonl",
              "--budgets", "0,1", "--max-think-tokens", "6", "--max-new-tokens", "20",
              "--examples", "3", "--plot", tmp_path / "p.png")
    assert out.count("\n--- ") == 3 and out.count("budget 1: verdict") == 3
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
        judge.run_cli(["--ckpt", str(setup / "biased"), "--data", str(setup / "test.jsonl"),
                       "--out", str(out)])
    assert out.read_text() == "precious\n" and "--force" in capsys.readouterr().err


def lines(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_pairs_sharing_an_id_are_scored_as_separate_items(setup, capsys, tmp_path):
    pairs = [{**p, "id": "same", "label": "A"} for p in make_pairs(20, "test", seed=1)]
    pairs[0]["label"] = "B"  # the always-A judge is right on 19 of the 20
    write_jsonl(tmp_path / "dup.jsonl", pairs)
    out = run(setup, capsys, "--ckpt", setup / "biased", "--data", tmp_path / "dup.jsonl",
              "--max-think-tokens", "0", "--max-new-tokens", "8", "--out", tmp_path / "j.jsonl")
    assert "    0     0.950" in out
    from j1_min.evaluate import score
    rows = lines(tmp_path / "j.jsonl")
    assert [r["item"] for r in rows] == list(range(20)) and score(rows)[0]["n"] == 20


def test_an_interrupted_run_keeps_its_judgments_and_resume_finishes_it_as_one_run_would(
        setup, capsys, tmp_path,
                                                                                       monkeypatch):
    argv = ["--ckpt", setup / "coin", "--data", setup / "test.jsonl", "--temperature", "1",
            "--seed", "5", "--max-think-tokens", "0", "--max-new-tokens", "8", "--batch-size", "3",
            "--budgets", "0,1"]
    run(setup, capsys, *argv, "--out", tmp_path / "whole.jsonl")
    calls, real = [0], judge.judge_pairs

    def killed_at_third_batch(*a, **kw):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)
    monkeypatch.setattr(judge, "judge_pairs", killed_at_third_batch)
    out = tmp_path / "j.jsonl"
    with pytest.raises(SystemExit) as e:
        judge.run_cli([*map(str, argv), "--out", str(out)])
    assert e.value.code == 130 and "--resume" in capsys.readouterr().err
    partial = tmp_path / "j.jsonl.partial"
    assert not out.exists() and sorted({r["item"] for r in lines(partial)[1:]}) == list(range(6))
    # the same command without --resume does not start over silently
    with pytest.raises(SystemExit):
        judge.run_cli([*map(str, argv), "--out", str(out)])
    assert "--resume" in capsys.readouterr().err
    with pytest.raises(ValueError, match="other settings: seed 5 there, 6 now"):
        run(setup, capsys, *argv, "--out", out, "--resume", "--seed", "6")
    with partial.open("a") as f:  # a kill in the middle of a write leaves a torn line
        f.write('{"item": 6, "ord')
    monkeypatch.setattr(judge, "judge_pairs", real)
    assert "resuming" in run(setup, capsys, *argv, "--out", out, "--resume")
    assert lines(out) == lines(tmp_path / "whole.jsonl") and not partial.exists()


@pytest.mark.parametrize("extra, per_call", [((), [4, 4, 2]), (("--swap",), [2] * 5),
                                              (("--samples", "3", "--temperature", "1"), [1] * 10),
                                              (("--budgets", "0,1,2,3"), [4, 4, 2])])
def test_batch_size_counts_rows_decoded_at_once_and_budgets_add_none(setup, capsys, monkeypatch,
                                                                     extra, per_call):
    """--batch-size 4: four rows of one pair, order and sample each; a sweep's budgets fork from one
    row."""
    calls, real = [], judge.judge_pairs

    def counted(model, tok, items, **kw):
        calls.append((len(items), kw["batch_size"]))
        return real(model, tok, items, **kw)
    monkeypatch.setattr(judge, "judge_pairs", counted)
    run(setup, capsys, "--ckpt", setup / "coin", "--data", setup / "test.jsonl",
        "--max-think-tokens", "0", "--max-new-tokens", "4", "--batch-size", "4", *extra)
    assert [n for n, _ in calls] == per_call and {b for _, b in calls} == {max(per_call)}


def test_the_order_a_rewardbench_pair_is_shown_in_depends_on_order_seed_not_on_seed(
        setup, capsys, tmp_path):
    rb = tmp_path / "rb.jsonl"
    rb.write_text("".join(json.dumps({"id": i, "prompt": p["question"],
                                      "chosen": "The answer is 1.", "rejected": "The answer is 2."})
                          + "\n"
                          for i, p in enumerate(make_pairs(10, "test", seed=0))))
    shown = {}
    for seed, order_seed in ((0, 0), (1, 0), (0, 1)):
        out = tmp_path / f"{seed}-{order_seed}.jsonl"
        run(setup, capsys, "--ckpt", setup / "biased", "--data", rb, "--seed", seed, "--order-seed",
            order_seed, "--max-think-tokens", "0", "--max-new-tokens", "8", "--out", out)
        shown[seed, order_seed] = [(r["label"], r["ab_seed"]) for r in lines(out)]
    assert shown[0, 0] == shown[1, 0]  # another sampling seed judges the same pairs as shown
    assert [s for s, _ in shown[0, 0]] != [s for s, _ in shown[0, 1]]
    assert {a for _, a in shown[0, 1]} == {1}  # the output records what decided the order


def test_a_prompt_too_long_for_the_context_is_named_by_file_line_and_id(setup, capsys, tmp_path):
    pairs = make_pairs(3, "test", seed=0)
    pairs[1]["question"] = "What is 1 + 1? " * 400
    write_jsonl(tmp_path / "long.jsonl", pairs)
    with pytest.raises(ValueError, match=f"long.jsonl, line 2 \\(id {pairs[1]['id']}\\): .* "
                                         "tokens, over the"):
        run(setup, capsys, "--ckpt", setup / "biased", "--data", tmp_path / "long.jsonl")
    out = run(setup, capsys, "--ckpt", setup / "biased", "--data", tmp_path / "long.jsonl",
              "--skip-bad", "--max-think-tokens", "0", "--max-new-tokens", "8")
    assert "skipped 1 bad line" in out and "on 2 pairs" in out


def test_non_utf8_standard_input_names_its_line(setup, capsys, monkeypatch):
    import io
    import sys
    good = json.dumps(make_pairs(1, "test", seed=0)[0]).encode()
    monkeypatch.setattr(sys, "stdin",
                        io.TextIOWrapper(io.BytesIO(good + b"\n" + b'{"question": "\xff"}\n')))
    with pytest.raises(SystemExit) as e:
        judge.run_cli(["--ckpt", str(setup / "biased"), "--data", "-"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "<stdin>, line 2: not valid UTF-8" in err
