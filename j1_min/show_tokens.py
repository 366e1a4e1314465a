"""One judgment shown token by token, so a reader can watch s1 budget forcing act (judge.py
--show-tokens).

Every token of the trace is printed; tokens the engine forced ("Wait", a forced `</think>`, the
answer prefix) are marked, so is each place where an end-of-thinking the judge wrote was removed,
and the verdict's log-probability is given under each option.
"""
from __future__ import annotations

import re

import torch

from .judge_format import THINK_END

# ANSI styles for a terminal; plain text uses the bracket markers below instead.
_RESET, _DIM, _FORCED, _REMOVED = "\033[0m", "\033[2m", "\033[30;43m", "\033[9;31m"
LEGEND_PLAIN = ("legend: tokens separated by |; [+...] tokens forced by the engine; "
                f"[-{THINK_END}] an end of thinking the judge wrote and the engine removed (s1)")
LEGEND_COLOR = (f"legend: tokens alternate plain/{_DIM}dim{_RESET}; {_FORCED}forced by the "
                f"engine{_RESET}; {_REMOVED}{THINK_END}{_RESET} an end of thinking the judge wrote "
                "and the engine removed (s1)")


def render(tok, gen, color: bool = False) -> str:
    """The completion of one sampling.Generation with every token visible.

    Plain: "|" between tokens (not after a line break), each run of forced tokens in "[+ ]", and
    "[-...]" at each index where the engine removed an end of thinking the judge wrote
    (gen.suppressed_at: the forced "Wait" starts there; gen.removed: what was removed, the marker
    with any text fused after it in its token, e.g. `</think>\n`, or a stop token). Colour: the same
    marks as ANSI styles, token boundaries as alternating dim/plain text."""
    removed = dict(zip(gen.suppressed_at, gen.removed or [THINK_END] * len(gen.suppressed_at)))
    parts = []  # (kind, [decoded token texts]), kind in "token", "forced", "removed"
    i, n = 0, len(gen.tokens)
    while i < n:
        if i in removed:
            parts.append(("removed", [removed[i]]))
        j = i + 1
        # one run of forced tokens
        while gen.forced[i] and j < n and gen.forced[j] and j not in removed:
            j += 1
        parts.append(("forced" if gen.forced[i] else "token",
                      [tok.decode([t]) for t in gen.tokens[i:j]]))
        i = j
    if n in removed:  # the marker was removed but the forced "Wait" did not fit max_new_tokens
        parts.append(("removed", [removed[n]]))
    if color:
        style = {"forced": _FORCED, "removed": _REMOVED}
        return "".join((style[k] + "".join(t) + _RESET) if k in style else (_DIM + t[0] + _RESET)
                       if i % 2 else t[0]
                       for i, (k, t) in enumerate(parts))
    out = []
    for i, (kind, pieces) in enumerate(parts):
        prev = parts[i - 1] if i else None
        if prev and "removed" not in (kind, prev[0]) and not prev[1][-1].endswith("\n"):
            out.append("|")
        text = "|".join(pieces)
        out.append(f"[-{text}]" if kind == "removed" else f"[+{text}]" if kind == "forced"
                   else text)
    return "".join(out)


_VERDICT = re.compile(r"\[\[([AB])")


def verdict_logprobs(model, tok, prompt: list[int], gen) -> dict | None:
    """log p(verdict = X) for X in A, B under the model's own distribution (temperature 1), at the
    place the judge's answer wrote its verdict letter: the context is the prompt and the trace's
    tokens before the token that completes "[[A" or "[[B" after the accepted `</think>`; option X is
    that token's text with the letter set to X, encoded and scored token by token (one token in most
    vocabularies). None when the trace has no such letter.

    Returns {"A": logp, "B": logp, "at": index in gen.tokens of the verdict token}."""
    if gen.answer_start is None:
        return None
    text, at, piece = "", None, ""
    for i in range(gen.answer_start, len(gen.tokens)):
        piece = tok.decode([gen.tokens[i]])
        m = _VERDICT.search(text + piece)
        if m and m.end() > len(text):
            at, offset = i, m.start(1) - len(text)
            break
        text += piece
    if at is None:
        return None
    context = list(prompt) + gen.tokens[:at]
    out = {"at": at}
    device = next(model.parameters()).device
    for letter in "AB":
        option = tok.encode(piece[:offset] + letter + piece[offset + 1:])
        ids = torch.tensor([context + option], device=device)  # (1, C + K)
        with torch.no_grad():
            logp = model(ids[:, :-1]).float().log_softmax(-1)[0, len(context) - 1:]  # (K, V)
        out[letter] = float(logp.gather(-1, torch.tensor(option, device=device)[:, None]).sum())
    return out
