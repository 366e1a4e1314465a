"""Batched, KV-cached generation with s1 budget forcing (Simple Test-Time Scaling).

    gens = generate(model, prompts, max_new_tokens, temperature=0.8, top_p=0.95, stop_ids=[eos],
                    seed=0, tokenizer=tok, think_end="</think>", wait="Wait", budget=2,
                    max_think_tokens=1024, answer_prefix="\nFinal verdict:")

The loop (gpt-fast / nanochat): dedupe and prefill the prompts once, copy each prompt's cache to its
rows, then one batched forward of one token per row per step, logits for that position only. Each
row keeps a tiny Python state (forcing.Row: thinking or answering, "Wait"s spent, a queue of forced
tokens); nothing in a step grows with the sequence length. Rows that finish are dropped from the
batch and the cache.

Budget forcing follows s1 (Muennighoff et al. 2025, "s1: Simple test-time scaling", sec. 3.1;
simplescaling/s1): an end of thinking (the marker in the text, or a stop token) is suppressed and
"Wait" forced up to `budget` times, and the marker (plus an answer prefix) is forced when the
thinking budget `max_think_tokens` is spent. The rules are written out once, in forcing.Row.advance.
"""
from __future__ import annotations

import copy
import hashlib
import random
from array import array
from dataclasses import dataclass, field

import torch

from .forcing import Row, Rules, marker as prepare_marker
from .logprobs import token_logprobs

# prompt tokens per prefill forward: bounds the (rows, 1, T, S) mask and activations
PREFILL_CHUNK = 512


@dataclass
class Generation:
    """One row's output. tokens/forced/logprobs have the same length; only `.tokens` counts for
    max_new_tokens."""
    # new tokens, forced ones included, suppressed markers not
    tokens: list[int] = field(default_factory=list)
    # True where the engine inserted the token ("Wait", marker, ...)
    forced: list[bool] = field(default_factory=list)
    # log softmax(logits / T)[token]; 0.0 if forced
    logprobs: list[float] = field(default_factory=list)
    num_waits: int = 0  # end-of-thinking markers suppressed (= "Wait"s forced)
    # index in .tokens of each forced "Wait" (an end was there)
    suppressed_at: list[int] = field(default_factory=list)
    # the text removed there: the marker (and text fused after it in its token), or the stop token
    removed: list[str] = field(default_factory=list)
    # how many of .tokens precede the end-of-thinking marker (all, if thinking never ended)
    think_tokens: int = 0
    # index in .tokens just past the accepted/forced marker; 0 without think_end; None if thinking
    # never ended (no verdict may be read from such a row)
    answer_start: int | None = None
    forced_end: bool = False  # max_think_tokens was reached and the marker was forced
    # the row ended on one of stop_ids (the stop token is the last of .tokens)
    stopped: bool = False


def process_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                   top_p: float = 1.0) -> torch.Tensor:
    """The logits the sampler draws from, in float32: temperature, then top-k, then top-p, as
    transformers applies them (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper); removed
    tokens get -inf.

        z = logits / T                     (T = 0, greedy, leaves the logits unscaled)
        top-k: z_i = -inf where z_i < (k-th largest z)          (ties with the k-th value are kept)
        top-p: sort ascending, c = cumsum(softmax(z)); drop the tokens with c <= 1 - p
                                                                (the largest is always kept)

    The sampler draws from softmax of this; the log-probabilities it reports are under the
    temperature alone (token_logprobs), as TRL and OpenRLHF train on them. logits: (..., V).
    """
    z = logits.float()
    if temperature > 0 and temperature != 1.0:
        z = z / temperature
    V = z.shape[-1]
    if 0 < top_k < V:
        kth = torch.topk(z, top_k, dim=-1).values[..., -1:]  # (..., 1)
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p < 1.0:
        sorted_z, order = torch.sort(z, dim=-1, descending=False)
        remove = sorted_z.softmax(-1).cumsum(-1) <= (1 - top_p)  # (..., V) in ascending order
        remove[..., -1:] = False  # keep at least one token
        z = z.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return z


def sample(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
           uniforms: torch.Tensor | None, ban: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Draw one token per row: argmax at temperature 0 (the first of equal maxima), else inverse-CDF
    sampling of softmax(process_logits(...)) with one uniform in [0, 1) per row. logits (B, V),
    uniforms (B,) float64. ban: (rows (R,), ids (K,)): those ids are never drawn in those rows (s1's
    min_tokens after a "Wait"). Returns tokens (B,) and their log-probabilities (B,) under the
    temperature alone (token_logprobs; at temperature 0, of the unscaled logits): a ban, like top-k
    and top-p, shapes only the draw."""
    draw = logits
    if ban is not None:
        draw = logits.clone()
        draw[ban[0][:, None], ban[1][None, :]] = float("-inf")
    if temperature == 0:
        tok = draw.argmax(-1)
    else:
        logp = process_logits(draw, temperature, top_k, top_p).log_softmax(-1)  # (B, V)
        # (B, V), float64 so rounding never moves probability mass visibly
        cdf = logp.exp().double().cumsum(-1)
        total = cdf[:, -1:]
        # first index with cdf > u * total
        tok = torch.searchsorted(cdf, uniforms[:, None] * total, right=True)
        # the last token with p > 0 (guards u * total rounding to total)
        last = (cdf < total).sum(-1, keepdim=True)
        tok = torch.minimum(tok, last).squeeze(-1)
    return tok, token_logprobs(logits, tok, temperature)


def row_seed(seed: int, prompt: list[int], stream: int) -> int:
    """The random stream of one row: a hash of (seed, the prompt's tokens, the row's stream number).
    So a row's samples do not depend on the other rows of the batch, nor on its index in the
    batch."""
    h = hashlib.blake2b(f"{seed}:{stream}:".encode() + array("q", prompt).tobytes(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def _check_ids(name: str, ids, vocab: int) -> list[int]:
    ids = [int(t) for t in ids]
    bad = [t for t in ids if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"{name}: token id {bad[0]} is outside the model's vocabulary [0, "
                         f"{vocab})")
    return ids


def _prefill(model, prompts: list[list[int]], max_len: int, device, capacity: int = 0):
    """Prefill the prompts (right-padded, in chunks of PREFILL_CHUNK positions); return
    last-position logits (U, V) and the cache (room for `capacity` rows) with each row's length set
    to its true prompt length."""
    U, lens = len(prompts), [len(p) for p in prompts]
    T = max(lens)
    ids = torch.zeros(U, T, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, :len(p)] = torch.tensor(p, dtype=torch.long)
    ids = ids.to(device)
    cache = model.new_cache(U, max_len, capacity)
    last = [None] * U
    for c0 in range(0, T, PREFILL_CHUNK):
        h = model.hidden_states(ids[:, c0:c0 + PREFILL_CHUNK], cache)  # (U, chunk, hidden)
        for i, n in enumerate(lens):
            if c0 < n <= c0 + PREFILL_CHUNK:
                last[i] = h[i, n - 1 - c0]
    # padding slots are overwritten later
    cache.lengths = torch.tensor(lens, dtype=torch.long, device=device)
    return model.lm_head(torch.stack(last)), cache  # (U, V)


@torch.inference_mode()
def generate(model, prompts: list[list[int]], max_new_tokens: int, *, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, stop_ids=(), seed: int | None = None,
             streams: list[int] | None = None, tokenizer=None, think_end: str | None = None,
             wait: str | None = None, budget: int | list[int] = 0,
             max_think_tokens: int | None = None,
             answer_prefix: str | None = None) -> list[Generation]:
    """Generate up to max_new_tokens new tokens for each prompt (a list of token-id lists); one
    Generation each.

    temperature 0 is greedy (argmax, first of equal maxima); top_k=0 and top_p=1 are off. A row ends
    after emitting one of stop_ids (kept in .tokens); forced tokens never count as stops.
    seed: the same seed, prompt and stream give the same samples, whatever else is in the batch (see
    row_seed); seed=None draws a base seed from torch's global generator. streams: one number per
    row; by default the k-th repeat of a prompt in this call is stream k. Rows with the same prompt
    and stream draw the same random numbers (common random numbers: give every budget of one sample
    the same stream, and they differ only by forcing).

    Budget forcing (s1), when think_end (the marker's text, e.g. "</think>") and the tokenizer are
    given: every row thinks from its first token; an end of thinking is suppressed and `wait` forced
    `budget` times (an int, or one per prompt), then accepted; max_think_tokens forces the end and
    answer_prefix. The rules: forcing.Row.advance. Rows with the same prompt and stream (any stream
    when greedy) are decoded once, by the row with the largest budget, which forks a copy of itself
    (cache rows and random stream) at each smaller budget's accepted end of thinking: a budget sweep
    costs about its largest budget, and each row's result is the one it would have alone.
    max_new_tokens bounds len(.tokens), forced tokens included; a forced sequence is cut at that
    limit.

    All prompts form one batch: the KV cache holds a row (longest prompt + max_new_tokens positions)
    for each row that decodes, forked ones included, so split very large prompt sets into several
    calls (the per-row seeds make the split invisible in the samples).

    Raises ValueError for an empty prompt list or prompt, a prompt whose length plus max_new_tokens
    exceeds model.config.max_position_embeddings, token ids outside the vocabulary, and inconsistent
    options.
    """
    V = model.config.vocab_size
    prompts, budgets = _check_args(model.config, prompts, max_new_tokens, temperature, top_k, top_p,
                                   streams, budget, max_think_tokens)
    mark = _check_marker(tokenizer, think_end, wait, answer_prefix, any(budgets), max_think_tokens,
                         V)
    rules = Rules(max_new_tokens, frozenset(_check_ids("stop_ids", stop_ids, V)), max_think_tokens,
                  mark)
    rows = [Row(Generation(answer_start=None if mark else 0), b, mark is not None) for b in budgets]
    if max_new_tokens == 0:
        return [r.gen for r in rows]
    _decode(model, prompts, rows, rules, temperature, top_k, top_p, seed, streams)
    return [r.gen for r in rows]


def _check_args(cfg, prompts, max_new_tokens, temperature, top_k, top_p, streams, budget,
                max_think_tokens):
    """generate's numbers and prompts checked, the first bad one a ValueError: (prompts as lists of
    ints, one budget per prompt)."""
    V, ctx = cfg.vocab_size, cfg.max_position_embeddings
    if not prompts:
        raise ValueError("generate: the prompt list is empty")
    if max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
    if not (temperature >= 0 and top_k >= 0 and 0 < top_p <= 1):  # (NaN fails every comparison)
        raise ValueError(f"generate: need temperature >= 0, top_k >= 0, 0 < top_p <= 1 "
                         f"(got {temperature}, {top_k}, {top_p})")
    prompts = [_check_ids(f"prompt {i}", p, V) for i, p in enumerate(prompts)]
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"generate: prompt {i} is empty (a row needs at least one token to "
                             "condition on)")
        if len(p) + max_new_tokens > ctx:
            raise ValueError(f"generate: prompt {i} has {len(p)} tokens; with "
                             f"max_new_tokens={max_new_tokens} it exceeds the model's context of "
                             f"{ctx} (max_position_embeddings)")
    budgets = list(budget) if isinstance(budget, (list, tuple)) else [budget] * len(prompts)
    if len(budgets) != len(prompts):
        raise ValueError(f"generate: budget has {len(budgets)} entries for {len(prompts)} prompts")
    if streams is not None and len(streams) != len(prompts):
        raise ValueError(f"generate: streams has {len(streams)} entries for {len(prompts)} prompts")
    if any(b < 0 for b in budgets):
        raise ValueError(f"generate: budget must be >= 0, got {min(budgets)}")
    if max_think_tokens is not None and max_think_tokens < 0:
        raise ValueError(f"generate: max_think_tokens must be >= 0 or None, got {max_think_tokens}")
    return prompts, budgets


def _check_marker(tokenizer, think_end, wait, answer_prefix, forcing: bool, max_think_tokens,
                  V: int):
    """The end-of-thinking marker the forcing rules use (None without think_end), its options
    checked: forcing (a budget > 0), max_think_tokens and answer_prefix need think_end, think_end
    needs the tokenizer, a budget needs wait, and every id the marker forces must be in the
    vocabulary."""
    if think_end is None:
        if forcing or max_think_tokens is not None or answer_prefix is not None:
            raise ValueError("generate: budget, max_think_tokens and answer_prefix need think_end "
                             "(the marker)")
        return None
    if tokenizer is None:
        raise ValueError("generate: think_end needs the tokenizer (the marker is found in the "
                         "text)")
    if forcing and not wait:
        raise ValueError("generate: budget > 0 needs wait, the text forced after a suppressed end "
                         "of thinking")
    mark = prepare_marker(tokenizer, think_end, wait or "", answer_prefix or "")
    for name, ids in (("think_end", mark.ids), ("wait", mark.wait_ids),
                      ("answer_prefix", mark.answer_ids)):
        _check_ids(name, ids, V)
    return mark


def families(prompts, rows, streams, temperature) -> list[int]:
    """The row that decodes for each row (its leader): rows with the same prompt and the same random
    stream (any stream when greedy) write the same tokens until forcing sets them apart, so one of
    them, the one with the largest budget, decodes for all and forks at each smaller budget's end of
    thinking (forcing.Row). bench/sweep.py swaps it for one that forks nothing, to time a sweep both
    ways."""
    keys = [(tuple(p), k if temperature > 0 else 0) for p, k in zip(prompts, streams)]
    leader: dict[tuple, int] = {}
    for i, key in enumerate(keys):
        j = leader.setdefault(key, i)
        if rows[i].budget > rows[j].budget:
            leader[key] = i
    lead_of = [leader[key] for key in keys]
    for i, j in enumerate(lead_of):
        if rows[i].budget < rows[j].budget:
            rows[j].forks.add(rows[i].budget)
    return lead_of


def _decode(model, prompts, rows, rules, temperature, top_k, top_p, seed, streams) -> None:
    """The loop: prefill once per distinct prompt, then one batched single-token forward per step.
    Rows that would write the same tokens are decoded once (families); the others get copies of
    their results at the end."""
    device = model.lm_head.weight.device
    streams = streams or _repeat_index(prompts)
    lead_of = families(prompts, rows, streams, temperature)
    leaders = sorted(set(lead_of))

    # Identical prompts (GRPO's G samples of one prompt) are prefilled once; each row gets a copy of
    # the cache.
    unique: dict[tuple, int] = {}
    row_u = [unique.setdefault(tuple(prompts[i]), len(unique)) for i in leaders]
    # forked rows answer briefly: the cache grows if they outnumber this
    room = len(leaders) + len(leaders) // 4
    logits, cache = _prefill(model, [list(k) for k in unique],
                             max(map(len, prompts)) + rules.max_new, device, room)
    cache.reorder(row_u)  # a prompt's cache row copied to each of its rows
    logits = logits[torch.tensor(row_u, device=device)]  # (B, V)
    batch = [rows[i] for i in leaders]  # the rows in the batch, in cache order
    rngs = [None] * len(leaders)  # their random streams
    if temperature > 0:
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)))
        rngs = [random.Random(row_seed(seed, prompts[i], streams[i])) for i in leaders]
    # the ids a row may not sample right after a forced "Wait": stops and marker openers
    banned = None
    if rules.marker is not None:
        banned = torch.tensor(sorted(rules.stop | set(rules.marker.openers)), dtype=torch.long,
                              device=device)

    while True:
        u = None
        if temperature > 0:
            u = torch.tensor([g.random() for g in rngs], dtype=torch.float64, device=device)
        fresh = [i for i, row in enumerate(batch) if row.fresh]
        ban = (torch.tensor(fresh, device=device), banned) if fresh and len(banned) else None
        tok, lp = sample(logits, temperature, top_k, top_p, u, ban)  # (B,), (B,)
        went = _advance(batch, rngs, tok.tolist(), lp.tolist(), rules)
        if not went:
            break
        went = _arrange(went, batch)
        # finished rows leave, forked ones get a copy: one row's copy each
        cache.reorder([w[0] for w in went])
        batch, rngs = [w[1] for w in went], [w[2] for w in went]
        feed, rolls = [w[3] for w in went], [w[4] for w in went]
        # a suppressed end of thinking: its tokens leave the cache (their slots are overwritten
        # later)
        if any(rolls):
            cache.lengths -= torch.tensor(rolls, dtype=torch.long, device=device)
        x = torch.tensor(feed, dtype=torch.long, device=device)[:, None]  # (B, 1)
        logits = model.lm_head(model.hidden_states(x, cache)[:, -1])  # (B, V)

    # the rows that rode on another: a copy of the result they would have had
    for i, j in enumerate(lead_of):
        if i != j:
            rows[i].gen = copy.deepcopy(rows[j].children.get(rows[i].budget, rows[j]).gen)


def _repeat_index(prompts) -> list[int]:
    """The k-th repeat of a prompt in this call is stream k: each row's default random stream."""
    index, seen = [], {}
    for p in prompts:
        index.append(seen.get(tuple(p), 0))
        seen[tuple(p)] = index[-1] + 1
    return index


def _advance(batch, rngs, tokens: list[int], logprobs: list[float], rules) -> list[tuple]:
    """Each row takes its sampled token (forcing.Row.advance); the rows that go on, as (cache row it
    continues from, row, random stream, token to feed, positions to roll back). A row that forked
    brings its child, which continues from the same cache row with a copy of its random stream."""
    went = []
    for i, (row, rng, t, lp) in enumerate(zip(batch, rngs, tokens, logprobs)):
        t, roll = row.advance(t, lp, rules)
        if not row.done:
            went.append((i, row, rng, t, roll))
        if row.spawn is not None:
            child, t_child, roll_child = row.spawn
            row.spawn = None
            if not child.done:
                went.append((i, child, _copy_rng(rng), t_child, roll_child))
    return went


def _arrange(went: list[tuple], batch: list) -> list[tuple]:
    """The next batch's order: a row that goes on keeps its cache row where it can; the rows that
    cannot (children, rows past the new batch size) fill the slots of rows that finished. went[k][0]
    is the cache row it copies."""
    m = len(went)
    placed = [None] * m
    extra = []
    for w in went:
        if w[1] is batch[w[0]] and w[0] < m:
            placed[w[0]] = w
        else:
            extra.append(w)
    holes = [j for j in range(m) if placed[j] is None]
    for j, w in zip(holes, extra):
        placed[j] = w
    return placed


def _copy_rng(rng: random.Random | None) -> random.Random | None:
    if rng is None:
        return None
    twin = random.Random()
    twin.setstate(rng.getstate())
    return twin
