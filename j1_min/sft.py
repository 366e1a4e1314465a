"""The SFT objective, its data beside its loss: a trace becomes token ids with the prompt masked out
(sft_example), examples become right-padded micro-batches (sft_batches), and the loss is the
next-token negative log-likelihood of the completion's tokens (sft_nll, sft_loss).

For one optimizer step over the sequences S (all micro-batches, all processes):

    L = −(1 / N) · Σ_{s ∈ S} Σ_{t ≥ n_prompt(s)} log p_θ(x_{s,t} | x_{s,<t}),
    N = Σ_{s ∈ S} (len(s) − n_prompt(s))

the cross-entropy of every completion token (the closing `<|im_end|>` included; the prompt and the
padding carry no loss), summed, divided by the step's number of target tokens, so gradient
accumulation and any number of processes give the update of one big batch (train_sft.py:train_step).
This is stage 1 of the J1 recipe (Chan et al. 2025, arXiv 2505.11875, sec. 3): supervised
fine-tuning on the teacher's traces, before RL.
"""
from __future__ import annotations

import torch

from .judge_format import END_OF_TURN, J1_MIN, encode_prompt
from .logprobs import selected_logprobs


def sft_example(tokenizer, record: dict, template=J1_MIN) -> tuple[list[int], int]:
    """(ids, n_prompt): the template's judge prompt, then the completion, then `<|im_end|>` (the
    completion is stored without it). Only the completion's first end of thinking (`</think>`)
    becomes the marker token; the rest is encoded as ordinary text, as in the prompt, so a
    completion cannot plant chat markers either. Targets are ids[n_prompt:]."""
    prompt = encode_prompt(tokenizer, record["question"], record["response_a"],
                           record["response_b"], template)
    c = record["completion"]
    # a stored end-of-turn token is dropped: it is appended below
    while c.rstrip().endswith(END_OF_TURN):
        s = c.rstrip()
        c = s[:-len(next(e for e in END_OF_TURN if s.endswith(e)))]
    end = template.think_end
    thinking, sep, answer = c.partition(end) if end else (c, "", "")
    ids = tokenizer.encode(thinking) + (tokenizer.marker_ids(end) + tokenizer.encode(answer) if sep
                                        else [])
    return prompt + ids + [tokenizer.eos_id], len(prompt)


def sft_batches(examples: list[tuple[list[int], int]], micro: int, pad_id: int):
    """Sort (ids, n_prompt) examples by length (shortest first; stable) and cut them into
    micro-batches, each right-padded to its longest: a list of (inputs, targets, mask), each (b, T),
    T = longest - 1. inputs = ids[:-1], targets = ids[1:], mask = 1.0 where the target is a
    completion token (ids[n_prompt:], the closing `<|im_end|>` included), 0.0 on the prompt and the
    padding."""
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


def sft_nll(model, inp, tgt, mask) -> torch.Tensor:
    """Summed next-token negative log-likelihood of the masked targets: -sum_t mask_t * log p(tgt_t
    | inp_<=t). inp, tgt, mask: (b, T). The log-probs are computed a chunk of positions at a time:
    (rows, length, vocab) logits at once do not fit in memory for a 152k vocabulary."""
    return -(selected_logprobs(model, inp, tgt) * mask).sum()


def sft_loss(model, examples, tok, device, micro: int = 16) -> float:
    """Mean next-token loss per target token over `examples` (prompt masked out): the held-out
    loss."""
    total, count = 0.0, 0
    for inp, tgt, mask in sft_batches(examples, micro, tok.token_id("<|endoftext|>") or 0):
        total += sft_nll(model, inp.to(device), tgt.to(device), mask.to(device)).item()
        count += int(mask.sum())
    return total / max(count, 1)
