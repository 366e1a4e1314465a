"""Specifications for j1_min/tasks.py and j1_min/teacher.py: the arithmetic preference task and the
programmatic teacher.

The checks parse questions and answers with their own regular expressions and compute with Python's
operators, independently of the generator."""
from __future__ import annotations

import random
import re
import statistics
from collections import Counter

import pytest

from j1_min.judge_format import build_prompt, parse_verdict
from j1_min.tasks import Difficulty, make_pairs, parse_difficulty
from j1_min.teacher import grounded, reflection_changed, teacher_trace
from j1_min.tokenizer import train_bpe

Q = re.compile(r"^What is (\d+) ([-+*]) (\d+)\?$")
A = re.compile(r"The answer is (\d+)\.$")
TRUE = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def question(item):
    a, op, b = Q.match(item["question"]).groups()
    return int(a), op, int(b)


def answers(item):
    return {s: int(A.search(item[f"response_{s.lower()}"]).group(1)) for s in "AB"}


@pytest.fixture(scope="module")
def pairs():
    return {s: make_pairs(n, s, seed=0) for s, n in (("train", 3000), ("val", 600), ("test", 600))}


def test_labeled_response_is_right_and_the_other_wrong(pairs):
    for items in pairs.values():
        for it in items:
            a, op, b = question(it)
            true = TRUE[op](a, b)
            n = answers(it)
            other = "B" if it["label"] == "A" else "A"
            assert n[it["label"]] == true and n[other] != true and n[other] >= 0
            assert op != "-" or a >= b


def test_every_response_ends_with_the_answer_sentence_and_bare_is_a_style(pairs):
    responses = [it[k] for it in pairs["train"] for k in ("response_a", "response_b")]
    # a plain integer: no separators
    assert all(re.search(r"The answer is -?\d+\.$", r) for r in responses)
    assert sum(bool(re.fullmatch(r"The answer is \d+\.", r))
               for r in responses) > len(responses) / 5
    assert len({re.sub(r"\d+", "N", r.split(" ")[0]) for r in responses}) >= 3  # several styles


def test_wrong_answers_are_plausible_not_random(pairs):
    kinds = Counter()
    for it in pairs["train"]:
        a, op, b = question(it)
        true, n = TRUE[op](a, b), answers(it)
        w = n["B" if it["label"] == "A" else "A"]
        kinds[it["wrong_kind"]] += 1
        # a carry, a borrow or one digit, off by one
        one_digit = abs(w - true) in {10 ** k for k in range(8)}
        power = w in (true * 10, true / 10)
        swapped = sorted(str(w)) == sorted(str(true))
        assert one_digit or power or swapped, (it, w)
    assert set(kinds) == {"carry", "digit", "power", "swap"} and min(kinds.values()) > 300


def test_splits_never_share_a_question_and_a_split_never_repeats_one(pairs):
    def key(it):  # a commuted + or * counts as the same question
        a, op, b = question(it)
        return (min(a, b), op, max(a, b)) if op in "+*" else (a, op, b)
    keys = {s: [key(it) for it in items] for s, items in pairs.items()}
    for s in keys:
        assert len({it["question"] for it in pairs[s]}) == len(pairs[s])
    assert not set(keys["train"]) & set(keys["val"]) and not set(keys["train"]) & set(keys["test"])
    assert not set(keys["val"]) & set(keys["test"])


@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_n_gives_exactly_n_items_with_balanced_labels(n):
    items = make_pairs(n, "test", seed=3)
    labels = Counter(it["label"] for it in items)
    assert len(items) == n and abs(labels["A"] - labels["B"]) <= 1
    assert len({it["id"] for it in items}) == n


def test_pairs_are_seeded():
    assert make_pairs(50, "val", seed=1) == make_pairs(50, "val", seed=1)
    assert make_pairs(50, "val", seed=1) != make_pairs(50, "val", seed=2)


def test_difficulty_knobs_set_operand_digits_and_ops():
    diff = parse_difficulty("1-2", "3x2", "+*")
    assert diff == Difficulty((1, 2), (3, 3), (2, 2), "+*", ("carry", "digit", "power", "swap"))
    for it in make_pairs(300, "train", seed=0, diff=diff):
        a, op, b = question(it)
        assert op in "+*"
        if op == "+":
            assert 1 <= len(str(a)) <= 2 and 1 <= len(str(b)) <= 2
        else:
            assert len(str(a)) == 3 and len(str(b)) == 2
    # the default: 2-3 digit + and -, 2-3 digit times 2..9
    for it in make_pairs(300, "train", seed=0):
        a, op, b = question(it)
        assert (2 <= len(str(a)) <= 3 and 2 <= b <= 9) if op == "*" else 2 <= len(str(b)) <= 3


def test_wrong_kinds_knob_sets_how_the_wrong_response_is_wrong():
    diff = parse_difficulty(wrong_kinds="swap,carry")
    assert diff.wrong_kinds == ("carry", "swap")  # canonical order
    kinds = Counter(it["wrong_kind"] for it in make_pairs(400, "train", diff=diff))
    assert set(kinds) <= {"carry", "swap", "digit"} and min(kinds["carry"], kinds["swap"]) > 100
    # only the fallback, where neither kind fits (a carry-free sum and a 444)
    assert kinds["digit"] < 10
    # the default is the default
    assert make_pairs(60, "val", 2, parse_difficulty()) == make_pairs(60, "val", 2)


@pytest.mark.parametrize("digits, mul, ops, kinds", [
    ("0-2", "2x1", "+", "swap"), ("3-2", "2x1", "+", "swap"), ("x", "2x1", "+", "swap"),
    ("2", "2", "+", "swap"), ("2", "2x1", "/", "swap"), ("2", "2x1", "", "swap"),
    ("2", "2x1", "+", "swap,swap"), ("2", "2x1", "+", "sign"), ("2", "2x1", "+", "")])
def test_bad_difficulty_knobs_are_errors(digits, mul, ops, kinds):
    with pytest.raises(ValueError, match="--digits|--mul-digits|--ops|--wrong-kinds"):
        parse_difficulty(digits, mul, ops, kinds)


def test_too_few_distinct_questions_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="distinct"):
        make_pairs(200, "train", diff=parse_difficulty("1", "1x1", "+"))
    with pytest.raises(ValueError, match="--split"):
        make_pairs(5, "dev")


# ------------------------------------------------------------------------------------------------
# the teacher

def traces(items, slip_rate, reflections, seed=0):
    rng = random.Random(seed)
    return [(it, teacher_trace(it["question"], it["response_a"], it["response_b"], rng, slip_rate,
                               reflections))
            for it in items]


def test_without_slips_the_teacher_is_always_right(pairs):
    for it, t in traces(pairs["val"], 0.0, (1, 1, 1)):
        assert parse_verdict(t["completion"]) == it["label"] == t["verdict"] and not t["changed"]


def test_column_lines_of_a_slip_free_trace_are_true_arithmetic(pairs):
    seen = Counter()
    for _, t in traces(pairs["val"][:300], 0.0, (0, 0, 1)):
        for line in t["completion"].split("\n"):
            if m := re.fullmatch(r"(\d(?:\+\d+)+)=(\d+)", line):
                assert sum(map(int, m.group(1).split("+"))) == int(m.group(2)), line
                seen["+"] += 1
            elif m := re.fullmatch(r"(\d)-(\d)-([01])=(\d) b([01])", line):
                x, y, bi, d, bo = map(int, m.groups())
                assert x - y - bi + 10 * bo == d and bo == (x - y - bi < 0), line
                seen["-"] += 1
            elif m := re.fullmatch(r"(\d)\*(\d)(?:\+(\d+))?=(\d+)", line):
                assert int(m.group(1)) * int(m.group(2)) + int(m.group(3)
                                                               or 0) == int(m.group(4)), line
                seen["*"] += 1
    assert min(seen.values()) > 300


def test_plain_traces_with_slips_are_sometimes_wrong(pairs):
    results = traces(pairs["val"], 1.0, (1.0,))
    assert all("Wait" not in t["completion"] for _, t in results)
    wrong = sum(parse_verdict(t["completion"]) != it["label"] for it, t in results)
    # slips that miss both answers end in a coin flip
    assert 0.2 * len(results) < wrong < 0.8 * len(results)


def test_one_reflection_catches_every_slip(pairs):
    results = traces(pairs["val"], 1.0, (0.0, 1.0))
    assert all(t["slipped"] and t["num_reflections"] == 1 for _, t in results)
    assert all(parse_verdict(t["completion"]) == it["label"] for it, t in results)
    changed = [t for _, t in results if t["changed"]]
    assert len(changed) > 0.2 * len(results) and all(reflection_changed(t["completion"])
                                                     for t in changed)


def test_reflections_check_by_an_independent_route(pairs):
    route = {"+": "-", "-": "+", "*": "*"}
    for it, t in traces(pairs["val"][:200], 0.0, (0, 1)):
        a, op, b = question(it)
        head = re.search(r"Wait, check [AB]: (\d+)([-+*])(\d+)", t["completion"])
        assert head.group(2) == route[op]
        # the other decomposition: b times each digit of a, not a times b's column again
        if op == "*":
            assert (int(head.group(1)), int(head.group(3))) == (b, a)
        else:
            assert int(head.group(3)) == b


def test_thinking_segments_end_where_budget_forcing_puts_wait(pairs):
    for _, t in traces(pairs["val"][:300], 0.3, (1, 1, 1)):
        c = t["completion"]
        ends = [m.start() for m in re.finditer(r"\n(Wait, |</think>)", c)]
        assert len(ends) == t["num_reflections"] + 1
        assert all(re.search(r"So [AB] is right\.$", c[:e]) for e in ends)
        assert c.endswith("\n</think>\n[[A]]") or c.endswith("\n</think>\n[[B]]")


def test_reflection_mix_gives_zero_one_and_two_reflections(pairs):
    counts = Counter(t["num_reflections"] for _, t in traces(pairs["val"], 0.2, (0.3, 0.5, 0.2)))
    assert set(counts) == {0, 1, 2} and counts[1] > counts[0] > 0 and counts[2] > 0


def test_traces_are_compact_in_tiny_bpe_tokens(pairs):
    results = traces(pairs["train"][:600], 0.2, (0.3, 0.5, 0.2))
    tok = train_bpe([build_prompt(it["question"], it["response_a"], it["response_b"])
                     + t["completion"]
                     for it, t in results], 512)
    one = [len(tok.encode(t["completion"], allow_special=True)) for _, t in results
           if t["num_reflections"] == 1]
    # a whole trace with one reflection stays near or under ~200 tokens (a tiny model's context)
    assert statistics.mean(one) < 200
    assert all(tok.encode(d) == [tok.encode(d)[0]] for d in "0123456789")


# ------------------------------------------------------------------------------------------------
# right for a wrong reason

def wrong_reason(it, completion) -> bool:
    """The specification, by its own parse and Python's arithmetic: a trace is right for a wrong
    reason when its verdict is the label but the last thinking segment's result (the first pass's
    `=N`, or the last reflection's `=N` or `x<y`) is false arithmetic, or the decision does not
    follow from the segment's last yes/no, or the first pass found no response that matches (both
    "no"), or the verdict is not the last decision."""
    if parse_verdict(completion) != it["label"]:
        return False
    thinking, answer = completion.split("\n</think>\n")
    segments = thinking.split("\nWait, check B: ")
    lines = segments[-1].split("\n")
    x, op, y = re.fullmatch(r"(\d+)([-+*])(\d+)", lines[0]).groups()
    truth = TRUE[op](int(x), int(y))
    if len(segments) == 1:
        assert (int(x), op, int(y)) == question(it)
        if not any(ln.endswith("yes.") for ln in lines if ln[:2] in ("A ", "B ")):
            return True  # both "no": the decision is the rule's default, not a finding
    less = [ln for ln in lines if re.fullmatch(r"\d+<\d+ no\.", ln)]
    results = [int(ln[1:]) for ln in lines if re.fullmatch(r"=\d+", ln)]
    true_result = int(x) < int(y) if less else results[-1] == truth
    decision = re.fullmatch(r"So ([AB]) is right\.", lines[-1]).group(1)
    follows = decision == ("B" if lines[-2].endswith("yes.")
                           else "A") and answer == f"[[{decision}]]"
    return not (true_result and follows)


@pytest.mark.parametrize("reflections", [(1.0,), (0.3, 0.5, 0.2)], ids=["plain", "reflection"])
def test_the_spec_finds_right_for_a_wrong_reason_traces_before_rejection_and_grounded_agrees(
        pairs, reflections):
    results = traces(pairs["train"], 0.3, reflections)
    bad = [t for it, t in results if wrong_reason(it, t["completion"])]
    right = [(it, t) for it, t in results if parse_verdict(t["completion"]) == it["label"]]
    # slipped plain traces that matched neither response and defaulted to A
    if reflections == (1.0,):
        assert len(bad) > 100 and all(parse_verdict(t["completion"]) == "A" and t["slipped"]
                                      for t in bad)
    # a slipped first pass that matched neither response is always followed by a true re-check
    else:
        assert not bad
    assert all(grounded(it["question"], it["response_a"], it["response_b"], t["completion"])
               == (not wrong_reason(it, t["completion"])) for it, t in right)
    assert not any(grounded(it["question"], it["response_a"], it["response_b"], t["completion"])
                   # a wrong verdict is never grounded
                   for it, t in results if (it, t) not in right)


def test_grounded_refuses_a_verdict_that_is_not_the_last_decision_and_free_text(pairs):
    it, t = traces(pairs["val"][:1], 0.0, (0, 1))[0]
    q, ra, rb, c = it["question"], it["response_a"], it["response_b"], t["completion"]
    flipped = c[:-3] + ("B]]" if c.endswith("A]]") else "A]]")
    assert grounded(q, ra, rb, c) and not grounded(q, ra, rb, flipped)
    assert not grounded(q, ra, rb,
                        "I just know.\n</think>\n[[A]]") and not grounded("Why?", ra, rb, c)


def test_plain_and_reflection_teachers_draw_the_same_first_pass(pairs):
    """Identical but for reflection: from the same random state, the same slip and the same first
    decision; the plain trace is the reflection trace cut before its first "Wait" and closed on that
    decision."""
    for seed, it in enumerate(pairs["val"]):
        plain, refl = (teacher_trace(it["question"], it["response_a"], it["response_b"],
                                     random.Random(seed), 0.5, w)
                       for w in ((1.0,), (0.2, 0.5, 0.3)))
        first = refl["completion"].split("\n</think>\n")[0].split("\nWait, ")[0]
        decision = re.fullmatch(r"So ([AB]) is right\.", first.split("\n")[-1]).group(1)
        assert plain["completion"] == first + f"\n</think>\n[[{decision}]]"
        assert plain["slipped"] == refl["slipped"] and plain["num_reflections"] == 0
