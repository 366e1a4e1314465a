"""Judge templates: the prompt a judge is asked with and the verdicts it answers with, as data.

A template is a small JSON file (the shipped ones are in j1_min/templates/, one per name):
  name, description  what it is and, where its wording matters (a judge was trained on it), where it
                     comes from;
  chat               "chatml": our hand-written ChatML (tokenizer.chat_ids), or "model": the chat
                     template of the model's own folder (tokenizer_config.json's chat_template),
                     applied by transformers' apply_chat_template;
  system, user       the system text, and the user text with {question}, {response_a} and
                     {response_b};
  assistant_prefix   what opens the judge's turn ("<think>\\n"; "" for none);
  think_end          the end-of-thinking marker ("</think>"), or null for a judge that does not
                     think first: then its whole turn is its answer, and budget forcing is refused;
  answer_prefix      forced after the marker when a thinking cap cuts the thinking ("\\n[["), or
                     null;
  verdicts           {"A": "[[A]]", "B": "[[B]]"} and optionally "tie": "[[C]]";
  verdict_rule       how judging reads the verdict (optional, default "strict"): "strict" is
                     judge_format.parse_verdict (exactly one verdict after the accepted end of
                     thinking), "mt_bench" is FastChat's MT-Bench pair-v2 rule
                     (judge_format.mt_bench_verdict: "[[A]]" anywhere in the answer, else "[[B]]",
                     else "[[C]]"). Rewards and rejection sampling are always strict;
  chat_kwargs        extra variables for the model's chat template (optional), e.g.
                     {"enable_thinking": false}: Qwen3's switch that closes its thinking in the
                     prompt; a template that does not read a variable ignores it.

A model's chat template is rendered with the model's own special tokens (tokenizer_config.json's
bos_token, eos_token, ...), as transformers renders it, so `{{ bos_token }}` is the model's BOS; the
prompt is then encoded without adding special tokens, so BOS is in the ids exactly once (from the
template). A generation prompt that already opens the thinking (R1-distilled models'
`<｜Assistant｜><think>\\n`, QwQ's and Qwen3-Thinking-2507's `<think>\\n`) is not given
assistant_prefix again. The end of turn (the sampler's stop ids) is the model's own
eos_token_id (for_model).

Which template a script uses: its --template (a shipped name or a file), else the one the checkpoint
recorded (train_sft.py and train_grpo.py record theirs in the .pt's run_config; a model folder may
carry one in config.json under "j1_min"), else j1_min. User mistakes are ValueErrors naming the flag
or the file.
"""
from __future__ import annotations

import functools
import json
import string
from dataclasses import asdict, dataclass
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "templates"
DEFAULT = "j1_min"
TIE = "tie"  # the verdict a tie pattern parses to
FIELDS = ("question", "response_a", "response_b")
_KEYS = {"name", "description", "chat", "system", "user", "assistant_prefix", "think_end",
         "answer_prefix", "verdicts", "verdict_rule", "chat_kwargs"}
_OPTIONAL = {"description", "answer_prefix", "verdict_rule", "chat_kwargs"}
RULES = ("strict", "mt_bench")
# tokenizer_config.json's special tokens, which transformers passes to a chat template by name
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                "mask_token")
# placeholders for the judged texts while a model's chat template renders (private use)
_SLOT = "\ue000{}\ue000"


@dataclass(frozen=True)
class Template:
    """One judge format (see the module docstring for each field)."""
    name: str
    description: str
    chat: str
    system: str
    user: str
    assistant_prefix: str
    think_end: str | None
    answer_prefix: str | None
    # (("A", "[[A]]"), ("B", "[[B]]"), maybe ("tie", "[[C]]"))
    verdicts: tuple[tuple[str, str], ...]
    verdict_rule: str = "strict"
    # (("enable_thinking", False),): variables for the model's chat template
    chat_kwargs: tuple[tuple[str, object], ...] = ()

    def messages(self, question: str, response_a: str, response_b: str) -> list[dict]:
        """The system and user messages of the judge prompt."""
        user = self.user.format(question=question, response_a=response_a, response_b=response_b)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    @property
    def has_tie(self) -> bool:
        """Whether the template has a tie verdict."""
        return any(v == TIE for v, _ in self.verdicts)

    def to_dict(self) -> dict:
        """What a checkpoint records (plain JSON values; `parse` reads it back)."""
        d = asdict(self)
        d["verdicts"] = dict(self.verdicts)
        d["chat_kwargs"] = dict(self.chat_kwargs)
        return d


def parse(d, where: str) -> Template:
    """A Template from a JSON object, checked; a bad one is a ValueError naming `where`."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: a template is a JSON object, got {type(d).__name__}")
    unknown, missing = set(d) - _KEYS, _KEYS - _OPTIONAL - set(d)
    if unknown or missing:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}"
                         if unknown else f"{where}: missing keys {sorted(missing)}")
    d = {"description": "", "answer_prefix": None, "verdict_rule": "strict", "chat_kwargs": {}, **d}
    if d["verdict_rule"] not in RULES:
        raise ValueError(f"{where}: verdict_rule must be one of {list(RULES)}, got "
                         f"{d['verdict_rule']!r}")
    if not isinstance(d["chat_kwargs"], dict) or not all(
            isinstance(k, str) and k.isidentifier() and isinstance(x, (str, int, float, bool))
            for k, x in d["chat_kwargs"].items()):
        raise ValueError(f"{where}: chat_kwargs must be a JSON object of variable names and plain "
                         "values (strings, numbers, booleans)")
    for key in ("name", "description", "system", "user", "assistant_prefix"):
        if not isinstance(d[key], str):
            raise ValueError(f"{where}: {key} must be a string")
    for key in ("think_end", "answer_prefix"):
        if d[key] is not None and (not isinstance(d[key], str) or not d[key]):
            raise ValueError(f"{where}: {key} must be a non-empty string or null")
    if d["chat"] not in ("chatml", "model"):
        raise ValueError(f"{where}: chat must be 'chatml' (our ChatML) or 'model' (the model "
                         f"folder's chat template), got {d['chat']!r}")
    try:
        named = [f for _, f, _, _ in string.Formatter().parse(d["user"]) if f is not None]
    except ValueError as e:
        raise ValueError(f"{where}: user: {e} (write a literal brace as {{{{ or }}}})") from None
    if sorted(named) != sorted(FIELDS):
        raise ValueError(f"{where}: user must hold {{question}}, {{response_a}} and {{response_b}} "
                         f"once each, and no other field; it holds {named}")
    if d["answer_prefix"] is not None and d["think_end"] is None:
        raise ValueError(f"{where}: answer_prefix is forced after the end of thinking; there is no "
                         "think_end")
    v = d["verdicts"]
    if not isinstance(v, dict) or not {"A", "B"} <= set(v) <= {"A", "B", TIE}:
        raise ValueError(f"{where}: verdicts must map 'A' and 'B' (and optionally {TIE!r}) to "
                         "their patterns")
    pats = list(v.values())
    if not all(isinstance(p, str) and p.strip() for p in pats) or any(
            p in q for p in pats for q in pats if p is not q):
        raise ValueError(f"{where}: verdict patterns must be non-empty strings, none inside "
                         f"another: {v}")
    return Template(d["name"], d["description"], d["chat"], d["system"], d["user"],
                    d["assistant_prefix"], d["think_end"], d["answer_prefix"], tuple(v.items()),
                    d["verdict_rule"], tuple(sorted(d["chat_kwargs"].items())))


def shipped() -> list[str]:
    """The names of the templates shipped in j1_min/templates/."""
    return sorted(p.stem for p in FOLDER.glob("*.json"))


@functools.lru_cache(maxsize=32)
def load(spec: str, flag: str = "--template") -> Template:
    """A shipped template by name (j1_min, mt_bench_pair), or a template file by path."""
    path = FOLDER / f"{spec}.json" if spec in shipped() else Path(spec)
    if not path.is_file():
        raise ValueError(f"{flag} {spec}: no shipped template of that name "
                         f"({', '.join(shipped())}) and no such file")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{flag} {spec}: {path} is not valid JSON ({e})") from None
    return parse(d, f"{flag} {spec} ({path})")


# ------------------------------------------------------------------------------------------------
# checkpoints

def recorded(path, extra: dict) -> Template | None:
    """The template a checkpoint recorded: a .pt's run_config["template"], a folder's
    config.json["j1_min"] ["template"] (a name or a whole template); None when it recorded none.
    `extra` is load_model's third value."""
    rec = (extra.get("run_config")
           or {}).get("template") or ((extra.get("config") or {}).get("j1_min") or {}).get(
        "template")
    if rec is None:
        return None
    return load(rec, f"{path}: recorded template") if isinstance(rec, str) else parse(
        rec, f"{path}: recorded template")


def _json_object(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a JSON object")
    return d


def _eos_ids(value, where) -> list[int]:
    """eos_token_id of a config: an id, a list of ids, or absent (None)."""
    ids = [] if value is None else value if isinstance(value, list) else [value]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ValueError(f"{where}: eos_token_id must be a token id or a list of them, got "
                         f"{value!r}")
    return ids


def model_chat(path, extra: dict) -> dict:
    """What a model says about its chat format: {"chat_template": its Jinja text or None,
    "special_tokens": {"bos_token": "<|begin_of_text|>", ...} (tokenizer_config.json's, each an
    AddedToken object or a string there), "eos_ids": [ids]}.

    A folder: chat_template.jinja, else tokenizer_config.json's chat_template (its "default" entry
    when it is a list of named ones); the special tokens of tokenizer_config.json; eos_ids from
    generation_config.json's eos_token_id (what transformers' generate stops on), else
    config.json's.
    A .pt (or a sharded run folder without tokenizer_config.json): what its run_config recorded
    (record), and its config's eos_token_id."""
    path = Path(path)
    run = extra.get("run_config") or {}
    config = extra.get("config") or {}
    cfg = path / "tokenizer_config.json"
    if not path.is_dir() or not cfg.is_file():
        eos = _eos_ids(run.get("stop_ids"), f"{path}: recorded stop_ids") or _eos_ids(
            config.get("eos_token_id"), f"{path} (config)")
        jinja = path / "chat_template.jinja"
        ct = (jinja.read_text(encoding="utf-8") if path.is_dir() and jinja.is_file()
              else run.get("chat_template"))
        return {"chat_template": ct, "special_tokens": dict(run.get("chat_special_tokens") or {}),
                "eos_ids": eos}
    tc = _json_object(cfg)
    ct = tc.get("chat_template")
    if isinstance(ct, list):
        ct = {t.get("name"): t.get("template") for t in ct if isinstance(t, dict)}.get("default")
    if (path / "chat_template.jinja").is_file():
        ct = (path / "chat_template.jinja").read_text(encoding="utf-8")
    special = {}
    for key in SPECIAL_KEYS:
        v = tc.get(key)
        v = v.get("content") if isinstance(v, dict) else v
        if isinstance(v, str) and v:
            special[key] = v
    gen = path / "generation_config.json"
    eos = _eos_ids(_json_object(gen).get("eos_token_id"), gen) if gen.is_file() else []
    eos = eos or _eos_ids(config.get("eos_token_id"), path / "config.json")
    return {"chat_template": ct if isinstance(ct, str) else None, "special_tokens": special,
            "eos_ids": eos}


def set_stop_ids(tok, template: Template, chat: dict, where) -> None:
    """The end of the judge's turn, on `tok`: tok.stop_ids (what the sampler stops on) and
    tok.eos_id (what closes an SFT example).

    stop_ids = the model's eos_token_id (generation_config.json, possibly a list, else config.json),
    its tokenizer_config.json eos_token, and under our ChatML `<|im_end|>`; for a tokenizer.json
    alone (the tiny models) `<|im_end|>` or `<|endoftext|>`. eos_id = `<|im_end|>` under ChatML,
    else tokenizer_config.json's eos_token (Llama-3-Instruct: `<|eot_id|>`, R1-distilled:
    `<｜end▁of▁sentence｜>`), else the first stop id. None found is a ValueError naming `where`."""
    ids = list(chat.get("eos_ids") or [])
    bad = [i for i in ids if i >= tok.vocab_size]
    if bad:
        raise ValueError(f"{where}: eos_token_id {bad} is not an id of its tokenizer "
                         f"({tok.vocab_size} ids)")
    eos_text = (chat.get("special_tokens") or {}).get("eos_token")
    eos_tok = tok.token_id(eos_text) if eos_text else None
    im_end = tok.token_id("<|im_end|>") if template.chat == "chatml" else None
    ids = [i for i in (im_end, eos_tok, *ids) if i is not None]
    if not ids:
        ids = [i for i in (tok.token_id("<|im_end|>"), tok.token_id("<|endoftext|>"))
               if i is not None]
    if not ids:
        raise ValueError(f"{where}: no end-of-turn token: no eos_token_id in "
                         "generation_config.json or config.json, no eos_token in "
                         "tokenizer_config.json, and no <|im_end|> or <|endoftext|> in the "
                         "tokenizer")
    tok.stop_ids = list(dict.fromkeys(ids))
    tok.eos_id = im_end if im_end is not None else eos_tok if eos_tok is not None else ids[0]


def for_model(spec: str | None, path, extra: dict, tok) -> Template:
    """The template to judge or train with: `spec` (--template) if given, else the one the
    checkpoint at `path` recorded, else j1_min. The model's own chat format goes onto `tok`: its
    chat template (tok.chat_template), its special tokens (tok.chat_tokens) and its end of turn
    (set_stop_ids). A template that needs a chat template the model lacks is refused, naming
    both."""
    template = load(spec) if spec else recorded(path, extra) or load(DEFAULT)
    chat = model_chat(path, extra) if path is not None else {}
    tok.chat_template = chat.get("chat_template")
    tok.chat_tokens = tuple(sorted((chat.get("special_tokens") or {}).items()))
    if template.chat == "model" and not tok.chat_template:
        raise ValueError(f"template {template.name} applies the model's own chat template, and "
                         f"{path} has none (no chat_template in tokenizer_config.json or "
                         "chat_template.jinja)")
    set_stop_ids(tok, template, chat, path if path is not None else "the tokenizer")
    return template


def record(config: dict, template: Template, tok) -> None:
    """Put the template (and the model's chat format it applies: chat template, special tokens,
    stop ids) into a run's config, which the .pt keeps."""
    config["template"] = template.to_dict()
    if template.chat == "model":
        config["chat_template"] = tok.chat_template
    if getattr(tok, "chat_tokens", ()):
        config["chat_special_tokens"] = dict(tok.chat_tokens)
    if getattr(tok, "stop_ids", None):
        config["stop_ids"] = list(tok.stop_ids)


# ------------------------------------------------------------------------------------------------
# rendering

def thinking_opening(rendered: str, prefix: str) -> str:
    """What goes after a rendered generation prompt to open the judge's turn: assistant_prefix,
    unless the prompt already ends with it (R1-distilled `<｜Assistant｜><think>\\n`, QwQ and
    Qwen3-Thinking-2507 `<|im_start|>assistant\\n<think>\\n`): then nothing, so thinking opens
    once; a prompt ending in the prefix less its trailing whitespace gets that whitespace only."""
    if not prefix or rendered.endswith(prefix):
        return ""
    core = prefix.rstrip()
    return prefix[len(core):] if core and rendered.endswith(core) else prefix


@functools.lru_cache(maxsize=32)
def _skeleton(template: Template, chat_template: str,
              chat_tokens: tuple = ()) -> tuple[str, ...]:
    """The prompt rendered once by the model's chat template with placeholders for the judged texts,
    cut at them: (text, field, text, field, text, field, text), fields named by FIELDS. The template
    sees the model's special tokens by name (`chat_tokens`: (("bos_token", "<|begin_of_text|>"),
    ...)), as transformers' apply_chat_template passes them, and the template's chat_kwargs."""
    from tokenizers import Tokenizer as HFTokenizer, models
    from transformers import PreTrainedTokenizerFast
    # renders text only: no vocabulary, but the model's special tokens
    hf = PreTrainedTokenizerFast(tokenizer_object=HFTokenizer(models.BPE()), **dict(chat_tokens))
    slots = {f: _SLOT.format(f) for f in FIELDS}
    text = hf.apply_chat_template(template.messages(**slots), chat_template=chat_template,
                                  tokenize=False, add_generation_prompt=True,
                                  **dict(template.chat_kwargs))
    text += thinking_opening(text, template.assistant_prefix)
    pieces = []
    for f in sorted(FIELDS, key=lambda f: text.index(slots[f])):
        before, text = text.split(slots[f], 1)
        pieces += [before, f]
    if any(s in text for s in slots.values()) or len(pieces) != 2 * len(FIELDS):
        raise ValueError(f"template {template.name}: the model's chat template does not keep each "
                         "judged text once")
    return tuple(pieces + [text])


def prompt_text(template: Template, question: str, response_a: str, response_b: str,
                chat_template: str | None = None, chat_tokens: tuple = ()) -> str:
    """The whole prompt as text, ending where the judge's turn begins. chat_tokens: the model's
    special tokens (tok.chat_tokens), for a chat template that reads them."""
    if template.chat == "chatml":
        from .tokenizer import chat_text
        return chat_text(template.messages(question, response_a, response_b),
                         template.assistant_prefix)
    values = dict(question=question, response_a=response_a, response_b=response_b)
    return "".join(values.get(p, p) if i % 2 else p
                   for i, p in enumerate(_skeleton(template, chat_template, tuple(chat_tokens))))


def prompt_ids(template: Template, tok, question: str, response_a: str,
               response_b: str) -> list[int]:
    """The prompt as token ids. Only the template's own text can hold special tokens: the judged
    texts are encoded with special tokens disabled, so `<|im_start|>` or `</think>` in a response
    stays ordinary text. ChatML: tokenizer.chat_ids. A model's chat template: the text between two
    of the template's added tokens is encoded as one run with special tokens disabled (what a
    tokenizer does with clean text), and nothing is added around it, as transformers'
    apply_chat_template encodes: a BOS comes from the chat template's `{{ bos_token }}`, once."""
    if template.chat == "chatml":
        return tok.chat_ids(template.messages(question, response_a, response_b),
                            template.assistant_prefix)
    values = dict(question=question, response_a=response_a, response_b=response_b)
    ids, run = [], ""
    for i, piece in enumerate(_skeleton(template, tok.chat_template,
                                        tuple(getattr(tok, "chat_tokens", ())))):
        if i % 2:
            run += values[piece]
            continue
        at = 0
        for m in tok.added_tokens_in(piece):
            ids += tok.encode(run + piece[at:m.start()]) + [tok.token_id(m.group())]
            run, at = "", m.end()
        run += piece[at:]
    return ids + tok.encode(run) if run else ids
