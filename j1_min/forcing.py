"""s1 budget forcing, one row at a time: the end of thinking found in the text, and what happens to
it.

s1 (Muennighoff et al. 2025, "s1: Simple test-time scaling", sec. 3.1) scales a model at test time
by suppressing its end of thinking and appending "Wait", N times. Its evaluation code
(simplescaling/s1, eval/lm-evaluation-harness/lm_eval/models/vllm_causallms.py, the
`thinking_n_ignore` loop) generates a thinking phase that stops at the end delimiter or at a stop
token, appends the kept token ids and Wait's ids, and generates again, N times; then it appends the
delimiter and lets the model answer. A row of `sampling.generate` follows the same rules, token by
token over a KV cache (the rules are numbered in `Row.advance`).

Tokens are not text: Qwen2.5 (J1-7B's base) has no `</think>` token, and its pre-tokenizer glues
punctuation to the line breaks after it, so a judge writes `</think>\\n` as `'</' 'think' '>\\n'`,
and `.</` is one token too. So the marker is looked for in the decoded text of the row's last
tokens, whenever a token that can complete it (one whose text holds the marker's last character) is
sampled. A single added token (Qwen3, the embedded judge) is found the same way, in one step.
"""
from __future__ import annotations

import copy
import functools
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Marker:
    """The end-of-thinking marker and the forced texts, in one tokenizer's ids, prepared once (see
    `marker`)."""
    text: str  # "</think>"
    # what is forced to end thinking: the added token where there is one, else its encoding
    ids: tuple[int, ...]
    wait_ids: tuple[int, ...]  # "Wait", forced in place of a suppressed end of thinking
    # forced after the marker on the length path (s1's "\nFinal Answer:")
    answer_ids: tuple[int, ...]
    newline_ids: tuple[int, ...]  # s1 puts "\n" before the marker it forces on the length path
    # ids whose text holds the marker's last character: only they can complete it
    closers: frozenset[int]
    # ids whose text begins the marker: never the first token after a "Wait"
    openers: tuple[int, ...]
    tokenizer: object  # decode(ids) -> str, encode(text, allow_special=True) -> ids

    def cut(self, tokens: list[int], tok: int) -> tuple[int, str, str] | None:
        """If `tokens + [tok]` (a thinking row's tokens and its new sampled token) now holds the
        marker in its text: (back, before, removed). The last `back` of `tokens` and `tok` hold the
        marker's start or come after it; `before` is the text of those tokens that precedes the
        marker (to be re-fed); `removed` is the marker and any text after it in the same token. None
        when the text holds no marker.

        Only a short tail is decoded: the longest run of the tail's leading tokens whose text is a
        prefix of the text before the marker is kept. A tail that starts inside a multi-byte
        character is widened until it keeps something, or is the whole completion."""
        n = min(len(tokens), len(self.text) + 1)
        while True:
            tail = tokens[len(tokens) - n:] + [tok]
            text = self.tokenizer.decode(tail)
            at = text.find(self.text)
            if at < 0:
                return None
            j = len(tail) - 1
            while j > 0 and not text[:at].startswith(self.tokenizer.decode(tail[:j])):
                j -= 1
            if j > 0 or n == len(tokens):
                kept = self.tokenizer.decode(tail[:j])
                return len(tail) - 1 - j, text[len(kept):at], text[at:]
            n = min(len(tokens), 2 * n)

    def length_path(self, tokens: list[int]) -> list[int]:
        """What s1 forces when the thinking budget is spent: "\\n" unless the text already ends in a
        line break (the prompt ends in one when nothing was thought), the marker, the answer
        prefix."""
        ends_line = not tokens or self.tokenizer.decode(tokens[-1:]).endswith("\n")
        return list(() if ends_line else self.newline_ids) + list(self.ids) + list(self.answer_ids)


@functools.lru_cache(maxsize=16)
def marker(tokenizer, text: str, wait: str, answer_prefix: str) -> Marker:
    """Prepare a Marker for `tokenizer` (cached: the per-id texts of a 152k vocabulary take a moment
    to decode). Raises ValueError if the tokenizer cannot write the marker, or if "Wait" could join
    a marker's pieces."""
    ids = tokenizer.encode(text, allow_special=True)
    if not text or tokenizer.decode(ids) != text:
        raise ValueError(f"the tokenizer cannot write the end-of-thinking marker {text!r} (it "
                         f"encodes to {ids}, which decodes to {tokenizer.decode(ids)!r})")
    if text in text[:-1] + wait + text[:-1]:
        raise ValueError(f"the forced text {wait!r} could form the marker {text!r} with the text "
                         "around it")
    texts = tokenizer.token_texts()  # (V,) the text of each id on its own
    closers = frozenset(i for i, s in enumerate(texts) if text[-1] in s)
    openers = tuple(i for i, s in enumerate(texts) if s
                    and (text.startswith(s) or s.startswith(text)))
    enc = lambda s: tuple(tokenizer.encode(s, allow_special=True)) if s else ()
    return Marker(text, tuple(ids), enc(wait), enc(answer_prefix), enc("\n"), closers, openers,
                  tokenizer)


@dataclass(frozen=True)
class Rules:
    """What every row of one generate call obeys."""
    max_new: int  # len(.tokens) at most, forced tokens included
    stop: frozenset[int]  # end-of-turn ids
    cap: int | None  # max_think_tokens
    marker: Marker | None  # None: no thinking phase, no forcing


class Row:
    """One row's budget-forcing state. advance() appends one token (sampled or forced) and says what
    to feed.

    Forking (a budget sweep for the price of its longest budget): a row under budget B and a row
    under budget b < B with the same prompt and random stream write the same tokens until the end of
    thinking that the b row accepts and the B row suppresses, the one that comes after b "Wait"s. So
    one row decodes for all the budgets in `forks`: at that end it spawns a child, a copy of itself
    under budget b that takes the accepting branch, and goes on to force "Wait" (sampling.generate
    gives the child a copy of the row's KV cache and random stream)."""
    __slots__ = ("gen", "budget", "thinking", "queue", "end_at", "done", "fresh", "forks",
                 "children", "spawn")

    def __init__(self, gen, budget: int, thinking: bool):
        self.gen, self.budget, self.thinking = gen, budget, thinking
        self.queue: deque[int] = deque()  # forced tokens still to emit, one per step
        self.end_at = -1  # while forcing the marker: len(.tokens) once its last token is in
        self.done = False
        # a "Wait" was forced and no token sampled since: stops and marker openers are banned
        self.fresh = False
        self.forks: set[int] = set()  # smaller budgets this row also decodes for, by forking
        self.children: dict[int, Row] = {}  # budget -> the child row spawned for it
        # (child, token to feed it, rollback) from the last advance(), for generate to pick up
        self.spawn = None

    def advance(self, tok: int, lp: float, r: Rules) -> tuple[int, int]:
        """Take the sampled token `tok` (log-prob `lp`); return (token to feed next, KV positions to
        roll back first) and set self.done when the row ends. The rules (s1's thinking_n_ignore
        loop):

        1. A thinking row ends its thinking when its text holds the marker (Marker.cut), or (2) when
           it samples a stop token: s1 stops its thinking phase on both.
        3. While fewer than `budget` ends were suppressed, the end is suppressed: the tokens from
           the one holding the marker's start are rolled back (from .tokens and the KV cache), the
           text before the marker in them is re-fed as forced tokens, and "Wait" is forced; a stop
           token is simply dropped before "Wait".
        4. The first token sampled after a "Wait" is never a stop nor begins the marker (s1 samples
           with vLLM's min_tokens=1); generate bans them in the draw while self.fresh.
        5. The (budget+1)-th end is accepted: a marker stays as written; a stop is replaced by the
           forced marker.
        6. At max_think_tokens tokens of thinking, when no forced sequence is under way (the cap
           never cuts one), s1's length path is forced: "\\n" (unless the text ends in one), the
           marker, the answer prefix.
        """
        g, m, roll = self.gen, r.marker, 0
        # rule 6
        if not self.queue and self.thinking and r.cap is not None and len(g.tokens) >= r.cap:
            self._end(m.length_path(g.tokens), len(m.answer_ids))
            g.forced_end = True
        if self.queue:
            tok, lp, forced = self.queue.popleft(), 0.0, True
        else:
            forced, self.fresh = False, False
            if self.thinking and tok in r.stop:  # rule 2
                if g.num_waits < self.budget:  # rule 3
                    self._fork(tok, lp, r)
                    self._wait((), m.wait_ids, m.tokenizer.decode([tok]))
                else:  # rule 5
                    self._end(list(m.ids), 0)
                tok, lp, forced = self.queue.popleft(), 0.0, True
            # rule 1
            elif self.thinking and tok in m.closers and (cut := m.cut(g.tokens, tok)) is not None:
                back, before, removed = cut
                if g.num_waits < self.budget:  # rule 3
                    self._fork(tok, lp, r)
                    if back:
                        del g.tokens[-back:], g.forced[-back:], g.logprobs[-back:]
                    roll = back
                    self._wait(m.tokenizer.encode(before, allow_special=True) if before else (),
                               m.wait_ids, removed)
                    tok, lp, forced = self.queue.popleft(), 0.0, True
                else:  # rule 5: accepted where the judge wrote it
                    g.think_tokens, self.thinking = len(g.tokens) - back, False
                    g.answer_start = len(g.tokens) + 1
        g.tokens.append(tok)
        g.forced.append(forced)
        g.logprobs.append(lp)
        if forced and len(g.tokens) == self.end_at:
            g.answer_start = len(g.tokens)
        if not forced and tok in r.stop:
            g.stopped = self.done = True
        if len(g.tokens) >= r.max_new:
            self.done = True
        if self.done and self.thinking:
            g.think_tokens = len(g.tokens)
        return tok, roll

    def _fork(self, tok: int, lp: float, r: Rules) -> None:
        """Before suppressing the end of thinking that budget b = num_waits accepts: if b is one of
        self.forks, a copy of this row under budget b takes `tok` (rule 5) and is kept in self.spawn
        and self.children."""
        b = self.gen.num_waits
        if b in self.forks:
            child = Row(copy.deepcopy(self.gen), b, True)
            self.spawn = (child, *child.advance(tok, lp, r))
            self.children[b] = child

    def _wait(self, before, wait, removed: str) -> None:
        """Suppress one end of thinking: queue the re-fed text and "Wait"; ban stops and openers for
        one token."""
        g = self.gen
        g.num_waits += 1
        g.suppressed_at.append(len(g.tokens) + len(before))
        g.removed.append(removed)
        self.queue = deque(list(before) + list(wait))
        self.fresh = True

    def _end(self, forced: list[int], after_marker: int) -> None:
        """End thinking by forcing `forced`, whose last `after_marker` ids follow the marker (the
        answer prefix)."""
        g = self.gen
        g.think_tokens, self.thinking, self.fresh = len(g.tokens), False, False
        self.queue = deque(forced)
        self.end_at = len(g.tokens) + len(forced) - after_marker
