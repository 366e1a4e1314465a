"""The judge's format: the J1 pairwise prompt, the verdict parser, the verifiable reward, rejection sampling.

J1 (Chan et al. 2025, arXiv 2505.11875, sec. 3) trains a pairwise judge that thinks inside `<think> ... </think>` and
then answers `[[A]]` or `[[B]]` (the verdict convention of RewardBench's generative judges and of RISE-Judge). Its
SFT data are teacher traces kept only when their verdict is right (rejection sampling) and its RL reward is 1 when
the verdict matches the preference label. Both rest on `parse_verdict`, so the parser is strict: a reward the format can fool would be learned.
"""
from __future__ import annotations

import re

from .tokenizer import chat_text

THINK_START, THINK_END = "<think>", "</think>"
ASSISTANT_PREFIX = THINK_START + "\n"  # the prompt opens the judge's turn with this; the completion follows it
WAIT = "Wait"  # s1's budget-forcing word; the synthetic traces' reflections start with it too
ANSWER_PREFIX = "\n[["  # forced after `</think>` when the thinking budget runs out, so a verdict still comes
END_OF_TURN = ("<|im_end|>", "<|endoftext|>")

# The one prompt template (shown in README). A condensed form of J1's pairwise instruction: impartial, no position
# bias, think first, then exactly one verdict. No few-shot turns.
SYSTEM_PROMPT = (
    "You are an impartial judge. Decide which response to the question is better (a right answer beats a wrong "
    "one; their order must not matter). Think first, then close your thinking and give your verdict: [[A]] if "
    "Response A is better, [[B]] if Response B is better.")
USER_TEMPLATE = ("[Question]\n{question}\n\n[Response A]\n{response_a}\n[End of Response A]\n\n"
                 "[Response B]\n{response_b}\n[End of Response B]")


def judge_messages(question: str, response_a: str, response_b: str) -> list[dict]:
    """The system and user messages of the judge prompt."""
    user = USER_TEMPLATE.format(question=question, response_a=response_a, response_b=response_b)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def build_prompt(question: str, response_a: str, response_b: str) -> str:
    """The full ChatML judge prompt as text; it ends by opening the judge's turn:
    `<|im_start|>assistant\\n<think>\\n`."""
    return chat_text(judge_messages(question, response_a, response_b), ASSISTANT_PREFIX)


def encode_prompt(tokenizer, question: str, response_a: str, response_b: str) -> list[int]:
    """`build_prompt` as token ids. Only the template's markers are special tokens; the question and responses are
    encoded with special tokens disabled, so `<|im_start|>` or `</think>` inside a response stays ordinary text."""
    return tokenizer.chat_ids(judge_messages(question, response_a, response_b), ASSISTANT_PREFIX)


# ------------------------------------------------------------------------------------------------ verdict, reward

_TAG = re.compile(r"\[\[(.*?)\]\]", re.S)


def parse_verdict(completion: str) -> str | None:
    """"A", "B" or None, from the judge's own generated text after the prompt (which ended with `<think>\\n`).

    Rules (J1 sec. 3; RewardBench's `[[A]]`/`[[B]]` convention; no verdict the format can fake):
      1. Only the text after the FIRST `</think>` is read (the sampler removes suppressed markers, so the first one
         is the accepted one). No `</think>` -> None: a verdict inside the thinking never counts.
      2. That answer ends at the first end-of-turn token (`<|im_end|>`, `<|endoftext|>`); text after it is not the
         judge's turn. Trailing whitespace is ignored.
      3. An answer that contains `<think>`, `</think>` or `<|im_start|>` (reopened thinking, a fake new turn) -> None.
      4. The answer must hold exactly one `[[...]]` tag and it must be `[[A]]` or `[[B]]`. Both, neither, twice,
         `[[C]]`, `[[ A ]]` or `[[a]]` -> None.
    The completion must be the judge's output only: the judged responses are in the prompt and never reach here.
    """
    if not isinstance(completion, str):
        return None
    i = completion.find(THINK_END)
    if i < 0:
        return None
    answer = completion[i + len(THINK_END):]
    for eot in END_OF_TURN:
        answer = answer.split(eot, 1)[0]
    if any(m in answer for m in (THINK_START, THINK_END, "<|im_start|>")):
        return None
    tags = _TAG.findall(answer)
    if len(tags) != 1 or tags[0] not in ("A", "B") or answer.count("[[") != 1 or answer.count("]]") != 1:
        return None
    return tags[0]


def _check_label(label) -> str:
    if label not in ("A", "B"):
        raise ValueError(f"label must be 'A' or 'B', got {label!r}")
    return label


def reward(completion: str, label: str, format_penalty: float = 0.0) -> float:
    """The verifiable reward of J1's RL phase (sec. 3.2): r = 1 if parse_verdict(completion) == label, else 0.
    An unparseable completion gets -format_penalty (0 by default, so it scores like a wrong verdict)."""
    label = _check_label(label)
    verdict = parse_verdict(completion)
    if verdict is None:
        return -float(format_penalty)
    return 1.0 if verdict == label else 0.0


def swap_label(label: str) -> str:
    """The label of the same pair with the responses swapped."""
    return "B" if _check_label(label) == "A" else "A"


def position_consistent_reward(completion_ab: str, completion_ba: str, label: str,
                               format_penalty: float = 0.0) -> float:
    """Meta's J1 positional-consistency reward (Whitehouse et al. 2025, arXiv 2505.10320, sec. 2.3), an option for
    GRPO: the pair is judged in both orders and r = 1 only if both verdicts are right (label is for order AB, so
    order BA must answer swap_label(label)); else 0, or -format_penalty if either verdict is unparseable."""
    va, vb = parse_verdict(completion_ab), parse_verdict(completion_ba)
    if va is None or vb is None:
        return -float(format_penalty)
    return 1.0 if va == _check_label(label) and vb == swap_label(label) else 0.0


def count_reflections(completion: str) -> int:
    """Number of reflections: occurrences of the word `Wait` in the thinking (before the first `</think>`)."""
    thinking = completion.split(THINK_END, 1)[0]
    return len(re.findall(r"(?<![A-Za-z])Wait\b", thinking))


# ------------------------------------------------------------------------------------------------ rejection sampling

def select_traces(item: dict, completions: list[str], max_keep: int, source: str) -> tuple[list[dict], int]:
    """Rejection sampling (J1 sec. 3.1): of K completions drawn for one item, keep those whose verdict parses and
    equals item["label"], dropping exact duplicates, at most max_keep. Returns (trace records, number correct).

    A trace record is the item's fields plus completion, verdict, has_reflection, num_reflections, source."""
    correct = [c for c in completions if parse_verdict(c) == item["label"]]
    kept, seen = [], set()
    for c in correct:
        if len(kept) >= max_keep:
            break
        if c in seen:
            continue
        seen.add(c)
        n = count_reflections(c)
        kept.append({**item, "completion": c, "verdict": item["label"], "has_reflection": n > 0,
                     "num_reflections": n, "source": source})
    return kept, len(correct)


# ------------------------------------------------------------------------------------------------ generation

def forcing_kwargs(tokenizer, budget: int = 0, max_think_tokens: int | None = None, wait_text: str = WAIT) -> dict:
    """The sampler arguments that make a judge of this format (sampling.generate): stop at the end of turn, find
    `</think>` in the text (one added token or several ordinary ones), "Wait" for s1 budget forcing, and the answer
    prefix forced after a cut-off thinking. Raises ValueError if the tokenizer cannot write `</think>` at all."""
    from .forcing import marker
    marker(tokenizer, THINK_END, wait_text, ANSWER_PREFIX)  # checks the marker (and caches what generate needs)
    return dict(stop_ids=[tokenizer.eos_id], tokenizer=tokenizer, think_end=THINK_END, wait=wait_text,
                budget=budget, max_think_tokens=max_think_tokens, answer_prefix=ANSWER_PREFIX)


def completion_text(tokenizer, gen) -> str:
    """The judge's text of one sampling.Generation, without its final stop token."""
    tokens = gen.tokens[:-1] if gen.stopped else gen.tokens
    return tokenizer.decode(tokens)
