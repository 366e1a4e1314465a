"""A verifiable preference task for tiny models: the miniature of RewardMath (one of J1's
benchmarks).

"What is a op b?" (op in + - *, subtraction with a >= b) and two responses that each end with "The
answer is N."; one is right, the other wrong in a plausible way (a dropped carry or borrow, a digit
off by one, off by a power of ten, swapped digits). Questions are split by a hash, so train, val and
test never share one. The column arithmetic here is what both a plausible wrong answer (a dropped
carry) and the teacher's traces are made of; the programmatic teacher that writes judge traces is
j1_min/teacher.py.
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import NamedTuple

OPS = "+-*"
# share of the question hash space
SPLITS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}
STYLES = ("bare", "equation", "words")
WRONG_KINDS = ("carry", "digit", "power", "swap")
QUESTION_RE = re.compile(r"What is (\d+) ([-+*]) (\d+)\?")
ANSWER_RE = re.compile(r"The answer is (-?\d+)\.")


@dataclass
class Difficulty:
    """Digit counts (inclusive ranges) of the operands. The default, 2-3 digit sums and differences
    and 2-3 digit by 1-digit products, keeps a trace with one reflection near 150-200 tiny-BPE
    tokens and leaves a ~5M model's first pass clearly short of 100% (a 4.6M probe got 86% of 1-3
    digit sums right after 15 CPU minutes); 2-digit by 1-digit products alone would give only ~700
    distinct questions, too few for a training set."""
    add: tuple[int, int] = (2, 3)  # digits of each operand of + and -
    mul_a: tuple[int, int] = (2, 3)  # digits of a in a * b
    mul_b: tuple[int, int] = (1, 1)  # digits of b in a * b (a 1-digit b is drawn from 2..9)
    ops: str = OPS
    wrong_kinds: tuple[str, ...] = WRONG_KINDS  # how the wrong response is wrong (see wrong_answer)


def parse_difficulty(digits: str = "2-3", mul_digits: str = "2-3x1", ops: str = OPS,
                     wrong_kinds: str = ",".join(WRONG_KINDS)) -> Difficulty:
    """Difficulty from the CLI knobs: --digits "LO-HI" (or "N") for + and -, --mul-digits "A x B"
    with A and B each "LO-HI" or "N" (e.g. "2-3x1"), --ops a non-empty subset of "+-*",
    --wrong-kinds a comma-separated subset of carry,digit,power,swap (a power of ten changes the
    answer's length, the easiest wrong answer to spot)."""
    def rng_(s: str, flag: str) -> tuple[int, int]:
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", s.strip())
        lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, 0)
        if not 1 <= lo <= hi <= 9:
            raise ValueError(f"{flag} {s!r}: expected LO-HI or N, digit counts from 1 to 9, "
                             "e.g. 2-3")
        return lo, hi
    parts = mul_digits.lower().split("x")
    if len(parts) != 2:
        raise ValueError(f"--mul-digits {mul_digits!r}: expected AxB, e.g. 2-3x1")
    if not ops or set(ops) - set(OPS) or len(set(ops)) != len(ops):
        raise ValueError(f"--ops {ops!r}: expected a non-empty subset of '+-*', e.g. +-")
    kinds = tuple(k.strip() for k in wrong_kinds.split(","))
    if set(kinds) - set(WRONG_KINDS) or len(set(kinds)) != len(kinds):
        raise ValueError(f"--wrong-kinds {wrong_kinds!r}: expected a comma-separated subset of "
                         f"{','.join(WRONG_KINDS)}, each once")
    # canonical order: the same draws however written
    kinds = tuple(k for k in WRONG_KINDS if k in kinds)
    return Difficulty(rng_(digits, "--digits"), rng_(parts[0], "--mul-digits"),
                      rng_(parts[1], "--mul-digits"), ops, kinds)


def apply(a: int, op: str, b: int) -> int:
    """The true value of a op b."""
    return a + b if op == "+" else a - b if op == "-" else a * b


def _number(rng: random.Random, lo: int, hi: int, min_one_digit: int) -> int:
    d = rng.randint(lo, hi)
    return rng.randint(min_one_digit, 9) if d == 1 else rng.randint(10 ** (d - 1), 10 ** d - 1)


def draw_question(rng: random.Random, diff: Difficulty) -> tuple[int, str, int]:
    """A random (a, op, b) of the difficulty; subtraction has a >= b, so the answer is never
    negative."""
    op = rng.choice(diff.ops)
    if op == "*":
        return _number(rng, *diff.mul_a, 2), op, _number(rng, *diff.mul_b, 2)
    a, b = _number(rng, *diff.add, 1), _number(rng, *diff.add, 1)
    return (max(a, b), op, min(a, b)) if op == "-" else (a, op, b)


def split_of(a: int, op: str, b: int) -> str:
    """The split a question belongs to, from a hash of the question with + and * operands sorted, so
    no question (nor its commuted twin) is ever in two splits."""
    x, y = (min(a, b), max(a, b)) if op in "+*" else (a, b)
    u = int(hashlib.sha256(f"{x}{op}{y}".encode()).hexdigest()[:12], 16) / 16 ** 12
    return next(s for s, (lo, hi) in SPLITS.items() if lo <= u < hi)


def response_text(rng: random.Random, a: int, op: str, b: int, n: int) -> str:
    """One response in a random style; every style ends with "The answer is N." (the bare style is
    only that)."""
    style = rng.choice(STYLES)
    if style == "bare":
        return f"The answer is {n}."
    if style == "equation":
        return f"{a} {op} {b} = {n}. The answer is {n}."
    verb = {"+": f"Adding {a} and {b}", "-": f"Subtracting {b} from {a}",
            "*": f"Multiplying {a} by {b}"}[op]
    return f"{verb} gives {n}. The answer is {n}."


def wrong_answer(rng: random.Random, a: int, op: str, b: int,
                 kinds: tuple[str, ...] = WRONG_KINDS) -> tuple[int, str]:
    """A plausible wrong N (and its kind), of one of `kinds`: a dropped/extra carry or borrow, one
    digit off by one, x10 or /10, two adjacent digits swapped. Never the true value, never negative,
    never a random number (if no kind of `kinds` fits in 100 draws, the last digit off by one)."""
    true = apply(a, op, b)
    for _ in range(100):
        kind, s = rng.choice(kinds), str(true)
        if kind == "carry":
            found = random_slip(rng, a, op, b, kind="carry")
            w = found[1] if found else None
        elif kind == "digit":
            i = rng.randrange(len(s))
            d = int(s[i]) + rng.choice((-1, 1))
            w = int(s[:i] + str(d) + s[i + 1:]) if 0 <= d <= 9 and (d or i or len(s) == 1) else None
        elif kind == "power":  # a zero too many, or one too few
            w = true // 10 if true % 10 == 0 and true and rng.random() < 0.5 else true * 10
        else:  # two adjacent digits swapped (never making a leading zero)
            i = rng.randrange(max(1, len(s) - 1))
            t = s[:i] + s[i + 1:i + 2] + s[i] + s[i + 2:] if len(s) > 1 else s
            w = int(t) if t[0] != "0" else None
        if w is not None and w != true and w >= 0:
            return w, kind
    return true + 1, "digit"


def make_pairs(n: int, split: str, seed: int = 0, diff: Difficulty | None = None,
               exclude=frozenset()) -> list[dict]:
    """Exactly n preference pairs of one split: distinct questions, none of them in `exclude` (a set
    of question texts: an earlier experiment's test pairs), labels balanced (n//2 A, the rest B,
    shuffled), reproducible from (split, seed, exclude)."""
    diff = diff or Difficulty()
    if split not in SPLITS:
        raise ValueError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    if n < 1:
        raise ValueError(f"--n {n}: need at least 1 item")
    rng = random.Random(f"arith:{split}:{seed}")
    labels = ["A"] * (n // 2) + ["B"] * (n - n // 2)
    rng.shuffle(labels)
    items, seen, tries = [], set(), 0
    while len(items) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise ValueError(f"only {len(items)} distinct {split} questions found for --n {n} at "
                             f"this difficulty; use more digits or a smaller --n")
        a, op, b = draw_question(rng, diff)
        q = f"What is {a} {op} {b}?"
        if q in seen or q in exclude or split_of(a, op, b) != split:
            continue
        seen.add(q)
        true = apply(a, op, b)
        wrong, kind = wrong_answer(rng, a, op, b, diff.wrong_kinds)
        good, bad = response_text(rng, a, op, b, true), response_text(rng, a, op, b, wrong)
        label = labels[len(items)]
        ra, rb = (good, bad) if label == "A" else (bad, good)
        items.append({"id": f"arith-{split}-{seed}-{len(items)}", "question": q, "response_a": ra,
                      "response_b": rb, "label": label, "origin": "arith", "wrong_kind": kind})
    return items


# ------------------------------------------------------------------------------------------------
# column arithmetic

def _digits(x: int) -> list[int]:
    return [int(c) for c in reversed(str(x))]  # least significant first


class _Slip(NamedTuple):
    """One slip of the first pass, in column number `at`: a carry/borrow in ("carry") or a column
    sum ("digit") off by `delta` (-1 or +1)."""
    at: int
    kind: str
    delta: int


class _Cols:
    """Writes column lines; applies the slip (if any) when its column comes. `n` counts the columns
    written."""

    def __init__(self, slip: _Slip | None = None):
        self.slip, self.n, self.lines = slip, 0, []

    def _next(self, first: bool) -> tuple[int, int]:
        """(carry-in change, column-sum change) for the next column: the slip's if it falls here,
        else (0, 0)."""
        s, i = self.slip, self.n
        self.n += 1
        if s is None or s.at != i:
            return 0, 0
        return ((0 if first else s.delta), 0) if s.kind == "carry" else (0, s.delta)

    def add(self, nums: list[int]) -> int:
        """Column addition of several numbers, one line per column: `d1+d2+...+carry=sum`."""
        ds, carry, value = [_digits(x) for x in nums], 0, 0
        width = max(map(len, ds))
        for i in range(width):
            col = [d[i] if i < len(d) else 0 for d in ds]
            dc, dsum = self._next(i == 0)
            carry = max(0, carry + dc)
            s = max(0, sum(col) + carry + dsum)
            self.lines.append("+".join(map(str, col + [carry])) + f"={s}")
            value += (s if i == width - 1 else s % 10) * 10 ** i
            carry = s // 10
        return value

    def sub(self, x: int, y: int) -> int:
        """Column subtraction x - y, one line per column: `dx-dy-borrow=digit bK` (K: the borrow
        out)."""
        dx, dy, borrow, value = _digits(x), _digits(y), 0, 0
        for i in range(len(dx)):
            yi = dy[i] if i < len(dy) else 0
            dc, dsum = self._next(i == 0)
            borrow ^= dc != 0
            d = dx[i] - yi - borrow
            out = int(d < 0)
            d = (d + 10 * out + dsum) % 10
            self.lines.append(f"{dx[i]}-{yi}-{borrow}={d} b{out}")
            value += d * 10 ** i
            borrow = out
        # -1: negative (only a slip does that; such a slip is not used)
        return -1 if borrow else value

    def mul1(self, x: int, d: int) -> int:
        """x times one digit d, one line per column: `dx*d+carry=product` (the bare fact `x*d=p` if
        x is a digit)."""
        dx, carry, value = _digits(x), 0, 0
        for i, xi in enumerate(dx):
            dc, dsum = self._next(i == 0)
            carry = max(0, carry + dc)
            p = max(0, xi * d + carry + dsum)
            self.lines.append(f"{xi}*{d}={p}" if len(dx) == 1 else f"{xi}*{d}+{carry}={p}")
            value += (p if i == len(dx) - 1 else p % 10) * 10 ** i
            carry = p // 10
        return value

    def mul(self, x: int, y: int) -> int:
        """Long multiplication: x times each digit of y (right to left), then the column sum of the
        shifted partials."""
        if y < 10:
            return self.mul1(x, y)
        parts = []
        for j, dj in enumerate(_digits(y)):
            if x >= 10:
                self.lines.append(f"{x}*{dj}")
            p = self.mul1(x, dj)
            if x >= 10:
                self.lines.append(f"={p}")
            parts.append(p * 10 ** j)
        self.lines.append("+".join(map(str, parts)))
        return self.add(parts)


def solve_columns(a: int, op: str, b: int, slip: _Slip | None = None) -> tuple[list[str], int, int]:
    """The first pass: (column lines, result, number of columns). With a slip the result may be
    wrong."""
    c = _Cols(slip)
    value = c.add([a, b]) if op == "+" else c.sub(a, b) if op == "-" else c.mul(a, b)
    return c.lines, value, c.n


def random_slip(rng: random.Random, a: int, op: str, b: int,
                kind: str | None = None) -> tuple[_Slip, int] | None:
    """A slip that really changes the first pass's result (and keeps it >= 0), with that result;
    None if none found."""
    true, cols = apply(a, op, b), solve_columns(a, op, b)[2]
    for _ in range(20):
        slip = _Slip(rng.randrange(cols), kind or rng.choice(("carry", "digit")),
                     rng.choice((-1, 1)))
        value = solve_columns(a, op, b, slip)[1]
        if value >= 0 and value != true:
            return slip, value
    return None


def compare_digits(name: str, n: int, value: int) -> tuple[str, bool]:
    """`name n: n1/v1 n2/v2 ... yes.`: digits from the left, `_` past the end, stopping at the first
    mismatch."""
    s, t, pairs = str(n), str(value), []
    for i in range(max(len(s), len(t))):
        x, y = s[i] if i < len(s) else "_", t[i] if i < len(t) else "_"
        pairs.append(f"{x}/{y}")
        if x != y:
            return f"{name} {n}: {' '.join(pairs)} no.", False
    return f"{name} {n}: {' '.join(pairs)} yes.", True


def column_slips(columns: int = 12) -> list[_Slip]:
    """Every single slip of a computation of up to `columns` columns: a carry/borrow in or a column
    sum off by -1 or +1, in any one column (a slip past the last column changes nothing)."""
    return [_Slip(at, kind, d) for at in range(columns) for kind in ("carry", "digit")
            for d in (-1, 1)]


def check_by_route(a: int, op: str, b: int, n: int, route: int = 0,
                   slip: _Slip | None = None) -> tuple[list[str], bool]:
    """Check "a op b = n" by an independent route. Route 0: n-b must give a (sums), n+b must give a
    (differences), b times each digit of a must give n (products, the other decomposition). Route 1:
    n-a must give b, a-n must give b, and the product recomputed by columns. `slip` (see
    column_slips) makes one column of the computation wrong, as in the first pass. Returns (lines,
    whether the result matches)."""
    c = _Cols(slip)
    if op == "*":
        head, r, target = (f"{b}*{a}", c.mul(b, a),
                           n) if route == 0 else (f"{a}*{b}", c.mul(a, b), n)
    else:
        x, y, target = {("+", 0): (n, b, a), ("+", 1): (n, a, b), ("-", 0): (n, b, a),
                        ("-", 1): (a, n, b)}[op, route]
        if op == "+" or route == 1:  # subtract
            if x < y:
                return [f"{x}-{y}", f"{x}<{y} no."], False
            head, r = f"{x}-{y}", c.sub(x, y)
        else:
            head, r = f"{x}+{y}", c.add([x, y])
    line, ok = compare_digits("Need", target, r)
    return [head, *c.lines, f"={r}", line], ok


# ------------------------------------------------------------------------------------------------
# parsing

def parse_question(question: str) -> tuple[int, str, int]:
    """(a, op, b) of "What is a op b?"; ValueError for any other question."""
    m = QUESTION_RE.fullmatch(question.strip())
    if not m:
        raise ValueError("not an arithmetic question of the form 'What is a op b?': "
                         f"{question[:60]!r}")
    return int(m.group(1)), m.group(2), int(m.group(3))


def parse_pair(question: str, response_a: str, response_b: str):
    """(a, op, b, {"A": N_A, "B": N_B}) of a pair of the task, or None when the question or either
    answer does not parse (a pair the programmatic teachers cannot judge)."""
    try:
        a, op, b = parse_question(question)
    except ValueError:
        return None
    ns = {"A": parse_answer(response_a), "B": parse_answer(response_b)}
    return None if None in ns.values() else (a, op, b, ns)


def parse_answer(response: str) -> int | None:
    """N of the last "The answer is N." in a response, or None."""
    found = ANSWER_RE.findall(response)
    return int(found[-1]) if found else None
