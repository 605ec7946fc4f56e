"""The checkpoint's tokenizer (``tokenizer.json`` through ``tokenizers``) and streaming decode.

Special tokens and end-of-sequence ids come from ``tokenizer_config.json`` and
``generation_config.json``. Chat templates render special tokens as text, so ``encode``
adds none of its own. ``IncrementalDecoder`` re-decodes a short window of recent ids and
emits only text that is complete, so a multi-byte character split across tokens is
emitted once, whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class Tokenizer:
    def __init__(self, inner: HFTokenizer, config: dict[str, Any], generation: dict[str, Any]) -> None:
        self.inner = inner
        self.config = config
        self.bos_token = _token_text(config.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token"))
        self.eos_token_ids = self._eos_ids(generation)

    @classmethod
    def from_dir(cls, folder: Path) -> Tokenizer:
        inner = HFTokenizer.from_file(str(folder / "tokenizer.json"))
        return cls(
            inner, _read_json(folder / "tokenizer_config.json"), _read_json(folder / "generation_config.json")
        )

    def _eos_ids(self, generation: dict[str, Any]) -> set[int]:
        raw = generation.get("eos_token_id")
        ids = set(raw if isinstance(raw, list) else [raw] if isinstance(raw, int) else [])
        if self.eos_token and (token_id := self.inner.token_to_id(self.eos_token)) is not None:
            ids.add(token_id)
        return ids

    @property
    def vocab_size(self) -> int:
        return self.inner.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.inner.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.inner.decode(ids, skip_special_tokens=skip_special_tokens)


class IncrementalDecoder:
    """Text of a growing id sequence, piece by piece, never half a character."""

    WINDOW = 6  # ids re-decoded before the new one, enough for merges that change spacing

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0  # start of the window
        self.read_offset = 0  # ids up to here have been emitted

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix = self.tokenizer.decode(self.ids[self.prefix_offset : self.read_offset])
        full = self.tokenizer.decode(self.ids[self.prefix_offset :])
        if full.endswith("\ufffd") or len(full) <= len(prefix):
            return ""  # an incomplete character, or nothing visible yet
        new_text = full[len(prefix) :]
        self.read_offset = len(self.ids)
        self.prefix_offset = max(0, self.read_offset - self.WINDOW)
        return new_text
