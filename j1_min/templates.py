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
  verdicts           {"A": "[[A]]", "B": "[[B]]"} and optionally "tie": "[[C]]".

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
         "answer_prefix", "verdicts"}
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
        return d


def parse(d, where: str) -> Template:
    """A Template from a JSON object, checked; a bad one is a ValueError naming `where`."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: a template is a JSON object, got {type(d).__name__}")
    unknown, missing = set(d) - _KEYS, _KEYS - {"description", "answer_prefix"} - set(d)
    if unknown or missing:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}"
                         if unknown else f"{where}: missing keys {sorted(missing)}")
    d = {"description": "", "answer_prefix": None, **d}
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
                    d["assistant_prefix"], d["think_end"], d["answer_prefix"], tuple(v.items()))


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


def model_chat_template(path, extra: dict) -> str | None:
    """The model's own chat template: a folder's chat_template.jinja or tokenizer_config.json's
    chat_template (its "default" entry when it is a list of named ones), or the one a .pt recorded
    in run_config; else None."""
    path = Path(path)
    if not path.is_dir():
        return (extra.get("run_config") or {}).get("chat_template")
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text(encoding="utf-8")
    cfg = path / "tokenizer_config.json"
    if not cfg.is_file():
        # a sharded run folder's, as a .pt's
        return (extra.get("run_config") or {}).get("chat_template")
    try:
        ct = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ValueError(f"{cfg}: not a JSON object ({e})") from None
    if isinstance(ct, list):
        ct = {t.get("name"): t.get("template") for t in ct if isinstance(t, dict)}.get("default")
    return ct if isinstance(ct, str) else None


def for_model(spec: str | None, path, extra: dict, tok) -> Template:
    """The template to judge or train with: `spec` (--template) if given, else the one the
    checkpoint at `path` recorded, else j1_min. The model's own chat template goes onto `tok`
    (tok.chat_template), and a template that needs one the model lacks is refused, naming both."""
    template = load(spec) if spec else recorded(path, extra) or load(DEFAULT)
    tok.chat_template = model_chat_template(path, extra) if path is not None else None
    if template.chat == "model" and not tok.chat_template:
        raise ValueError(f"template {template.name} applies the model's own chat template, and "
                         f"{path} has none (no chat_template in tokenizer_config.json or "
                         "chat_template.jinja)")
    return template


def record(config: dict, template: Template, tok) -> None:
    """Put the template (and the model's chat template it applies) into a run's config, which the
    .pt keeps."""
    config["template"] = template.to_dict()
    if template.chat == "model":
        config["chat_template"] = tok.chat_template


# ------------------------------------------------------------------------------------------------
# rendering

@functools.lru_cache(maxsize=32)
def _skeleton(template: Template, chat_template: str) -> tuple[str, ...]:
    """The prompt rendered once by the model's chat template with placeholders for the judged texts,
    cut at them: (text, field, text, field, text, field, text), fields named by FIELDS."""
    from tokenizers import Tokenizer as HFTokenizer, models
    from transformers import PreTrainedTokenizerFast
    # renders text only: no vocabulary
    hf = PreTrainedTokenizerFast(tokenizer_object=HFTokenizer(models.BPE()))
    slots = {f: _SLOT.format(f) for f in FIELDS}
    text = hf.apply_chat_template(template.messages(**slots), chat_template=chat_template,
                                  tokenize=False,
                                  add_generation_prompt=True) + template.assistant_prefix
    pieces = []
    for f in sorted(FIELDS, key=lambda f: text.index(slots[f])):
        before, text = text.split(slots[f], 1)
        pieces += [before, f]
    if any(s in text for s in slots.values()) or len(pieces) != 2 * len(FIELDS):
        raise ValueError(f"template {template.name}: the model's chat template does not keep each "
                         "judged text once")
    return tuple(pieces + [text])


def prompt_text(template: Template, question: str, response_a: str, response_b: str,
                chat_template: str | None = None) -> str:
    """The whole prompt as text, ending where the judge's turn begins."""
    if template.chat == "chatml":
        from .tokenizer import chat_text
        return chat_text(template.messages(question, response_a, response_b),
                         template.assistant_prefix)
    values = dict(question=question, response_a=response_a, response_b=response_b)
    return "".join(values.get(p, p) if i % 2 else p
                   for i, p in enumerate(_skeleton(template, chat_template)))


def prompt_ids(template: Template, tok, question: str, response_a: str,
               response_b: str) -> list[int]:
    """The prompt as token ids. Only the template's own text can hold special tokens: the judged
    texts are encoded with special tokens disabled, so `<|im_start|>` or `</think>` in a response
    stays ordinary text. ChatML: tokenizer.chat_ids. A model's chat template: the text between two
    of the template's added tokens is encoded as one run with special tokens disabled (what a
    tokenizer does with clean text)."""
    if template.chat == "chatml":
        return tok.chat_ids(template.messages(question, response_a, response_b),
                            template.assistant_prefix)
    values = dict(question=question, response_a=response_a, response_b=response_b)
    ids, run = [], ""
    for i, piece in enumerate(_skeleton(template, tok.chat_template)):
        if i % 2:
            run += values[piece]
            continue
        at = 0
        for m in tok.added_tokens_in(piece):
            ids += tok.encode(run + piece[at:m.start()]) + [tok.token_id(m.group())]
            run, at = "", m.end()
        run += piece[at:]
    return ids + tok.encode(run) if run else ids
