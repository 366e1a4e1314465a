"""The judge's format: a template's prompt (j1_min/templates.py), the verdict parser, the verifiable
reward, rejection sampling.

J1 (Chan et al. 2025, arXiv 2505.11875, sec. 3) trains a pairwise judge that thinks inside `<think>
... </think>` and then answers `[[A]]` or `[[B]]` (the verdict convention of RewardBench's
generative judges and of RISE-Judge). Its SFT data are teacher traces kept only when their verdict
is right (rejection sampling) and its RL reward is 1 when the verdict matches the preference label.
Both rest on `parse_verdict`, so the parser is strict: a reward the format can fool would be
learned.
"""
from __future__ import annotations

import re

from . import templates
from .templates import Template

# the default template (j1_min/templates/j1_min.json, shown in README)
J1_MIN = templates.load(templates.DEFAULT)
THINK_START, THINK_END = "<think>", J1_MIN.think_end
# the prompt opens the judge's turn with this; the completion follows it
ASSISTANT_PREFIX = J1_MIN.assistant_prefix
WAIT = "Wait"  # s1's budget-forcing word; the synthetic traces' reflections start with it too
ANSWER_PREFIX = J1_MIN.answer_prefix  # forced after `</think>` when the thinking budget runs out
# the end-of-turn tokens of ChatML, Llama 3 and DeepSeek-R1(-distilled) models: the judge's turn
# ends at the first of them (parse_verdict); the sampler stops on the model's own (tok.stop_ids)
END_OF_TURN = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>",
               "<｜end▁of▁sentence｜>")
# a new turn opened inside the judge's answer (ChatML, Llama 3, DeepSeek): no verdict
NEW_TURN = ("<|im_start|>", "<|start_header_id|>", "<｜User｜>", "<｜Assistant｜>")
SYSTEM_PROMPT = J1_MIN.system
USER_TEMPLATE = J1_MIN.user


def judge_messages(question: str, response_a: str, response_b: str,
                   template: Template = J1_MIN) -> list[dict]:
    """The system and user messages of the judge prompt."""
    return template.messages(question, response_a, response_b)


def build_prompt(question: str, response_a: str, response_b: str, template: Template = J1_MIN,
                 chat_template: str | None = None, chat_tokens: tuple = ()) -> str:
    """The full judge prompt as text; it ends by opening the judge's turn (j1_min:
    `<|im_start|>assistant\\n<think>\\n`). chat_template and chat_tokens: the model's own chat
    template and special tokens (tok.chat_template, tok.chat_tokens), for a template that applies
    it."""
    return templates.prompt_text(template, question, response_a, response_b, chat_template,
                                 chat_tokens)


def encode_prompt(tokenizer, question: str, response_a: str, response_b: str,
                  template: Template = J1_MIN) -> list[int]:
    """`build_prompt` as token ids. Only the template's markers are special tokens; the question and
    responses are encoded with special tokens disabled, so `<|im_start|>` or `</think>` inside a
    response stays ordinary text."""
    return templates.prompt_ids(template, tokenizer, question, response_a, response_b)


# ------------------------------------------------------------------------------------------------
# verdict, reward

def _count(text: str, s: str) -> int:
    """Occurrences of s in text, overlapping ones included ("[[[" holds "[[" twice)."""
    return sum(text.startswith(s, i) for i in range(len(text))) if s else 0


def _common(strings, reverse=False) -> str:
    """The longest common prefix of strings (suffix with reverse=True): "[[" and "]]" of [[A]],
    [[B]], [[C]]."""
    out = ""
    for chars in zip(*(s[::-1] if reverse else s for s in strings)):
        if len(set(chars)) > 1:
            break
        out += chars[0]
    return out[::-1] if reverse else out


def _answer(completion, end: str | None) -> str | None:
    """The judge's answer: the text after the first `end` (the whole completion when end is None;
    None when the marker is missing or the completion is not text), up to the first end of turn."""
    if not isinstance(completion, str):
        return None
    answer = completion
    if end is not None:
        i = completion.find(end)
        if i < 0:
            return None
        answer = completion[i + len(end):]
    for eot in END_OF_TURN:
        answer = answer.split(eot, 1)[0]
    return answer


def parse_verdict(completion: str, template: Template = J1_MIN) -> str | None:
    """"A", "B", "tie" (where the template has a tie pattern) or None, from the judge's own
    generated text after the prompt (which ended with the template's assistant_prefix, e.g.
    `<think>\\n`).

    Rules (J1 sec. 3; RewardBench's `[[A]]`/`[[B]]` convention; no verdict the format can fake):
      1. Only the text after the FIRST end-of-thinking marker (`</think>`) is read (the sampler
         removes suppressed markers, so the first one is the accepted one). No marker -> None: a
         verdict inside the thinking never counts. A template without a thinking phase (think_end
         null) reads the whole turn.
      2. That answer ends at the first end-of-turn token (END_OF_TURN: `<|im_end|>`, `<|eot_id|>`,
         ...); text after it is not the judge's turn. Trailing whitespace is ignored.
      3. An answer that contains the thinking markers (the end marker and the assistant_prefix,
         stripped: `</think>`, `<think>`) or a turn opening (NEW_TURN: `<|im_start|>`, ...)
         (reopened thinking, a fake new turn) -> None.
      4. The answer must hold exactly one of the template's verdict patterns, once, and the
         patterns' common opening and closing (`[[`, `]]`) once each. Two verdicts, none, one twice,
         `[[C]]` where the template has no tie, `[[ A ]]` or `[[a]]` -> None.
    The completion must be the judge's output only: the judged responses are in the prompt and never
    reach here.
    """
    end = template.think_end
    answer = _answer(completion, end)
    if answer is None:
        return None
    markers = list(NEW_TURN) + ([end, template.assistant_prefix.strip()] if end else [])
    if any(m and m in answer for m in markers):
        return None
    pats = [p for _, p in template.verdicts]
    found = [v for v, p in template.verdicts if _count(answer, p) == 1]
    if sum(_count(answer, p) for p in pats) != 1 or any(_count(answer, x) != 1 for x in (
            _common(pats), _common(pats, reverse=True)) if x):
        return None
    return found[0]


def mt_bench_verdict(completion: str, template: Template) -> str | None:
    """MT-Bench's pair-v2 verdict rule (FastChat, fastchat/llm_judge/common.py, run_judge_pair):
    "[[A]]" anywhere in the judgment -> A, else "[[B]]" -> B, else "[[C]]" -> tie, else no verdict;
    with this template's patterns, in the order A, B, tie. What counts as the judgment: the text
    after the accepted end of thinking where the template has one (no marker -> None, as in
    parse_verdict), up to the end of turn. A template without a thinking phase reads the whole turn,
    less thinking the model did anyway (a Qwen3 whose chat template has no enable_thinking switch,
    an R1-distilled model whose generation prompt opens `<think>`): a turn holding `</think>` is
    read after its first one. Used for judging under the MT-Bench templates, to compare with
    published numbers; rewards stay strict (parse_verdict)."""
    end = template.think_end
    if end is None and isinstance(completion, str) and THINK_END in completion:
        end = THINK_END  # thinking the model did anyway: its verdict follows it
    answer = _answer(completion, end)
    return None if answer is None else next((v for v, p in template.verdicts if p in answer), None)


def judge_verdict(completion: str, template: Template = J1_MIN) -> str | None:
    """The verdict of a judgment under the template's verdict_rule: parse_verdict ("strict") or
    mt_bench_verdict ("mt_bench"). For judging and evaluation only: rewards and rejection sampling
    use parse_verdict whatever the template says."""
    if template.verdict_rule == "mt_bench":
        return mt_bench_verdict(completion, template)
    return parse_verdict(completion, template)


def _check_label(label) -> str:
    if label not in ("A", "B"):
        raise ValueError(f"label must be 'A' or 'B', got {label!r}")
    return label


def reward(completion: str, label: str, format_penalty: float = 0.0,
           template: Template = J1_MIN) -> float:
    """The verifiable reward of J1's RL phase (sec. 3.2): r = 1 if parse_verdict(completion) ==
    label, else 0 (a tie is not the label: 0). An unparseable completion gets -format_penalty (0 by
    default, so it scores like a wrong verdict)."""
    label = _check_label(label)
    verdict = parse_verdict(completion, template)
    if verdict is None:
        return -float(format_penalty)
    return 1.0 if verdict == label else 0.0


def swap_label(label: str) -> str:
    """The label of the same pair with the responses swapped."""
    return "B" if _check_label(label) == "A" else "A"


def position_consistent_reward(completion_ab: str, completion_ba: str, label: str,
                               format_penalty: float = 0.0, template: Template = J1_MIN) -> float:
    """Meta's J1 positional-consistency reward (Whitehouse et al. 2025, arXiv 2505.10320, sec. 2.3),
    an option for GRPO: the pair is judged in both orders and r = 1 only if both verdicts are right
    (label is for order AB, so order BA must answer swap_label(label)); else 0, or -format_penalty
    if either verdict is unparseable."""
    va, vb = parse_verdict(completion_ab, template), parse_verdict(completion_ba, template)
    if va is None or vb is None:
        return -float(format_penalty)
    return 1.0 if va == _check_label(label) and vb == swap_label(label) else 0.0


def count_reflections(completion: str, template: Template = J1_MIN) -> int:
    """Number of reflections: occurrences of the word `Wait` in the thinking (before the first
    `</think>`; the whole turn for a template without a thinking phase)."""
    thinking = completion.split(template.think_end, 1)[0] if template.think_end else completion
    return len(re.findall(r"(?<![A-Za-z])Wait\b", thinking))


# ------------------------------------------------------------------------------------------------
# rejection sampling

def select_traces(item: dict, completions: list[str], max_keep: int, source: str,
                  template: Template = J1_MIN) -> tuple[list[dict], int]:
    """Rejection sampling (J1 sec. 3.1): of K completions drawn for one item, keep those whose
    verdict parses and equals item["label"], dropping exact duplicates, at most max_keep. Returns
    (trace records, number correct).

    A trace record is the item's fields plus completion, verdict, has_reflection, num_reflections,
    source."""
    correct = [c for c in completions if parse_verdict(c, template) == item["label"]]
    kept, seen = [], set()
    for c in correct:
        if len(kept) >= max_keep:
            break
        if c in seen:
            continue
        seen.add(c)
        n = count_reflections(c, template)
        kept.append({**item, "completion": c, "verdict": item["label"], "has_reflection": n > 0,
                     "num_reflections": n, "source": source})
    return kept, len(correct)


# ------------------------------------------------------------------------------------------------
# generation

def forcing_kwargs(tokenizer, budget: int = 0, max_think_tokens: int | None = None,
                   wait_text: str = WAIT, template: Template = J1_MIN) -> dict:
    """The sampler arguments that make a judge of this template (sampling.generate): stop at the end
    of turn, find the template's end of thinking in the text (one added token or several ordinary
    ones), "Wait" for s1 budget forcing, and the template's answer prefix forced after a cut-off
    thinking. Raises ValueError naming the template if the tokenizer cannot write its marker, or if
    forcing is asked of a template without thinking."""
    kw = dict(stop_ids=list(getattr(tokenizer, "stop_ids", None) or []), tokenizer=tokenizer,
              think_end=template.think_end, wait=wait_text, budget=budget,
              max_think_tokens=max_think_tokens, answer_prefix=template.answer_prefix)
    if template.think_end is None:
        if budget or max_think_tokens is not None:
            raise ValueError(f"template {template.name} has no end-of-thinking marker (think_end), "
                             "so there is nothing to force: budget forcing and a thinking cap need "
                             "a template with one")
        kw["wait"] = None
    else:
        from .forcing import marker
        try:  # checks the marker (and caches what generate needs)
            marker(tokenizer, template.think_end, wait_text, template.answer_prefix or "")
        except ValueError as e:
            raise ValueError(f"template {template.name}: {e}") from None
    if not kw["stop_ids"]:
        raise ValueError("the tokenizer has no end-of-turn token: the model's eos_token_id "
                         "(generation_config.json or config.json) is needed to stop the judge")
    return kw


def completion_text(tokenizer, gen) -> str:
    """The judge's text of one sampling.Generation, without its final stop token."""
    tokens = gen.tokens[:-1] if gen.stopped else gen.tokens
    return tokenizer.decode(tokens)
