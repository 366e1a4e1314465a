"""Specifications for j1_min/data.py: reading RewardBench / JudgeBench / j1_min JSONL, errors that
name the file and line, atomic writes, and the seeded order of training items."""
from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from j1_min.data import read_pairs, step_order, write_jsonl
from j1_min.judge_format import build_prompt
from j1_min.tokenizer import train_bpe

RB = {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5", "id": 7, "subset": "math"}
JB = {"pair_id": "p1", "question": "Q?", "response_A": "ra", "response_B": "rb", "label": "B>A",
      "source": "mmlu"}
J1 = {"id": "x1", "question": "Q?", "response_a": "ra", "response_b": "rb", "label": "A",
      "note": "kept"}


def jsonl(tmp_path, lines, name="d.jsonl") -> Path:
    p = tmp_path / name
    p.write_bytes(b"".join((ln if isinstance(ln, bytes)
                            else (ln if isinstance(ln, str) else json.dumps(ln))
                            .encode()) + b"\n" for ln in lines))
    return p


def test_rewardbench_pairs_get_seeded_balanced_sides(tmp_path):
    p = jsonl(tmp_path, [{**RB, "id": i, "chosen": f"good {i}", "rejected": f"bad {i}"}
                         for i in range(40)])
    recs = read_pairs(p, seed=0)
    assert Counter(r["label"] for r in recs) == {"A": 20, "B": 20}
    for i, r in enumerate(recs):
        assert r[f"response_{r['label'].lower()}"] == f"good {i}" and r["ab_seed"] == 0
        assert r["id"] == str(i) and r["question"] == RB["prompt"] and r["subset"] == "math"
        assert "chosen" not in r and "rejected" not in r
    assert read_pairs(p, seed=0) == recs
    assert [r["label"] for r in read_pairs(p, seed=1)] != [r["label"] for r in recs]


def test_judgebench_and_j1_min_records(tmp_path):
    # formats are detected per line, so a file may mix them
    jb, j1 = read_pairs(jsonl(tmp_path, [JB, J1]))
    assert jb == {"id": "p1", "question": "Q?", "response_a": "ra", "response_b": "rb",
                  "label": "B", "origin": "judgebench", "subset": "mmlu"}
    assert j1 == J1  # the j1_min form comes back as it is, extra fields included


def test_gzipped_pairs_read_as_the_plain_file_and_a_damaged_one_is_named(tmp_path):
    p = jsonl(tmp_path, [JB, J1])
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert read_pairs(gz) == read_pairs(p)
    assert read_pairs(gz).where == [f"{gz}, line 1", f"{gz}, line 2"]
    gz.write_bytes(gzip.compress(p.read_bytes())[:-12])  # truncated
    with pytest.raises(ValueError, match=r"d\.jsonl\.gz: "):
        read_pairs(gz)
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"d\.jsonl\.gz: "):
        read_pairs(gz)


def test_missing_ids_are_file_and_line(tmp_path):
    r = read_pairs(jsonl(tmp_path, ["", {k: v for k, v in J1.items() if k != "id"}]))[0]
    assert r["id"] == "d.jsonl:2"


BAD = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ({"foo": 1}, "unknown record format"),
    ({k: v for k, v in RB.items() if k != "rejected"}, "missing field 'rejected'"),
    ({k: v for k, v in RB.items() if k != "prompt"}, "missing field 'prompt'"),
    ({k: v for k, v in JB.items() if k != "question"}, "missing field 'question'"),
    ({k: v for k, v in J1.items() if k != "response_b"}, "missing field 'response_b'"),
    ({**RB, "chosen": 4}, "'chosen' must be a string, got int"),
    ({**J1, "question": None}, "'question' must be a string"),
    ({**RB, "rejected": "  \n"}, "'rejected' is empty"),
    ({**J1, "response_a": ""}, "'response_a' is empty"),
    ({**JB, "label": "A=B"}, "'A>B' or 'B>A'"),
    ({**J1, "label": "C"}, "'A' or 'B'"),
    ({k: v for k, v in J1.items() if k != "label"}, "'A' or 'B'"),
    ({**J1, "id": [1]}, "'id' must be a string or an integer"),
    (b'{"prompt": "\xff"}', "not valid UTF-8"),
    ('{"id": "s", "question": "Q\\ud800?", "response_a": "a", "response_b": "b", "label": "A"}',
     "'question' holds a lone surrogate"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
]


@pytest.mark.parametrize("line, message", BAD)
def test_a_malformed_line_is_an_error_naming_file_and_line(tmp_path, line, message):
    p = jsonl(tmp_path, [J1, "", line, J1])
    with pytest.raises(ValueError) as e:
        read_pairs(p)
    assert str(e.value).startswith(f"{p}, line 3: ") and message in str(e.value)


def test_skip_bad_skips_and_counts_every_malformed_line(tmp_path):
    p = jsonl(tmp_path, [J1] + [line for line, _ in BAD] + [JB])
    recs = read_pairs(p, skip_bad=True)
    assert [r["id"] for r in recs] == ["x1", "p1"]
    assert len(recs.skipped) == len(BAD) and all(s.startswith(f"{p}, line ") for s in recs.skipped)


def test_no_records_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        read_pairs(jsonl(tmp_path, ["", ""]))
    with pytest.raises(ValueError, match=r"no records \(1 malformed lines skipped"):
        read_pairs(jsonl(tmp_path, ["{bad"]), skip_bad=True)
    with pytest.raises(ValueError, match="no such file"):
        read_pairs(tmp_path / "missing.jsonl")


def test_need_completion_requires_a_completion(tmp_path):
    p = jsonl(tmp_path, [{**J1, "completion": "t\n</think>\n[[A]]"}, J1])
    with pytest.raises(ValueError, match=f"{p}, line 2: missing field 'completion'"):
        read_pairs(p, need_completion=True)
    with pytest.raises(ValueError, match="RewardBench pair has no completion"):
        read_pairs(jsonl(tmp_path, [RB], "rb.jsonl"), need_completion=True)


# ------------------------------------------------------------------------------------------------
# writing

def test_write_jsonl_round_trips_and_never_overwrites_without_force(tmp_path):
    out = tmp_path / "sub" / "o.jsonl"
    write_jsonl(out, [J1, {**J1, "id": "x2", "question": "Qué? 🙂"}])
    assert [r["id"] for r in read_pairs(out)] == ["x1",
                                                  "x2"] and "🙂" in out.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="exists; pass --force"):
        write_jsonl(out, [J1])
    write_jsonl(out, [J1], force=True)
    assert len(read_pairs(out)) == 1


def test_write_jsonl_is_atomic(tmp_path):
    out = tmp_path / "o.jsonl"
    write_jsonl(out, [J1])
    before = out.read_bytes()
    with pytest.raises(TypeError):  # a record that cannot be written, half way through
        write_jsonl(out, [J1, {"bad": object()}], force=True)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["o.jsonl"]


def test_step_order_walks_seeded_epochs():
    n, batch = 10, 4
    stream = [i for step in range(5) for i in step_order(n, batch, step, seed=0)]  # 20 = two epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert stream[:10] != stream[10:] and stream[:10] != list(range(10))
    # a pure function: resuming needs only the step
    assert step_order(n, batch, 3, seed=0) == stream[12:16]
    assert step_order(n, batch, 0, seed=1) != stream[:4]


def test_each_record_knows_its_file_and_line(tmp_path):
    p = jsonl(tmp_path, ["", J1, "{bad", "", {**J1, "id": "x2"}])
    recs = read_pairs(p, skip_bad=True)
    assert recs.where == [f"{p}, line 2",
                          f"{p}, line 5"] and recs.subset([1]).where == [f"{p}, line 5"]
    assert recs.skipped_message().startswith(f"skipped 1 bad line (first: {p}, line 3: not valid "
                                             "JSON")


@pytest.fixture(scope="module")
def tok():
    return train_bpe([build_prompt("Q?", "ra", "rb") + "x\n</think>\n[[A]]"] * 5, 300)


def test_a_lone_surrogate_never_reaches_the_tokenizer(tok):
    with pytest.raises(ValueError, match="lone surrogate"):
        tok.encode("Q\ud800?")
