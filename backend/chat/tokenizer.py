"""The checkpoint's tokenizer (``tokenizer.json`` through ``tokenizers``) and streaming decode.

``Tokenizer.from_dir`` reads three files the way Hugging Face checkpoints lay them out:
``tokenizer.json`` (the model), ``tokenizer_config.json`` (bos/eos/pad/unk tokens, the
``added_tokens_decoder`` table, a chat template) and ``generation_config.json`` (the ids that
end a generation, an int or a list); a ``chat_template.jinja`` beside them replaces the
config's templates, as in transformers. Tokens the config declares but ``tokenizer.json`` lacks
are added at their declared ids; a declared id that disagrees with ``tokenizer.json`` is an
error, since the model's embeddings are indexed by the latter.

``encode`` adds no special tokens: chat templates write them as text (``<|im_start|>``,
``<｜begin▁of▁sentence｜>``) and they are matched as added tokens. A text of ``LONG_TEXT``
characters or more is encoded with the GIL released (``encode_batch``), so a long prompt
does not stall the other threads of a server, and at most ``LONG_AT_ONCE`` such texts per
tokenizer at a time: the tokenizer's working memory is ~200 bytes a character, and many
long prompts at once would add up (the rest wait their turn).

``IncrementalDecoder`` turns ids into text one at a time. It re-decodes a short window of
recent ids (byte-level BPE and SentencePiece decoders change a piece's spacing by what
precedes it) and emits only text whose last character is complete, so a multi-byte
character split across tokens comes out once, whole. A generated U+FFFD at the very end is
indistinguishable from an incomplete character and waits for the next token or ``finish``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tokenizers import AddedToken
from tokenizers import Tokenizer as HFTokenizer

LONG_TEXT = 16384
LONG_AT_ONCE = 2


class TokenizerError(ValueError):
    pass


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def token_text(value: Any) -> str | None:
    """A special token as configs write it: a string or an AddedToken dict with ``content``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def read_chat_templates(folder: Path, config: dict[str, Any]) -> dict[str, str]:
    """Named chat templates; ``chat_template.jinja`` wins over the config's, as in transformers.

    The config holds a string (the ``default`` template) or a list of ``{name, template}``.
    """
    raw = config.get("chat_template")
    if isinstance(raw, list):
        templates = {e["name"]: e["template"] for e in raw if isinstance(e, dict) and "name" in e}
    else:
        templates = {"default": raw} if isinstance(raw, str) and raw.strip() else {}
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        templates = {"default": jinja_file.read_text(encoding="utf-8")}
    return {name: source for name, source in templates.items() if isinstance(source, str)}


def _ids(value: Any) -> set[int]:
    if isinstance(value, int):
        return {value}
    return {v for v in value if isinstance(v, int)} if isinstance(value, list) else set()


class Tokenizer:
    def __init__(
        self,
        inner: HFTokenizer,
        config: dict[str, Any],
        generation: dict[str, Any],
        chat_templates: dict[str, str] | None = None,
    ) -> None:
        self.inner = inner
        self.config = config
        self._long_texts = threading.BoundedSemaphore(LONG_AT_ONCE)
        self.chat_templates = chat_templates or {}  # name -> Jinja source; empty: the family's built-in
        self.special_ids = self._register_added_tokens(config.get("added_tokens_decoder") or {})
        self.bos_token = token_text(config.get("bos_token"))
        self.eos_token = token_text(config.get("eos_token"))
        self.pad_token = token_text(config.get("pad_token"))
        self.unk_token = token_text(config.get("unk_token"))
        self.pad_token_id = self.token_to_id(self.pad_token)
        if self.pad_token_id is None and isinstance(generation.get("pad_token_id"), int):
            self.pad_token_id = generation["pad_token_id"]
        self.eos_token_ids = _ids(generation.get("eos_token_id")) | _ids(config.get("eos_token_id"))
        if (eos_id := self.token_to_id(self.eos_token)) is not None:
            self.eos_token_ids.add(eos_id)

    @classmethod
    def from_dir(cls, folder: Path | str) -> Tokenizer:
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise TokenizerError(f"{folder} has no tokenizer.json")
        config = read_json(folder / "tokenizer_config.json")
        return cls(
            HFTokenizer.from_file(str(path)),
            config,
            read_json(folder / "generation_config.json"),
            read_chat_templates(folder, config),
        )

    def _register_added_tokens(self, declared: dict[str, Any]) -> frozenset[int]:
        """Special ids from tokenizer.json and the config's table, adding tokens only the config has."""
        special = {i for i, token in self.inner.get_added_tokens_decoder().items() if token.special}
        for key, entry in sorted(declared.items(), key=lambda item: int(item[0])):
            token_id, content = int(key), token_text(entry)
            if content is None:
                continue
            is_special = bool(entry.get("special", False)) if isinstance(entry, dict) else False
            current = self.inner.token_to_id(content)
            if current is None and token_id == self.inner.get_vocab_size(with_added_tokens=True):
                added = AddedToken(content, special=is_special, normalized=not is_special)
                self.inner.add_special_tokens([added]) if is_special else self.inner.add_tokens([added])
                current = self.inner.token_to_id(content)
            if current != token_id:
                raise TokenizerError(
                    f"tokenizer_config.json declares {content!r} as id {token_id}, tokenizer.json has {current}"
                )
            if is_special:
                special.add(token_id)
        return frozenset(special)

    @property
    def vocab_size(self) -> int:
        return self.inner.get_vocab_size(with_added_tokens=True)

    @property
    def special_tokens(self) -> dict[str, str]:
        """The named special tokens, as chat templates receive them (``bos_token`` and so on)."""
        named = {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "unk_token": self.unk_token,
        }
        return {name: text for name, text in named.items() if text is not None}

    def token_to_id(self, token: str | None) -> int | None:
        return None if token is None else self.inner.token_to_id(token)

    def single_added_token(self, text: str) -> int | None:
        """The id of ``text`` when the vocabulary holds it as one added token (Qwen's ``<tool_call>``)."""
        token = self.inner.token_to_id(text)
        return token if token is not None and token in self.inner.get_added_tokens_decoder() else None

    def encode(self, text: str) -> list[int]:
        if len(text) < LONG_TEXT:
            return self.inner.encode(text, add_special_tokens=False).ids
        with self._long_texts:  # ``encode`` holds the GIL throughout; ``encode_batch`` lets others run
            return self.inner.encode_batch([text], add_special_tokens=False)[0].ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        if skip_special_tokens:
            ids = [i for i in ids if i not in self.special_ids]
        return self.inner.decode(ids, skip_special_tokens=False)


class IncrementalDecoder:
    """Text of a growing id sequence, piece by piece, never half a character."""

    WINDOW = 6  # ids re-decoded before the new ones: enough context for any decoder's spacing

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.prefix_offset = 0  # start of the window
        self.read_offset = 0  # text of ids before this has been emitted

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if full.endswith("\ufffd") or len(full) <= len(prefix):
            return ""  # an incomplete character, or nothing visible yet
        self.prefix_offset = max(0, len(self.ids) - self.WINDOW)
        self.read_offset = len(self.ids)
        return full[len(prefix) :]

    def finish(self) -> str:
        """Whatever is still held (an incomplete character is emitted as U+FFFD)."""
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.ids)
        return full[len(prefix) :]
