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


def option_logprobs(model, context: list[int], options: dict) -> dict:
    """log p(option | context) = sum_k log softmax(logits)[option_k] over each option's tokens,
    under the model's own distribution (temperature 1): {name: logp} for options {name: ids}. The
    context is prefilled once and its cache copied to one row per option (KVCache.select)."""
    device = next(model.parameters()).device
    names, opts = list(options), [list(options[n]) for n in options]
    K = max(map(len, opts))
    cache = model.new_cache(1, len(context) + K)
    with torch.no_grad():
        first = model(torch.tensor([context], device=device),
                      cache)[0, -1].float().log_softmax(-1)  # (V,)
        cache.select(torch.zeros(len(opts), dtype=torch.long, device=device))
        # right-padded with each row's own first token: later positions never reach earlier ones
        ids = torch.tensor([o + o[:1] * (K - len(o)) for o in opts], device=device)  # (n, K)
        rest = model(ids, cache).float().log_softmax(-1)  # (n, K, V)
    return {n: float(first[o[0]]) + sum(float(rest[i, k - 1, o[k]]) for k in range(1, len(o)))
            for i, (n, o) in enumerate(zip(names, opts))}


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
    options = {x: tok.encode(piece[:offset] + x + piece[offset + 1:]) for x in "AB"}
    return {"at": at, **option_logprobs(model, list(prompt) + gen.tokens[:at], options)}


def constrained_verdict(model, tok, prompt: list[int], gen, template) -> tuple[str, dict]:
    """The verdict as the template's option with the highest log-probability (judge.py --verdict
    logprob), for a judge too weak to write one: the context is the prompt, the judge's thinking up
    to its accepted end marker (a trace that never closed its thinking gets a line break, if it
    needs one, and the marker, as the thinking cap forces them), then the template's answer prefix;
    option X is the rest of X's verdict pattern after the prefix ("[[A]]" after "\\n[[": "A]]").
    Returns (verdict, {option: log p}); ties go to the first option in template order."""
    prefix = template.answer_prefix or ""
    if gen.answer_start is not None:
        head = gen.tokens[:gen.answer_start]
    else:
        text = tok.decode(gen.tokens)
        nl = [] if not text or text.endswith("\n") else tok.encode("\n")
        head = gen.tokens + nl + tok.marker_ids(template.think_end)
    # the longest end of the prefix that opens every pattern is already written
    cut = max(n for n in range(len(prefix) + 1)
              if all(p.startswith(prefix[len(prefix) - n:]) for _, p in template.verdicts))
    options = {v: tok.encode(p[cut:]) for v, p in template.verdicts}
    lp = option_logprobs(model, list(prompt) + head + (tok.encode(prefix) if prefix else []),
                         options)
    return max(lp, key=lp.get), lp
