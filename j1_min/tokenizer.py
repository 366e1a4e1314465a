"""Tokenizer: a thin wrapper over Hugging Face `tokenizers` (tokenizer.json), ChatML written out by
hand, and the training of the small byte-level BPE tokenizer that the project's own tiny models use.

User text is encoded with special tokens *disabled*: a judged response that contains `<|im_start|>`
or `</think>` becomes ordinary text tokens, so it can never change the structure of a prompt.
"""
from __future__ import annotations

import re
from pathlib import Path

from tokenizers import (AddedToken, Regex, Tokenizer as HFTokenizer, decoders, models,
                        pre_tokenizers, trainers)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# Qwen2's pre-tokenizer split: contractions, letter runs, ONE digit per piece, punctuation runs,
# newlines, spaces.
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| "
              r"?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")


class Tokenizer:
    """encode / decode over a tokenizer.json, with the ids of the chat and thinking markers at
    hand."""

    def __init__(self, tok: HFTokenizer):
        self.tok = tok
        # every added token
        self.added = {t.content: i for i, t in tok.get_added_tokens_decoder().items()}
        self._added_re = (re.compile("|".join(re.escape(t)
                                              for t in sorted(self.added, key=len, reverse=True)))
                          if self.added else None)
        # the end of turn: what closes an SFT example, and the ids the sampler stops on. A tokenizer
        # alone knows only ChatML's; templates.for_model puts the model's own eos_token_id here
        # (generation_config.json / config.json, tokenizer_config.json's eos_token).
        self.eos_id = self.added.get("<|im_end|>", self.added.get("<|endoftext|>"))
        self.stop_ids = [] if self.eos_id is None else [self.eos_id]
        # the model's own chat template (Jinja text), where its folder has one, and its special
        # tokens by name ((("bos_token", "<|begin_of_text|>"), ...): tokenizer_config.json's)
        self.chat_template = None
        self.chat_tokens = ()

    # --------------------------------------------------------------------------------------------
    # loading
    @classmethod
    def from_json(cls, text: str, where="tokenizer.json") -> "Tokenizer":
        """From the text of a tokenizer.json; a malformed one is a ValueError naming `where`."""
        try:
            return cls(HFTokenizer.from_str(text))
        except Exception as e:  # the tokenizers library raises a bare Exception
            raise ValueError(f"{where}: not a valid tokenizer.json ({e})") from None

    @classmethod
    def from_path(cls, path) -> "Tokenizer":
        """From a tokenizer.json file or a model directory holding one (a `.pt` checkpoint's:
        checkpoint.load_judge)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if path.suffix == ".pt":
            raise ValueError(f"{path}: a j1_min checkpoint; its tokenizer comes with "
                             "checkpoint.load_judge")
        if not path.is_file():
            raise ValueError(f"{path}: no tokenizer.json found")
        return cls.from_json(path.read_bytes().decode("utf-8", "replace"), path)

    def to_json(self) -> str:
        """The tokenizer.json text (what checkpoint.save_hf writes and transformers'
        PreTrainedTokenizerFast reads)."""
        return self.tok.to_str()

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return self.tok.get_vocab_size(with_added_tokens=True)

    # --------------------------------------------------------------------------------------------
    # encode / decode
    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Token ids of `text`. With allow_special=False (the default, for any user-supplied text)
        an added token's string (`<think>`, `<|im_start|>`, ...) is encoded as ordinary text: its
        first character and the rest are encoded apart, so the tokenizer cannot match it as one
        added token."""
        if allow_special or self._added_re is None or not self._added_re.search(text):
            try:
                return self.tok.encode(text, add_special_tokens=False).ids
            except TypeError:  # the tokenizers library's answer to a lone surrogate ("\ud800")
                raise ValueError(f"text {text[:40]!r}... holds a lone surrogate: not valid "
                                 "Unicode") from None
        ids, pos = [], 0
        for m in self._added_re.finditer(text):
            for piece in (text[pos:m.start()], m.group()[0], m.group()[1:]):
                if piece:
                    ids += self.encode(piece)
            pos = m.end()
        return ids + (self.encode(text[pos:]) if pos < len(text) else [])

    def decode(self, ids) -> str:
        """Text of `ids`, special tokens kept (so `</think>` and `<|im_end|>` stay visible)."""
        return self.tok.decode(list(ids), skip_special_tokens=False)

    def token_texts(self) -> list[str]:
        """The text of each id decoded on its own, special tokens included (computed once, then
        kept)."""
        if getattr(self, "_texts", None) is None:
            self._texts = self.tok.decode_batch([[i] for i in range(self.vocab_size)],
                                                skip_special_tokens=False)
        return self._texts

    def token_id(self, token: str) -> int | None:
        """The id of an added token such as `<|im_end|>`, or None if the vocabulary has no such
        single token."""
        return self.added.get(token)

    def added_tokens_in(self, text: str):
        """The matches of added tokens' strings in `text`, longest first at each place (re.Match
        objects)."""
        return self._added_re.finditer(text) if self._added_re else iter(())

    def marker_ids(self, marker: str) -> list[int]:
        """Ids of a marker such as `</think>`: its single added id where there is one (Qwen3, the
        tiny tokenizer), else its ordinary encoding (Qwen2.5, where `</think>` is several
        tokens)."""
        i = self.added.get(marker)
        return [i] if i is not None else self.encode(marker)

    # --------------------------------------------------------------------------------------------
    # ChatML
    def chat_ids(self, messages: list[dict], assistant_prefix: str | None = "") -> list[int]:
        """ChatML ids, as Qwen models are trained on: for each message
        `<|im_start|>{role}\\n{content}<|im_end|>\\n`, then, unless assistant_prefix is None,
        `<|im_start|>assistant\\n{assistant_prefix}` to open the reply. Only the markers are special
        tokens; roles and contents are ordinary text. assistant_prefix (e.g. `<think>\\n`) is
        template text, so its markers are special."""
        ids = []
        for m in messages:
            ids += self.marker_ids("<|im_start|>") + self.encode(m["role"] + "\n" + m["content"])
            ids += self.marker_ids("<|im_end|>") + self.encode("\n")
        if assistant_prefix is not None:
            ids += self.marker_ids("<|im_start|>") + self.encode("assistant\n")
            ids += self.encode(assistant_prefix, allow_special=True)
        return ids


def chat_text(messages: list[dict], assistant_prefix: str | None = "") -> str:
    """The ChatML string that Tokenizer.chat_ids encodes (for reading and display)."""
    s = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return s if assistant_prefix is None else s + "<|im_start|>assistant\n" + assistant_prefix


def train_bpe(texts, vocab_size: int = 512, special_tokens=tuple(SPECIAL_TOKENS)) -> Tokenizer:
    """Train a byte-level BPE (Sennrich et al. 2016; GPT-2's byte alphabet) with Qwen2's
    pre-tokenizer split, so digits are one token each, and with `special_tokens` as the first ids
    (SPECIAL_TOKENS by default; without `<think>` and `</think>` it writes them as ordinary tokens,
    as Qwen2.5 does). Saved as a tokenizer.json."""
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size,
                                  special_tokens=[AddedToken(t, special=True, normalized=False)
                                                                        for t in special_tokens],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return Tokenizer(tok)

