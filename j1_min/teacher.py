"""The programmatic teacher of the arithmetic task (j1_min/tasks.py): the judge traces it writes,
and the check that a trace is right for the right reason.

The teacher writes judge traces in a compact, regular format a ~5M model can learn (one digit per
token; every decision made right after the digits it depends on; a 4.6M probe sat at chance when the
decision came one token after a long scratchpad):

    347+85                    the question, restated
    7+5+0=12                  one line per column, right to left: digits + carry in = column sum
    4+8+1=14                  <- a slip (13 is right): the teacher errs at --slip-rate, in one
                              column
    3+0+1=4
    =442                      the result: the last column's sum, then the other columns' last digits
    A 432: 4/4 3/4 no.        each response's N against the result, digit by digit, stopping at the
                              first mismatch
    B 442: 4/4 4/4 2/2 yes.
    So B is right.            every thinking segment ends here; `</think>` or a reflection follows
    Wait, check B: 442-85     a reflection checks the current choice by an independent route
    2-5-0=7 b1                (a sum by subtracting, a difference by adding, a product by the other
    4-8-1=5 b1                 decomposition: b times each digit of a) and flips the choice if the
                               check fails
    4-0-1=3 b0
    =357
    Need 347: 3/3 4/5 no.
    So A is right.
    </think>
    [[A]]
"""
from __future__ import annotations

import random
import re

from .tasks import (check_by_route, compare_digits, parse_answer, parse_pair, parse_question,
                    random_slip, solve_columns)


def teacher_trace(question: str, response_a: str, response_b: str, rng: random.Random,
                  slip_rate: float = 0.2, reflections: tuple[float, ...] = (0.3, 0.5, 0.2)) -> dict:
    """One judge trace (the completion after `<think>\n`) written by the programmatic teacher, which
    never sees the label. First pass: the question by columns, with one slip at probability
    slip_rate; each response's N against the result, A's line then B's; then the choice. Then r
    reflections, r drawn with weights `reflections` over 0, 1, 2, ... (at least 1 when neither or
    both match, unless reflections allow only 0): reflection k checks response B's N by the
    independent route k % 2. Every decision follows one rule, "B's line (or B's check) ends in yes
    -> B, else A": the verdict token depends on the one word before it, not on a letter further back
    (with "the letter checked, flipped on no", a tiny model must learn an XOR and stalls at a
    position bias). Reflections never slip, so a slip is caught by the first one. Returns
    completion, verdict, num_reflections, slipped, changed (the final choice differs from the first
    pass's)."""
    a, op, b = parse_question(question)
    ns = {"A": parse_answer(response_a), "B": parse_answer(response_b)}
    if None in ns.values():
        raise ValueError("a response has no 'The answer is N.' for the teacher to check")
    found = random_slip(rng, a, op, b) if rng.random() < slip_rate else None
    cols, value, _ = solve_columns(a, op, b, found[0] if found else None)
    lines = [f"{a}{op}{b}", *cols, f"={value}"]
    ok = {}
    for s in "AB":
        line, ok[s] = compare_digits(s, ns[s], value)
        lines.append(line)
    neither = ok["A"] == ok["B"]  # no match (or two, if both responses give the same N)
    choice = "B" if ok["B"] else "A"  # one rule for every decision: B's line says yes -> B, else A
    lines.append(f"So {choice} is right.")
    r = rng.choices(range(len(reflections)), weights=reflections)[0]
    r = max(r, 1) if neither and len(reflections) > 1 else r
    first = choice
    for k in range(r):
        check, passed = check_by_route(a, op, b, ns["B"], route=k % 2)
        choice = "B" if passed else "A"
        lines += [f"Wait, check B: {check[0]}", *check[1:], f"So {choice} is right."]
    return {"completion": "\n".join(lines) + f"\n</think>\n[[{choice}]]", "verdict": choice,
            "num_reflections": r, "slipped": found is not None, "changed": choice != first}


def grounded(question: str, response_a: str, response_b: str, completion: str) -> bool:
    """Whether a trace's verdict rests on a true check: its last thinking segment (the first pass,
    or the last "Wait, check B" reflection) is the slip-free computation the teacher would write,
    and the verdict is the decision that segment's evidence gives. A trace that is right without
    this is right for a wrong reason, and rejection sampling on the verdict alone would keep it. The
    cases, for the programmatic teacher:

    * the first pass slipped and matched neither response, and no reflection follows: "So A is
      right." is the rule's default, not a finding (plain traces; right whenever the label happens
      to be A, so kept traces of this kind teach "both no -> A");
    * the first pass slipped onto the wrong response and no reflection follows: always a wrong
      verdict;
    * a segment whose decision contradicts its own evidence, or a verdict that differs from the last
      decision (never written by the teacher; a model teacher can write them).

    A reflection that reaches the right decision after a slipped first pass is grounded: its check
    is true. Anything not in the teacher's format (a free-form model trace) is not grounded."""
    pair = parse_pair(question, response_a, response_b)
    thinking, _, answer = completion.partition("\n</think>\n")
    segments = thinking.split("\nWait, ")
    last = segments[-1].split("\n")
    if pair is None or answer != f"[[{last[-1][3:4]}]]":
        return False
    a, op, b, ns = pair
    if len(segments) == 1:  # the first pass decides
        cols, value, _ = solve_columns(a, op, b)
        lines, ok = [f"{a}{op}{b}", *cols, f"={value}"], {}
        for s in "AB":
            line, ok[s] = compare_digits(s, ns[s], value)
            lines.append(line)
        return ok["A"] != ok["B"] and last == [*lines, f"So {'B' if ok['B'] else 'A'} is right."]
    for route in (0, 1):
        check, passed = check_by_route(a, op, b, ns["B"], route)
        if last == [f"check B: {check[0]}", *check[1:], f"So {'B' if passed else 'A'} is right."]:
            return True
    return False


def reflection_changed(completion: str) -> bool:
    """Whether a trace's reflections changed its verdict: the first "So X is right." differs from
    the last."""
    choices = re.findall(r"So ([AB]) is right\.", completion.split("</think>", 1)[0])
    return len(choices) > 1 and choices[0] != choices[-1]
