"""A checkpoint's text side: what turns conversations into prompt ids and ids back into text.

``ChatModel`` holds the tokenizer, the chat template, the family (its call and reasoning
markup), the context window and the ``TurnMemory`` that keeps each turn an exact token
extension of the last (``continuity.py``). One is built per loaded checkpoint, by the
runtime's factory (``backend/runtime.py``), and shared by every request to that model: the
in-process client's and the server's alike, so a conversation continued through either
hits the prefix cache.

Constrained decoding: ``grammar(text)`` compiles a prompt's reply grammar for this tokenizer
(``grammar/matcher.py``; the vocabulary is wrapped for llguidance on first use, and compiled
grammars are cached); with ``constrain`` off it returns None and replies are decoded free.

Limits: the window is ``max_position_embeddings`` from ``config.json`` (or its
``text_config``'s, for a multimodal release; 32768 when a config leaves it out); nothing here checks that the engine's KV pool can hold that much.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeagent.backend.chat.continuity import TurnMemory
from codeagent.backend.chat.families import family_of
from codeagent.backend.chat.template import ChatTemplate
from codeagent.backend.chat.tokenizer import Tokenizer
from codeagent.backend.grammar.matcher import Grammar, GrammarVocabulary

DEFAULT_WINDOW = 32768  # tokens, for a config without max_position_embeddings
REMEMBERED_TURNS = 256  # recent turns whose text and ids are kept, for every client of the model


@dataclass(slots=True)
class ChatModel:
    name: str
    tokenizer: Tokenizer
    template: ChatTemplate
    family: str
    context_window: int
    remembered_turns: int = REMEMBERED_TURNS
    constrain: bool = True  # decode replies under their grammar (tools, tool_choice, response_format)
    memory: TurnMemory = field(init=False)
    _vocabulary: GrammarVocabulary | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.memory = TurnMemory(self.tokenizer, self.remembered_turns)

    def grammar(self, text: str | None) -> Grammar | None:
        """``text`` (a prompt's reply grammar) compiled for this tokenizer; GrammarError if it cannot be."""
        if text is None or not self.constrain:
            return None
        if self._vocabulary is None:
            self._vocabulary = GrammarVocabulary(self.tokenizer)
        return self._vocabulary.compile(text)

    @classmethod
    def from_dir(
        cls,
        folder: Path,
        config: dict[str, Any],
        name: str | None = None,
        remembered_turns: int = REMEMBERED_TURNS,
    ) -> ChatModel:
        """From a checkpoint folder with ``tokenizer.json`` and its ``config.json`` contents."""
        tokenizer = Tokenizer.from_dir(folder)
        family = family_of(config)
        text = config.get("text_config") or {}  # a multimodal release (Qwen3.5-MoE): its text model's
        window = int(
            config.get("max_position_embeddings") or text.get("max_position_embeddings") or DEFAULT_WINDOW
        )
        template = ChatTemplate.from_tokenizer(tokenizer, family)
        return cls(name or folder.name, tokenizer, template, family, window, remembered_turns)
