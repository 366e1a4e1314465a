"""Specifications for j1_min/teacher_v2.py, the teacher whose reflections can pay: noisy checks of
both responses, a running tally that decides, no shortcut through the position, its grounded rule,
and its oracle scaling curve (scripts/oracle_curve.py).

The checks recompute with Python's operators and parse the traces with their own expressions."""
from __future__ import annotations

import random
import re
import statistics
import sys
from pathlib import Path

import pytest

from j1_min.scaling import bootstrap_interval
from j1_min.tasks import make_pairs, parse_difficulty
from j1_min.teacher_v2 import grounded, lead, rule_checks, tally_line, teacher_trace, vote_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import oracle_curve  # noqa: E402

TRUE = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
VOTE = re.compile(r"^Vote (A|B|none); tally (even|[AB]\+\d+) -> (even|[AB]\+\d+)\.$")


@pytest.fixture(scope="module")
def pairs():
    return make_pairs(2000, "val", seed=3, diff=parse_difficulty(wrong_kinds="carry,digit"))


def q(it):
    return it["question"], it["response_a"], it["response_b"]


def numbers(it):
    a, op, b = re.match(r"What is (\d+) (.) (\d+)\?", it["question"]).groups()
    true = TRUE[op](int(a), int(b))
    ns = {s: int(re.search(r"The answer is (\d+)\.$", it[f"response_{s.lower()}"]).group(1))
          for s in "AB"}
    return true, ns


@pytest.fixture(scope="module")
def traces(pairs):
    """Each pair judged with 3 forced extra reflections, its stream seeded by its id."""
    return [teacher_trace(*q(it), random.Random(it["id"]), extra=3) for it in pairs]


def test_the_tally_adds_a_vote_for_A_subtracts_one_for_B_and_writes_the_lead():
    assert tally_line("A", 0) == ("Vote A; tally even -> A+1.", 1)
    assert tally_line("B", 1) == ("Vote B; tally A+1 -> even.", 0)
    assert tally_line(None, -2) == ("Vote none; tally B+2 -> B+2.", -2)
    assert [lead(t) for t in (-1, 0, 3)] == ["B+1", "even", "A+3"]


def test_a_check_votes_for_the_one_response_it_found_right():
    assert [vote_of(x, y) for x, y in ((True, False), (False, True), (True, True), (False, False))
            ] == ["A", "B", None, None]


def test_every_decision_follows_the_tally_of_all_votes_so_far_and_a_conflict_asks_for_a_check(
        traces):
    for t in traces:
        thinking, answer = t["completion"].split("\n</think>\n")
        lines, tally = thinking.split("\n"), 0
        for i, line in enumerate(lines):
            m = VOTE.match(line)
            if not m:
                continue
            tally += {"A": 1, "B": -1, "none": 0}[m.group(1)]
            assert m.group(2) == lead(tally - {"A": 1, "B": -1, "none": 0}[m.group(1)])
            assert m.group(3) == lead(tally)
            # the decision comes right after the tally it rests on; an even tally: another check
            nxt = lines[i + 1] if i + 1 < len(lines) else None
            if tally:
                assert nxt == f"So {'A' if tally > 0 else 'B'} is right."
            else:
                assert nxt is not None and nxt.startswith(("Wait, check A: ", "Wait, check B: "))
        assert tally and answer == f"[[{'A' if tally > 0 else 'B'}]]" == f"[[{t['verdict']}]]"


def test_reflections_check_both_responses_in_turn(traces):
    """Reflection k checks one response, A and B alternating, from a start that is A in half the
    traces; so every trace with two reflections or more has checked both."""
    starts = []
    for t in traces:
        segments = t["completion"].split("\nWait, ")[1:]
        assert len(segments) == t["num_reflections"] >= 3
        names = [seg[len("check "):len("check ") + 1] for seg in segments]
        assert all(seg.startswith(f"check {n}: ") for seg, n in zip(segments, names))
        assert all(x != y for x, y in zip(names, names[1:]))
        starts.append(names[0])
    assert abs(starts.count("A") / len(starts) - 0.5) < 0.04


def test_a_later_reflection_can_change_the_verdict(traces):
    """The first teacher's kept traces never changed their verdict after the first reflection; here
    a second or later check overturns a decision in some traces."""
    later = 0
    for t in traces:
        decisions = re.findall(r"-> (even|[AB])", t["completion"])
        later += any(decisions[k] != decisions[k - 1] for k in range(2, len(decisions)))
    assert later > 0.02 * len(traces)


def slipped_checks(it, completion):
    """(first pass slipped, [reflection check slipped, ...]) from the written results: a check
    slipped when its `=r` line differs from the true computation's."""
    true, ns = numbers(it)
    thinking = completion.split("\n</think>\n")[0]
    first = next(x for x in thinking.split("\n") if x.startswith("="))
    from j1_min.tasks import check_by_route, parse_question
    a, op, b = parse_question(it["question"])
    out = []
    for k, seg in enumerate(thinking.split("\nWait, ")[1:]):
        name = seg[len("check "):len("check ") + 1]
        good, _ = check_by_route(a, op, b, ns[name], (k // 2) % 2)
        if len(good) > 2:
            res = next(x for x in seg.split("\n") if x.startswith("="))
            out.append(res != good[-2])
    return first != f"={true}", out


def test_every_check_slips_at_the_same_rate(pairs, traces):
    firsts, refl = [], []
    for it, t in zip(pairs, traces):
        f, r = slipped_checks(it, t["completion"])
        firsts.append(f)
        refl += r
    assert abs(statistics.mean(firsts) - 0.3) < 0.035
    assert abs(statistics.mean(refl) - 0.3) < 0.02


def test_no_shortcut_position_styles_and_slips_are_balanced_across_A_and_B(pairs, traces):
    """The right answer is A in half the pairs; the right response's style does not depend on its
    position; the first pass lands on the wrong response as often when it is A as when it is B; and
    the teacher is as accurate when A is right as when B is, at budget 0 and after 3 forced
    reflections."""
    assert sum(it["label"] == "A" for it in pairs) == len(pairs) // 2

    def style(r):
        return "bare" if r.startswith("The answer") else "words" if r[0].isalpha() else "equation"
    for s in ("bare", "words", "equation"):
        rate = {lab: statistics.mean(style(it[f"response_{lab.lower()}"]) == s
                                     for it in pairs if it["label"] == lab) for lab in "AB"}
        assert abs(rate["A"] - rate["B"]) < 0.05, (s, rate)
    land, acc0, acc3 = {"A": [], "B": []}, {"A": [], "B": []}, {"A": [], "B": []}
    for it, t in zip(pairs, traces):
        true, ns = numbers(it)
        wrong = "B" if it["label"] == "A" else "A"
        res = int(next(x for x in t["completion"].split("\n") if x.startswith("="))[1:])
        land[wrong].append(res == ns[wrong])
        acc3[it["label"]].append(t["verdict"] == it["label"])
        t0 = teacher_trace(*q(it), random.Random(it["id"]))
        acc0[it["label"]].append(t0["verdict"] == it["label"])
    assert 0.1 < statistics.mean(land["A"] + land["B"]) < 0.3
    assert abs(statistics.mean(land["A"]) - statistics.mean(land["B"])) < 0.04
    for acc in (acc0, acc3):
        assert abs(statistics.mean(acc["A"]) - statistics.mean(acc["B"])) < 0.04


def test_the_plain_teacher_writes_the_same_first_pass_and_stops(pairs):
    for it in pairs[:300]:
        plain = teacher_trace(*q(it), random.Random(it["id"]), reflections=(1.0,))
        refl = teacher_trace(*q(it), random.Random(it["id"]))
        p_think = plain["completion"].split("\n</think>\n")[0]
        first = refl["completion"].split("\n</think>\n")[0].split("\nWait, ")[0]
        assert "Wait" not in p_think and plain["num_reflections"] == 0
        # up to the tally line; on an even tally the plain one adds a coin's decision
        assert p_think.split("\nSo ")[0] == first.split("\nSo ")[0]


def test_teacher_traces_are_grounded_and_tampered_ones_are_not(pairs, traces):
    for it, t in list(zip(pairs, traces))[:400]:
        c = t["completion"]
        assert grounded(*q(it), c)
        other = "B" if t["verdict"] == "A" else "A"
        assert not grounded(*q(it), c.replace(f"[[{t['verdict']}]]", f"[[{other}]]"))
        # a tally that does not add up
        last = re.findall(r"-> ([AB])\+(\d+)\.", c)[-1]
        bumped = c.replace(f"-> {last[0]}+{last[1]}.", f"-> {last[0]}+{int(last[1]) + 1}.")
        assert not grounded(*q(it), bumped)
        # a comparison that contradicts its own digits
        flipped = re.sub(r"(Need \d+: [^\n]*?)(yes|no)\.",
                         lambda m: m.group(1) + ("no." if m.group(2) == "yes" else "yes."), c,
                         count=1)
        assert not grounded(*q(it), flipped)
        # a trace that stops on an even tally
        if "-> even." in c:
            cut = c[:c.index("-> even.") + 8] + f"\n</think>\n[[{t['verdict']}]]"
            assert not grounded(*q(it), cut)
    # another pair's numbers are not this pair's evidence
    assert not grounded(*q(pairs[0]), traces[1]["completion"])


def test_rule_checks_finds_the_one_rule_a_tampered_trace_breaks(pairs, traces):
    rules = ("check", "vote", "update", "chain", "decision")

    def broken(it, c):
        """rule -> how many segments break it."""
        return {r: sum(seg[r] is False for seg in rule_checks(*q(it), c)) for r in rules}

    for it, t in list(zip(pairs, traces))[:200]:
        c = t["completion"]
        segs = rule_checks(*q(it), c)
        assert len(segs) == 1 + c.count("\nWait, ")  # the first pass and every reflection
        assert segs[0]["chain"] is None and segs[0]["before"] == "even"
        assert broken(it, c) == dict.fromkeys(rules, 0)
        # the last vote line: the vote flipped, its tally kept (a vote that is not its check's)
        m = list(re.finditer(r"Vote (A|B); tally (\S+) -> (\S+)\.", c))[-1]
        flip = {"A": "B", "B": "A"}[m.group(1)]
        assert broken(it, c[:m.start()] + f"Vote {flip}" + c[m.start() + 6:]) == {
            **dict.fromkeys(rules, 0), "vote": 1, "update": 1}
        # the last tally before rewritten: the chain breaks there, and its update
        before = m.group(2)
        other = "A+7" if before != "A+7" else "B+7"
        t2 = c[:m.start(2)] + other + c[m.end(2):]
        assert broken(it, t2) == {**dict.fromkeys(rules, 0), "chain": int(len(segs) > 1),
                                  "update": 1}
    # another pair's numbers: no check of this pair
    assert all(seg["check"] is False for seg in rule_checks(*q(pairs[0]), traces[1]["completion"]))


def test_plain_coin_decisions_and_the_last_vote_rule_are_not_grounded(pairs):
    coin = last = 0
    for it in pairs[:600]:
        p = teacher_trace(*q(it), random.Random(it["id"]), reflections=(1.0,))
        if "-> even." in p["completion"]:
            coin += 1
            assert not grounded(*q(it), p["completion"])
        t = teacher_trace(*q(it), random.Random(it["id"]), extra=2)
        s = teacher_trace(*q(it), random.Random(it["id"]), extra=2, rule="last")
        if s["verdict"] != t["verdict"]:
            last += 1
            assert not grounded(*q(it), s["completion"])
    assert coin > 30 and last > 3


def test_the_oracle_gains_from_forced_reflections_and_the_tally_is_what_keeps_gaining(pairs):
    """The task's premise: the teacher forced to check 3 more times is clearly more accurate, and
    more so than the same checks decided by the last vote."""
    items = pairs[:600]
    tally = oracle_curve.curve(items, lambda it, rng, k: teacher_trace(*q(it), rng, extra=k))
    last = oracle_curve.curve(items, lambda it, rng, k: teacher_trace(*q(it), rng, extra=k,
                                                                       rule="last"), (3,))
    d = {r0[0]: r3[1] - r0[1] for r0, r3 in zip(tally[0], tally[3])}
    gain, lo, _ = bootstrap_interval(d, 2000)
    assert gain > 0.05 and lo > 0
    acc = lambda rows: statistics.mean(r[1] for r in rows)  # noqa: E731
    assert acc(tally[3]) > acc(last[3]) + 0.03
    assert [acc(tally[b]) for b in range(4)] == sorted(acc(tally[b]) for b in range(4))


def test_oracle_curve_refuses_the_test_split(capsys):
    with pytest.raises(SystemExit) as e:
        oracle_curve.build_parser().parse_args(["--split", "test"])
    assert e.value.code == 2 and "test" in capsys.readouterr().err


def test_oracle_curve_takes_the_reflection_weights_and_refuses_bad_ones(capsys):
    args = oracle_curve.build_parser().parse_args(["--reflections", "0.45,0.2,0.1,0.1,0.1,0.05"])
    assert args.reflections == (0.45, 0.2, 0.1, 0.1, 0.1, 0.05)
    for bad in ("0.3,-1", "0,0", "a,b", "0.3,nan"):
        with pytest.raises(SystemExit):
            oracle_curve.build_parser().parse_args(["--reflections", bad])
        assert "--reflections" in capsys.readouterr().err
    # the weights reach teacher v2 (not the plain teacher, which never reflects)
    items = make_pairs(200, "val", seed=0, diff=parse_difficulty(wrong_kinds="carry,digit"))
    many = oracle_curve.teachers(oracle_curve.build_parser().parse_args(
        ["--reflections", "0,0,0,0,1"]))
    t = many["v2 (tally)"](items[0], random.Random(0), 0)
    assert t["num_reflections"] >= 4
    assert many["plain v2 (first pass only)"](items[0], random.Random(0), 0)[
        "num_reflections"] == 0
