"""Specifications for j1_min/sft.py: a trace as token ids with the prompt masked out, and its
micro-batches."""
from __future__ import annotations

import pytest
import torch

from j1_min.judge_format import build_prompt, encode_prompt
from j1_min.sft import sft_batches, sft_example
from j1_min.tokenizer import train_bpe

J1 = {"id": "x1", "question": "Q?", "response_a": "ra", "response_b": "rb", "label": "A",
      "note": "kept"}


@pytest.fixture(scope="module")
def tok():
    return train_bpe([build_prompt("Q?", "ra", "rb") + "x\n</think>\n[[A]]"] * 5, 300)


def test_sft_example_is_prompt_then_completion_then_end_of_turn(tok):
    rec = {**J1, "completion": "So A is right.\n</think>\n[[A]]"}
    ids, n_prompt = sft_example(tok, rec)
    assert ids[:n_prompt] == encode_prompt(tok, "Q?", "ra", "rb") and ids[-1] == tok.eos_id
    assert tok.decode(ids[n_prompt:]) == rec["completion"] + "<|im_end|>"
    assert sft_example(tok, {**rec,
                             "completion": rec["completion"] + "<|im_end|>\n"}) == (ids, n_prompt)


def test_sft_example_makes_only_the_first_end_marker_special(tok):
    rec = {**J1, "completion": "a <|im_start|> b\n</think>\n[[A]] </think> <think>"}
    ids, n_prompt = sft_example(tok, rec)
    tail = ids[n_prompt:]
    assert tail.count(tok.token_id("</think>")) == 1 and tail.count(tok.token_id("<think>")) == 0
    assert tail.count(tok.token_id("<|im_start|>")) == 0 and tail.count(tok.eos_id) == 1


def test_sft_batches_shift_pad_and_mask_the_prompt():
    examples = [([1, 2, 3, 4, 5], 2), ([6, 7, 8], 1), ([9, 10, 11, 12], 3)]
    batches = sft_batches(examples, micro=2, pad_id=0)
    # shortest first, padded to the micro-batch's longest
    assert [b[0].shape for b in batches] == [(2, 3), (1, 4)]
    inp, tgt, mask = batches[0]
    assert inp.tolist() == [[6, 7, 0], [9, 10, 11]] and tgt.tolist() == [[7, 8, 0], [10, 11, 12]]
    # targets ids[n_prompt:] only; padding never counts
    assert mask.tolist() == [[1, 1, 0], [0, 0, 1]]
    total = sum(m.sum() for _, _, m in batches)
    assert total == sum(len(ids) - p
                        for ids, p in examples) and batches[1][2].tolist() == [[0, 1, 1, 1]]
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.float32
