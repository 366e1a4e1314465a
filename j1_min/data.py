"""Preference data as JSONL: the formats users already have, validated line by line, written
atomically; the seeded order in which training draws them; outputs written while they are produced.

Formats, detected PER LINE from the keys of each JSON object (so one file may mix them):

    RewardBench  {"prompt", "chosen", "rejected", optional "id",
                  "subset"}                                             keys chosen + rejected
    JudgeBench   {"question", "response_A", "response_B", "label": "A>B" | "B>A",
                  optional "pair_id", "source"}                         keys response_A / response_B
    j1_min       {"id", "question", "response_a", "response_b", "label": "A" | "B",
                  any other fields, kept as they are}                   keys response_a / response_b

Every record comes back in the j1_min form. A RewardBench pair has no A and B: which side is A is
decided by a seeded draw, exactly balanced over the file's RewardBench lines, and recorded in the
item (label, and ab_seed = the seed). Traces (data_gen.py traces) are j1_min records with
completion, verdict, has_reflection, num_reflections, source.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import sys
from functools import lru_cache
from pathlib import Path

from .checks import check_output
from .files import atomic_write


class Records(list):
    """A list of records. `.where[i]` is record i's "FILE, line N"; `.skipped` holds one message
    ("FILE, line N: reason") per line skipped (malformed, or too long for the model with fit())."""

    def __init__(self, records=(), where=(), skipped=()):
        super().__init__(records)
        self.where, self.skipped = list(where), list(skipped)

    def subset(self, index) -> "Records":
        """The records at `index` (in that order), with their places and the same skipped list."""
        return Records([self[i] for i in index], [self.where[i] for i in index], self.skipped)

    def skipped_message(self) -> str:
        """One line for the user: how many lines were skipped, and the first reason ('' if none)."""
        n = len(self.skipped)
        return (f"skipped {n} bad line{'' if n == 1 else 's'} (first: {self.skipped[0]})" if n
                else "")


def _text(d: dict, key: str, where: str) -> str:
    if key not in d:
        raise ValueError(f"{where}: missing field {key!r}")
    v = d[key]
    if not isinstance(v, str):
        raise ValueError(f"{where}: field {key!r} must be a string, got {type(v).__name__}")
    try:
        v.encode("utf-8")
    # JSON can spell a lone surrogate ("\ud800"), which no tokenizer can encode
    except UnicodeEncodeError as e:
        raise ValueError(f"{where}: field {key!r} holds a lone surrogate {v[e.start]!r} at "
                         f"character {e.start}: not text") from None
    if not v.strip():
        raise ValueError(f"{where}: field {key!r} is empty")
    return v


def _id(d: dict, key: str, where: str, default: str) -> str:
    v = d.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise ValueError(f"{where}: field {key!r} must be a string or an integer, got "
                         f"{type(v).__name__}")
    return str(v)


def parse_record(d, where: str, need_completion: bool = False) -> tuple[dict, bool]:
    """One JSON value -> (j1_min record, whether it is a RewardBench pair still waiting for its A/B
    draw). Raises ValueError naming `where` (FILE, line N) for a wrong format, a missing field, a
    wrong type, an empty text."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
    default_id = where.rsplit("/", 1)[-1].replace(", line ", ":")
    if "chosen" in d or "rejected" in d:  # RewardBench
        rec = {"id": _id(d, "id", where, default_id), "question": _text(d, "prompt", where),
               "chosen": _text(d, "chosen", where), "rejected": _text(d, "rejected", where),
               "origin": "rewardbench"}
        if "subset" in d:
            rec["subset"] = _text(d, "subset", where)
        return rec, True
    if "response_A" in d or "response_B" in d:  # JudgeBench
        label = d.get("label")
        if label not in ("A>B", "B>A"):
            raise ValueError(f"{where}: JudgeBench field 'label' must be 'A>B' or 'B>A', got "
                             f"{label!r}")
        rec = {"id": _id(d, "pair_id", where, default_id), "question": _text(d, "question", where),
               "response_a": _text(d, "response_A", where),
               "response_b": _text(d, "response_B", where), "label": label[0],
               "origin": "judgebench"}
        if "source" in d:
            rec["subset"] = _text(d, "source", where)
        return rec, False
    if "response_a" in d or "response_b" in d:  # j1_min
        for key in ("question", "response_a", "response_b"):
            _text(d, key, where)
        if d.get("label") not in ("A", "B"):
            raise ValueError(f"{where}: field 'label' must be 'A' or 'B', got {d.get('label')!r}")
        if need_completion:
            _text(d, "completion", where)
        return {**d, "id": _id(d, "id", where, default_id)}, False
    raise ValueError(f"{where}: unknown record format (keys {sorted(d)[:8]}): expected RewardBench "
                     "(prompt, chosen, rejected), JudgeBench (question, response_A, response_B, "
                     f"label) or j1_min (question, response_a, response_b, label)")


def _parse_line(raw: bytes, where: str, need_completion: bool) -> tuple[dict | None, bool]:
    """parse_record of one raw line; (None, False) for a blank line."""
    try:
        line = raw.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not valid UTF-8 (byte {e.start + 1})") from None
    if not line:
        return None, False
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg}, column {e.colno})") from None
    except RecursionError:
        raise ValueError(f"{where}: JSON nested too deeply to read") from None
    rec, is_rb = parse_record(d, where, need_completion)
    if is_rb and need_completion:
        raise ValueError(f"{where}: a RewardBench pair has no completion (traces must be j1_min "
                         "records)")
    return rec, is_rb


def read_pairs(path, seed: int = 0, skip_bad: bool = False,
               need_completion: bool = False) -> Records:
    """Read a JSONL file of preference pairs in any of the formats above (blank lines are ignored);
    '-' reads standard input, named `<stdin>` in messages; a name ending in `.gz` is read through
    gzip (a damaged one is a ValueError naming the file).

    A malformed line (not UTF-8, bad or too deeply nested JSON, not an object, unknown format,
    missing field, wrong type, empty text, a lone surrogate, bad label; no completion when
    need_completion) raises ValueError("FILE, line N: reason"), or, with skip_bad, is skipped and
    counted in the result's `.skipped`. A file with no good record is an error either way.
    `.where[i]` is record i's "FILE, line N". RewardBench pairs get their A/B sides from a
    permutation seeded by `seed`: labels are balanced and a rerun gives the same sides."""
    if str(path) == "-":
        name, f = "<stdin>", contextlib.nullcontext(sys.stdin.buffer)
    else:
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such file")
        name = str(path)
        f = gzip.open(path, "rb") if name.endswith(".gz") else open(path, "rb")
    out, pending = Records(), []
    try:
        with f as lines:
            for lineno, raw in enumerate(lines, 1):
                where = f"{name}, line {lineno}"
                try:
                    rec, is_rb = _parse_line(raw, where, need_completion)
                except ValueError as e:
                    if not skip_bad:
                        raise
                    out.skipped.append(str(e))
                    continue
                if rec is not None:
                    if is_rb:
                        pending.append(len(out))
                    out.append(rec)
                    out.where.append(where)
    except (gzip.BadGzipFile, EOFError) as e:  # a damaged or truncated .gz
        raise ValueError(f"{name}: {e}") from None
    sides = ["A", "B"] * (len(pending) // 2 + 1)
    sides = sides[:len(pending)]
    random.Random(f"ab:{seed}").shuffle(sides)
    for i, side in zip(pending, sides):
        r = out[i]
        chosen, rejected = r.pop("chosen"), r.pop("rejected")
        r.update(response_a=chosen if side == "A" else rejected, response_b=rejected if side == "A"
                 else chosen,
                 label=side, ab_seed=seed)
    if not out:
        skipped = out.skipped
        extra = f" ({len(skipped)} malformed lines skipped; first: {skipped[0]})" if skipped else ""
        raise ValueError(f"{name}: no records{extra}")
    return out


def fit(records: Records, lengths: list[int], room: int, skip_bad: bool, why: str) -> Records:
    """The records whose token count (`lengths[i]`) is at most `room`, checked when the data is
    loaded rather than when a record is drawn. A longer one is an error naming its file, line and
    id, or, with skip_bad, is dropped and counted in `.skipped`. `why` says where the room comes
    from, for the message."""
    keep = []
    for i, n in enumerate(lengths):
        if n <= room:
            keep.append(i)
            continue
        msg = (f"{records.where[i]} (id {records[i].get('id')}): {n} tokens, over the {room} that "
               f"fit ({why})")
        if not skip_bad:
            raise ValueError(msg)
        records.skipped.append(msg)
    if not keep:
        raise ValueError(f"no record fits: {records.skipped[0]}")
    return records.subset(keep)


def write_jsonl(path, records, force: bool = False) -> None:
    """Write records as JSONL, atomically (a temporary file in the same folder, then os.replace: a
    crash leaves the old file or the new one, never half of one). An existing file is overwritten
    only with force=True."""
    path = check_output(path, force, flag="", make_folder=True)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    atomic_write(path, write)


# ------------------------------------------------------------------------------------------------
# data order

@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    p = list(range(n))
    random.Random(f"sft:{seed}:{epoch}").shuffle(p)
    return tuple(p)


def step_order(n: int, batch: int, step: int, seed: int) -> list[int]:
    """Item indexes of training step `step` (train_sft.py's examples, train_grpo.py's prompts):
    positions step*batch .. (step+1)*batch-1 of an endless stream of seeded permutations of
    range(n), one per epoch. A pure function of its arguments, so a resumed run goes on exactly
    where it stopped."""
    return [_permutation(n, seed, q // n)[q % n] for q in range(step * batch, (step + 1) * batch)]


# ------------------------------------------------------------------------------------------------
# partial outputs

class PartialJsonl:
    """An output written while it is produced, so that a killed run keeps what it finished:
    `<out>.partial`, whose first line is {"partial_of": out, "settings": ...} and then one JSON line
    per record, each batch flushed to disk. finish() writes `out` atomically and removes the partial
    file, so `out` only ever holds a whole result; resume() reads back what a run with the same
    settings left."""

    def __init__(self, out, settings: dict):
        self.out = Path(out)
        self.path = self.out.with_name(self.out.name + ".partial")
        self.settings = json.loads(json.dumps(settings))  # as it reads back (tuples become lists)

    def resume(self) -> list[dict]:
        """The records left by an interrupted run, if its settings were these (else ValueError
        naming the ones that differ). A last line torn by the kill is dropped."""
        if not self.path.is_file():
            raise ValueError(f"--resume: there is no {self.path} to continue (no interrupted run "
                             f"of --out {self.out})")
        lines = self.path.read_bytes().decode("utf-8", "replace").splitlines()
        try:
            head = json.loads(lines[0])["settings"]
        except (IndexError, ValueError, KeyError, TypeError):
            raise ValueError(f"{self.path}, line 1: not the settings line of a partial "
                             "output") from None
        differ = sorted(k for k in set(head) | set(self.settings)
                        if head.get(k) != self.settings.get(k))
        if differ:
            raise ValueError(f"--resume: {self.path} was written with other settings: "
                             + "; ".join(f"{k} {head.get(k)!r} there, {self.settings.get(k)!r} now"
                                         for k in differ))
        records = []
        for i, line in enumerate(lines[1:], 2):
            try:
                records.append(json.loads(line))
            except ValueError:
                if i != len(lines):
                    raise ValueError(f"{self.path}, line {i}: not valid JSON") from None
        return records

    def start(self, records=()) -> None:
        """Write the partial file afresh (atomically): the settings line, then `records`; append()
        follows."""
        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps({"partial_of": str(self.out), "settings": self.settings}) + "\n")
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        atomic_write(self.path, write)

    def append(self, records) -> None:
        """Add records at the end, on disk (flushed and fsynced) before this returns."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            f.flush()
            os.fsync(f.fileno())

    def finish(self, records, force: bool) -> None:
        """Write every record to `out` (write_jsonl: atomic) and remove the partial file."""
        write_jsonl(self.out, records, force=force)
        self.path.unlink(missing_ok=True)
