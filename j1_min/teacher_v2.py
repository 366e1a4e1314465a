"""The second programmatic teacher of the arithmetic task (j1_min/tasks.py): judge traces whose
reflections are informative, so that thinking longer can pay.

The first teacher (j1_min/teacher.py) never slips in a reflection, always re-checks B, and lets the
last check decide; a judge that learns from it can only lose by checking again, since its own checks
slip. This one follows four rules:

* **every check can slip, at the same rate, by the same slip model**: each computation (the first
  pass's columns, each reflection's check of one response) slips with probability `slip_rate`; a
  slip is one column wrong (a carry or a column sum off by one, tasks.column_slips). The wrong
  response is itself one slip from the truth (`--wrong-kinds carry,digit`), so a slipped check
  anchors on it with probability `land`: it reproduces the wrong number exactly, and a slipped
  first pass then votes, confidently, for the wrong response;
* **reflections check both responses by independent routes**: reflection k checks one response,
  A and B in turn (which first is a coin per trace), by an inverse route (tasks.check_by_route; a
  response's second check takes the other route), each followed by its digit comparison; a check
  that says yes votes for its response, one that says no for the other;
* **each decision rests on all the evidence so far**: every check ends in a vote (the first pass's
  is the one response its result matched, or none) and a running tally, the lead of A over B,
  written right before the decision it decides (`Vote A; tally B+1 -> even.`): a ~5M judge decides
  well only when the decision token follows the evidence it depends on. A lead decides; an even
  tally (a conflict) calls for another check, which the teacher writes unprompted;
* **the plain teacher writes the same first pass** (the same draws, the same slips) **and stops**.

A trace (the first pass slipped, 1+8+1=11 where 10 is right, landing on B's wrong 816; A's check
says yes and evens the tally, B's says no and A leads; one more reflection was drawn)::

    18+788
    8+8+0=16
    1+8+1=11
    0+7+1=8
    =816
    A 806: 8/8 0/1 no.
    B 816: 8/8 1/1 6/6 yes.
    Vote B; tally even -> B+1.
    So B is right.
    Wait, check A: 806-788
    6-8-0=8 b1
    0-8-1=1 b1
    8-7-1=0 b0
    =18
    Need 18: 1/1 8/8 yes.
    Vote A; tally B+1 -> even.
    Wait, check B: 816-788
    ...
    =28
    Need 18: 1/2 no.
    Vote A; tally even -> A+1.
    So A is right.
    Wait, check A: 806-18
    ...
    Need 788: 7/7 8/8 8/8 yes.
    Vote A; tally A+1 -> A+2.
    So A is right.
    </think>
    [[A]]

Forcing the teacher to think longer (s1 budget forcing: `extra` more ends of thinking replaced by
"Wait") adds checks whose votes a majority can use: the oracle scaling curve
(scripts/oracle_curve.py). With `rule="last"` the same checks and slips are decided as the first
teacher decides, by the last check that voted: the contrast the curve needs.
"""
from __future__ import annotations

import random

from .tasks import (apply, check_by_route, column_slips, compare_digits, parse_answer,
                    parse_pair, parse_question, solve_columns)

SLIP_RATE = 0.3  # chance that one computation (a check) slips
LAND = 0.6  # chance that a slipped check lands on the wrong response's number, where a slip can
REFLECTIONS = (0.3, 0.5, 0.2)  # weights of 0, 1, 2, ... unprompted reflections after a decision
OTHER = {"A": "B", "B": "A"}
MAX_CHECKS = 12  # reflections written at most; past it an even tally ends by a coin (not reached
# in 5,000 training pairs judged with 3 forced reflections at the default rates: 11 at most)


def lead(tally: int) -> str:
    """The running tally as written: A's votes minus B's, `A+k`, `B+k` or `even`."""
    return "even" if tally == 0 else f"A+{tally}" if tally > 0 else f"B+{-tally}"


def tally_line(vote: str | None, before: int) -> tuple[str, int]:
    """`Vote X; tally L -> L'.` and the new tally: a vote for A adds 1, for B subtracts 1, none
    leaves it."""
    after = before + {"A": 1, "B": -1, None: 0}[vote]
    return f"Vote {vote or 'none'}; tally {lead(before)} -> {lead(after)}.", after


def vote_of(yes_a: bool, yes_b: bool) -> str | None:
    """A check's vote: the one response whose check said yes; none when both or neither did."""
    return "A" if yes_a and not yes_b else "B" if yes_b and not yes_a else None


class _Checker:
    """The noisy checks of one pair: each computation slips with probability slip_rate; a slipped
    one lands on the wrong response's number (where one slip can reach it) with probability land.
    Records how many checks slipped and landed."""

    def __init__(self, a, op, b, ns, rng, slip_rate, land):
        self.a, self.op, self.b, self.ns, self.rng = a, op, b, ns, rng
        self.p, self.land, self.true = slip_rate, land, apply(a, op, b)
        self.slipped = self.landed = 0

    def _pick(self, run, base, landing) -> object:
        """The slip of one computation, or None: `run(slip)` is the computation's result, `base`
        its slip-free result, `landing(result)` whether a result lands on the wrong response."""
        if self.rng.random() >= self.p:
            return None
        out = []
        for s in column_slips():
            r = run(s)
            if r != base and r is not None:
                out.append((s, landing(r)))
        hit, miss = [s for s, x in out if x], [s for s, x in out if not x]
        pool = hit if hit and self.rng.random() < self.land else miss
        if not pool:
            return None
        self.slipped += 1
        self.landed += pool is hit
        return self.rng.choice(pool)

    def first_pass(self) -> tuple[list[str], bool, bool]:
        """The question by columns, then A's and B's number against the result: (lines, A yes, B
        yes)."""
        a, op, b = self.a, self.op, self.b
        wrong = [n for n in self.ns.values() if n != self.true]

        def run(s):
            v = solve_columns(a, op, b, s)[1]
            return v if v >= 0 else None
        slip = self._pick(run, self.true, lambda v: v in wrong)
        cols, value, _ = solve_columns(a, op, b, slip)
        lines, ok = [f"{a}{op}{b}", *cols, f"={value}"], {}
        for s in "AB":
            line, ok[s] = compare_digits(s, self.ns[s], value)
            lines.append(line)
        return lines, ok["A"], ok["B"]

    def check(self, name: str, route: int) -> tuple[list[str], bool]:
        """Response `name`'s number checked by the independent route: (lines, yes)."""
        a, op, b, n = self.a, self.op, self.b, self.ns[name]
        base, _ = check_by_route(a, op, b, n, route)

        def run(s):
            lines, _ = check_by_route(a, op, b, n, route, s)
            return None if lines[-2] == "=-1" else lines[-2]
        slip = None
        if len(base) > 2:  # a computation (not the bare "x<y no.")
            target = "=" + base[-1].split(":")[0].split()[1]  # "Need T: ..." -> "=T"
            slip = self._pick(run, base[-2], lambda r: n != self.true and r == target)
        return check_by_route(a, op, b, n, route, slip)


def teacher_trace(question: str, response_a: str, response_b: str, rng: random.Random,
                  slip_rate: float = SLIP_RATE, reflections: tuple[float, ...] = REFLECTIONS,
                  extra: int = 0, land: float = LAND, rule: str = "tally") -> dict:
    """One judge trace (the completion after `<think>\\n`) by the second teacher, which never sees
    the label. The first pass (one check of both responses) votes; then, for the reflecting teacher
    (more than one weight in `reflections`), r reflections, r drawn with weights `reflections` over
    0, 1, 2, ...; then `extra` forced ones (s1 budget forcing of the teacher itself); before each
    and at the end, an even tally calls for more checks until one leads. Reflection k checks one
    response, A and B in turn from a coin's start, by route (k // 2) % 2. The verdict is the tally's
    leader (`rule="tally"`), or, with `rule="last"`, the last vote cast (the first teacher's rule on
    the same checks; the trace's decision lines then follow it too). The plain teacher (one weight)
    writes the first pass and stops; on an even tally it names a coin's verdict (not grounded, so
    never kept). Returns completion, verdict, num_reflections, slipped and landed (checks), changed
    (the verdict differs from the first decision), first (the first decision or None), extra."""
    if rule not in ("tally", "last"):
        raise ValueError(f"rule {rule!r}: choose tally or last")
    a, op, b = parse_question(question)
    ns = {"A": parse_answer(response_a), "B": parse_answer(response_b)}
    if None in ns.values():
        raise ValueError("a response has no 'The answer is N.' for the teacher to check")
    chk = _Checker(a, op, b, ns, rng, slip_rate, land)
    lines, yes_a, yes_b = chk.first_pass()
    state = {"tally": 0, "last": None, "decisions": []}

    def decide(vote):
        line, state["tally"] = tally_line(vote, state["tally"])
        lines.append(line)
        state["last"] = vote or state["last"]
        choice = (lead(state["tally"])[0] if state["tally"] else None) if rule == "tally" \
            else state["last"]
        if choice:
            lines.append(f"So {choice} is right.")
        state["decisions"].append(choice)
        return choice

    choice = decide(vote_of(yes_a, yes_b))
    plain = len(reflections) == 1 and extra == 0
    n_refl = 0
    start = 0 if plain else int(rng.random() < 0.5)  # which response the first reflection checks

    def reflect():
        nonlocal choice, n_refl
        name, route = "AB"[(n_refl + start) % 2], (n_refl // 2) % 2
        check, yes = chk.check(name, route)
        lines.extend([f"Wait, check {name}: {check[0]}", *check[1:]])
        n_refl += 1
        choice = decide(name if yes else OTHER[name])

    def settle():
        while choice is None and n_refl < MAX_CHECKS:
            reflect()

    if not plain:
        r = rng.choices(range(len(reflections)), weights=reflections)[0]
        for _ in range(r + extra):
            settle()
            if n_refl < MAX_CHECKS:
                reflect()
        settle()
    if choice is None:  # plain on an even tally, or past MAX_CHECKS: no evidence decides
        choice = "A" if rng.random() < 0.5 else "B"
        lines.append(f"So {choice} is right.")
    first = state["decisions"][0]
    return {"completion": "\n".join(lines) + f"\n</think>\n[[{choice}]]", "verdict": choice,
            "num_reflections": n_refl, "slipped": chk.slipped, "landed": chk.landed,
            "changed": first is not None and choice != first, "first": first, "extra": extra}


def _segment_vote(seg: list[str], a, op, b, ns) -> str | None | bool:
    """The vote of one thinking segment's check (its lines before the vote line): "A", "B" or None
    (the first pass found both or neither); False when the lines are not a check of this pair in
    the second teacher's format, or its comparison does not follow from the result its own lines
    wrote. Column lines are not recomputed: a slip is evidence too."""
    if seg[0] == f"{a}{op}{b}":  # the first pass: columns, =v, A's and B's comparison
        if len(seg) < 4 or not seg[-3].startswith("=") or not seg[-3][1:].isdigit():
            return False
        found = [compare_digits(s, ns[s], int(seg[-3][1:])) for s in "AB"]
        return vote_of(found[0][1], found[1][1]) if seg[-2:] == [f[0] for f in found] else False
    name = seg[0][len("check "):len("check ") + 1]
    if not seg[0].startswith(("check A: ", "check B: ")):
        return False
    part = [seg[0][len("check A: "):], *seg[1:]]
    for route in (0, 1):
        true, _ = check_by_route(a, op, b, ns[name], route)
        if part[0] != true[0]:
            continue
        if len(true) == 2:  # "x<y no.": no computation to slip
            return OTHER[name] if part == true else False
        if len(part) < 3 or not part[-2].startswith("=") or not part[-2][1:].isdigit():
            return False
        target = int(true[-1].split(":")[0].split()[1])
        line, yes = compare_digits("Need", target, int(part[-2][1:]))
        return False if part[-1] != line else name if yes else OTHER[name]
    return False


def grounded(question: str, response_a: str, response_b: str, completion: str) -> bool:
    """Whether a trace in the second teacher's format rests on its own evidence: every check names
    the pair's own numbers (the question, A's and B's N, a route's target), every comparison follows
    from the result its check wrote, every vote from its comparisons, every tally from the one
    before and the vote, every decision from its tally (a lead decides, an even tally has no
    decision and is followed by another check), and the verdict is the last decision. Slipped column
    lines are allowed (they are the evidence, noisy as a model's is); a verdict that does not follow
    from the evidence written is not. Together with a right verdict (the keep rule of data_gen.py),
    one true check at least voted for it: a slipped check never says yes to the right number."""
    pair = parse_pair(question, response_a, response_b)
    thinking, _, answer = completion.partition("\n</think>\n")
    if pair is None or not thinking:
        return False
    a, op, b, ns = pair
    segments = [s.split("\n") for s in thinking.split("\nWait, ")]
    tally, decision = 0, None
    for k, seg in enumerate(segments):
        at = next((i for i, x in enumerate(seg) if x.startswith("Vote ")), None)
        if at is None:
            return False
        vote = _segment_vote(seg[:at], a, op, b, ns)
        if vote is False:
            return False
        line, tally = tally_line(vote, tally)
        rest = seg[at + 1:]
        decision = lead(tally)[0] if tally else None
        if seg[at] != line or rest != ([f"So {decision} is right."] if decision else []):
            return False
    return decision is not None and answer == f"[[{decision}]]"


def _tally_value(text: str) -> int | None:
    """The inverse of `lead`: "even" -> 0, "A+k" -> k, "B+k" -> -k; None for anything else."""
    if text == "even":
        return 0
    side, plus, k = text[:1], text[1:2], text[2:]
    if side in ("A", "B") and plus == "+" and k.isdigit() and int(k) > 0:
        return int(k) if side == "A" else -int(k)
    return None


def rule_checks(question: str, response_a: str, response_b: str, completion: str) -> list[dict]:
    """Where a trace keeps and breaks the second teacher's rules, one dict per thinking segment
    that has a vote line (the first pass, then each reflection, prompted or forced): `check` (its
    lines are a check of this pair whose comparison follows from the result they wrote), `vote`
    (the vote written is that check's vote; None when `check` is False), `update` (the tally after
    is the tally before plus the vote written), `chain` (the tally before is the previous segment's
    tally after; None for the first), `decision` (a lead is followed by `So X is right.` naming it,
    an even tally by no decision), and `before` and `after` (the tallies as written: "B+3"). The
    diagnosis `grounded` folds into one bit: which rule a judge has not learned, and at which
    tallies."""
    pair = parse_pair(question, response_a, response_b)
    thinking = completion.partition("\n</think>\n")[0]
    if pair is None:
        return []
    a, op, b, ns = pair
    out, prev = [], None
    for seg in (s.split("\n") for s in thinking.split("\nWait, ")):
        at = next((i for i, x in enumerate(seg) if x.startswith("Vote ")), None)
        if at is None:
            continue
        words = seg[at].rstrip(".").replace(";", "").split()  # Vote X tally L -> L'
        before, after = (_tally_value(words[i]) if len(words) == 6 else None for i in (3, 5))
        if None in (before, after) or words[1] not in ("A", "B", "none") or words[2:5:2] != [
                "tally", "->"]:
            out.append({"check": False, "vote": None, "update": False,
                        "chain": None if prev is None else False, "decision": False,
                        "before": None, "after": None})
            prev = None
            continue
        written = None if words[1] == "none" else words[1]
        vote = _segment_vote(seg[:at], a, op, b, ns)
        decision = lead(after)[0] if after else None
        out.append({"check": vote is not False, "vote": None if vote is False else vote == written,
                    "update": after == before + {"A": 1, "B": -1, None: 0}[written],
                    "chain": None if prev is None else before == prev,
                    "decision": seg[at + 1:] == ([f"So {decision} is right."] if decision else []),
                    "before": words[3], "after": words[5]})
        prev = after
    return out
