"""Preference data as JSONL: the formats users already have, validated line by line, written atomically; and the
SFT examples (token ids with the prompt masked out) and batches built from them.

Formats, detected PER LINE from the keys of each JSON object (so one file may mix them):

    RewardBench  {"prompt", "chosen", "rejected", optional "id", "subset"}          keys chosen + rejected
    JudgeBench   {"question", "response_A", "response_B", "label": "A>B" | "B>A",
                  optional "pair_id", "source"}                                       keys response_A / response_B
    j1_min       {"id", "question", "response_a", "response_b", "label": "A" | "B",
                  any other fields, kept as they are}                                 keys response_a / response_b

Every record comes back in the j1_min form. A RewardBench pair has no A and B: which side is A is decided by a seeded
draw, exactly balanced over the file's RewardBench lines, and recorded in the item (label, and ab_seed = the seed).
Traces (data_gen.py traces) are j1_min records with completion, verdict, has_reflection, num_reflections, source.
"""
from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

import torch

from .checkpoint import atomic_write
from .judging import END_OF_TURN, THINK_END, encode_prompt


class Records(list):
    """A list of records; `.skipped` holds one message ("FILE, line N: reason") per malformed line skipped."""
    skipped: list[str]


def _text(d: dict, key: str, where: str) -> str:
    if key not in d:
        raise ValueError(f"{where}: missing field {key!r}")
    v = d[key]
    if not isinstance(v, str):
        raise ValueError(f"{where}: field {key!r} must be a string, got {type(v).__name__}")
    if not v.strip():
        raise ValueError(f"{where}: field {key!r} is empty")
    return v


def _id(d: dict, key: str, where: str, default: str) -> str:
    v = d.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise ValueError(f"{where}: field {key!r} must be a string or an integer, got {type(v).__name__}")
    return str(v)


def parse_record(d, where: str, need_completion: bool = False) -> tuple[dict, bool]:
    """One JSON value -> (j1_min record, whether it is a RewardBench pair still waiting for its A/B draw).
    Raises ValueError naming `where` (FILE, line N) for a wrong format, a missing field, a wrong type, an empty text."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
    default_id = where.rsplit("/", 1)[-1].replace(", line ", ":")
    if "chosen" in d or "rejected" in d:  # RewardBench
        rec = {"id": _id(d, "id", where, default_id), "question": _text(d, "prompt", where),
               "chosen": _text(d, "chosen", where), "rejected": _text(d, "rejected", where), "origin": "rewardbench"}
        if "subset" in d:
            rec["subset"] = _text(d, "subset", where)
        return rec, True
    if "response_A" in d or "response_B" in d:  # JudgeBench
        label = d.get("label")
        if label not in ("A>B", "B>A"):
            raise ValueError(f"{where}: JudgeBench field 'label' must be 'A>B' or 'B>A', got {label!r}")
        rec = {"id": _id(d, "pair_id", where, default_id), "question": _text(d, "question", where),
               "response_a": _text(d, "response_A", where), "response_b": _text(d, "response_B", where),
               "label": label[0], "origin": "judgebench"}
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
    raise ValueError(f"{where}: unknown record format (keys {sorted(d)[:8]}): expected RewardBench (prompt, chosen, "
                     f"rejected), JudgeBench (question, response_A, response_B, label) or j1_min (question, "
                     f"response_a, response_b, label)")


def read_pairs(path, seed: int = 0, skip_bad: bool = False, need_completion: bool = False) -> Records:
    """Read a JSONL file of preference pairs in any of the formats above (blank lines are ignored).

    A malformed line (bad JSON, not an object, unknown format, missing field, wrong type, empty text, bad label;
    no completion when need_completion) raises ValueError("FILE, line N: reason"), or, with skip_bad, is skipped and
    counted in the result's `.skipped`. A file with no good record is an error either way. RewardBench pairs get
    their A/B sides from a permutation seeded by `seed`: labels are balanced and a rerun gives the same sides."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    out, skipped, pending = Records(), [], []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}, line {lineno}"
            try:
                line = raw.decode("utf-8").strip()
                if not line:
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{where}: not valid JSON ({e.msg}, column {e.colno})") from None
                rec, is_rb = parse_record(d, where, need_completion)
            except UnicodeDecodeError:
                if not skip_bad:
                    raise ValueError(f"{where}: not valid UTF-8") from None
                skipped.append(f"{where}: not valid UTF-8")
                continue
            except ValueError as e:
                if not skip_bad:
                    raise
                skipped.append(str(e))
                continue
            if is_rb:
                if need_completion:
                    msg = f"{where}: a RewardBench pair has no completion (traces must be j1_min records)"
                    if not skip_bad:
                        raise ValueError(msg)
                    skipped.append(msg)
                    continue
                pending.append(len(out))
            out.append(rec)
    sides = ["A", "B"] * (len(pending) // 2 + 1)
    sides = sides[:len(pending)]
    random.Random(f"ab:{seed}").shuffle(sides)
    for i, side in zip(pending, sides):
        r = out[i]
        chosen, rejected = r.pop("chosen"), r.pop("rejected")
        r.update(response_a=chosen if side == "A" else rejected, response_b=rejected if side == "A" else chosen,
                 label=side, ab_seed=seed)
    if not out:
        extra = f" ({len(skipped)} malformed lines skipped; first: {skipped[0]})" if skipped else ""
        raise ValueError(f"{path}: no records{extra}")
    out.skipped = skipped
    return out


def write_jsonl(path, records, force: bool = False) -> None:
    """Write records as JSONL, atomically (a temporary file in the same folder, then os.replace: a crash leaves
    the old file or the new one, never half of one). An existing file is overwritten only with force=True."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file")
    if path.exists() and not force:
        raise ValueError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    atomic_write(path, write)


# ------------------------------------------------------------------------------------------------ SFT examples

def sft_example(tokenizer, record: dict) -> tuple[list[int], int]:
    """(ids, n_prompt): the judge prompt, then the completion, then `<|im_end|>` (the completion is stored without
    it). Only the completion's first `</think>` becomes the marker token; the rest is encoded as ordinary text, as
    in the prompt, so a completion cannot plant chat markers either. Targets are ids[n_prompt:]."""
    prompt = encode_prompt(tokenizer, record["question"], record["response_a"], record["response_b"])
    c = record["completion"]
    while c.rstrip().endswith(END_OF_TURN):  # a stored end-of-turn token is dropped: it is appended below
        s = c.rstrip()
        c = s[:-len(next(e for e in END_OF_TURN if s.endswith(e)))]
    thinking, sep, answer = c.partition(THINK_END)
    ids = tokenizer.encode(thinking) + (tokenizer.marker_ids(THINK_END) + tokenizer.encode(answer) if sep else [])
    return prompt + ids + [tokenizer.eos_id], len(prompt)


def sft_batches(examples: list[tuple[list[int], int]], micro: int, pad_id: int):
    """Sort (ids, n_prompt) examples by length (shortest first; stable) and cut them into micro-batches, each
    right-padded to its longest: a list of (inputs, targets, mask), each (b, T), T = longest - 1.
    inputs = ids[:-1], targets = ids[1:], mask = 1.0 where the target is a completion token (ids[n_prompt:], the
    closing `<|im_end|>` included), 0.0 on the prompt and the padding."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    out = []
    for s in range(0, len(order), micro):
        chunk = [examples[i] for i in order[s:s + micro]]
        T = max(len(ids) for ids, _ in chunk) - 1
        inp = torch.full((len(chunk), T), pad_id, dtype=torch.long)
        tgt = torch.full((len(chunk), T), pad_id, dtype=torch.long)
        mask = torch.zeros(len(chunk), T)
        for r, (ids, n_prompt) in enumerate(chunk):
            L = len(ids) - 1
            inp[r, :L] = torch.tensor(ids[:-1])
            tgt[r, :L] = torch.tensor(ids[1:])
            mask[r, n_prompt - 1:L] = 1.0
        out.append((inp, tgt, mask))
    return out


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    p = list(range(n))
    random.Random(f"sft:{seed}:{epoch}").shuffle(p)
    return tuple(p)


def sft_step_order(n: int, batch: int, step: int, seed: int) -> list[int]:
    """Example indexes of optimizer step `step`: positions step*batch .. (step+1)*batch-1 of an endless stream of
    seeded permutations of range(n), one per epoch. A pure function of its arguments, so a resumed run goes on
    exactly where it stopped."""
    return [_permutation(n, seed, q // n)[q % n] for q in range(step * batch, (step + 1) * batch)]
