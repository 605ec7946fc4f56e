"""The embedded runtime as a model client: the agent's ``ModelClient`` protocol, met by shape.

``complete`` renders the OpenAI-shaped conversation with the checkpoint's own chat template,
tokenizes it, generates, detokenizes incrementally and feeds the text through the family's
streaming tool-call parser, so visible text streams to ``on_token`` without call markup and
the reply comes back as an OpenAI assistant message. Token counts are exact (the model's
own tokenizer). Each call prefills the whole prompt today; the prefix cache of the engine
issue makes follow-up turns cost only their new tokens behind this same interface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codeagent.backend.chat.families import family_of
from codeagent.backend.chat.template import ChatTemplate
from codeagent.backend.chat.tokenizer import IncrementalDecoder, Tokenizer
from codeagent.backend.chat.toolcalls import make_parser
from codeagent.backend.engine import Engine, Request
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import LoadError, load_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class EmbeddedClientError(Exception):
    """The model cannot answer this request (the wiring turns it into the agent's ModelError)."""


@dataclass(slots=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


@dataclass(slots=True)
class Reply:
    """Shaped like the agent's ``Completion``: an OpenAI assistant message, usage, finish reason."""

    message: dict[str, Any]
    usage: TokenUsage
    finish_reason: str


class EmbeddedClient:
    def __init__(
        self,
        folder: Path,
        dtype: str | None = None,
        device: str | None = None,
        max_new_tokens: int = 4096,
        temperature: float = 0.0,
    ) -> None:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or ("bfloat16" if device == "cuda" else "float32")
        if not (folder / "tokenizer.json").is_file():
            raise LoadError(f"{folder} has no tokenizer.json; the agent needs the model's tokenizer")
        loaded = load_model(folder, DTYPES[dtype], device)
        self.name = f"embedded:{folder.name}"
        self.tokenizer = Tokenizer.from_dir(folder)
        self.family = family_of(loaded.config)
        self.template = ChatTemplate.from_dir(folder, self.family)
        self.engine = Engine(loaded.model, self.tokenizer.eos_token_ids, device)
        self.context_window = int(loaded.config.get("max_position_embeddings") or 32768)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature

    def prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[int]:
        return self.tokenizer.encode(self.template.render(messages, tools))

    def count_tokens(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> tuple[int, bool]:
        return len(self.prompt_ids(messages, tools)), True

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        on_token: Callable[[str], None] | None = None,
    ) -> Reply:
        prompt = self.template.render(messages, tools)
        ids = self.tokenizer.encode(prompt)
        room = self.context_window - len(ids)
        if room <= 0:
            raise EmbeddedClientError(
                f"the prompt has {len(ids)} tokens; the model's window is {self.context_window}"
            )
        parser = make_parser(self.family, tools, prompt=prompt)
        decoder = IncrementalDecoder(self.tokenizer)

        def emit(content: str) -> None:
            if on_token and content:
                on_token(content)

        def hook(token: int) -> bool:
            if token in self.tokenizer.eos_token_ids:
                return False
            emit(parser.push(decoder.push(token)).content)
            return True

        params = SamplingParams(temperature=self.temperature, max_tokens=min(self.max_new_tokens, room))
        result = self.engine.generate([Request(ids, params, hook)])[0]
        emit(parser.push(decoder.finish()).content)
        emit(parser.flush().content)
        parsed = parser.finish()
        message: dict[str, Any] = {"role": "assistant", "content": parsed.content}
        if parsed.reasoning_content:
            message["reasoning_content"] = parsed.reasoning_content
        if parsed.tool_calls:
            message["tool_calls"] = parsed.tool_calls
        finish = "tool_calls" if parsed.tool_calls else result.finish_reason
        return Reply(message, TokenUsage(len(ids), len(result.token_ids)), finish)
