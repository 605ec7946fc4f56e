"""The embedded runtime as a model client: the agent's ``ModelClient`` protocol, met by shape.

``complete`` renders the OpenAI-shaped conversation with the checkpoint's own chat template,
tokenizes it, generates, detokenizes incrementally and feeds the text through the family's
streaming tool-call parser, so visible text streams to ``on_token`` without call markup and
the reply comes back as an OpenAI assistant message. Token counts are exact (the model's
own tokenizer).

Follow-up turns cost only their new tokens: the engine (on a background ``EngineService``,
so parallel agents share its batches) caches every full block of prompt and reply by its
token hash chain, in memory and in a disk tier under ``$XDG_CACHE_HOME/codeagent/kv``. For
the hit to reach across turns the next prompt must extend this one token for token: the
reply goes back as the assistant message's ``_raw`` (rendered verbatim by the template),
and the token ids of recent turns are kept so re-tokenizing the conversation never
changes them (``chat/continuity.py``). ``usage.cached_tokens`` says how much of each prompt was reused.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codeagent.backend.cache.disk import default_root as default_disk_root
from codeagent.backend.chat.continuity import TurnMemory
from codeagent.backend.chat.families import family_of
from codeagent.backend.chat.template import RAW, ChatTemplate
from codeagent.backend.chat.tokenizer import IncrementalDecoder, Tokenizer
from codeagent.backend.chat.toolcalls import make_parser
from codeagent.backend.engine import CacheConfig, Engine
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import LoadError, load_model, model_fingerprint
from codeagent.backend.service import EngineService

RECENT_TURNS = 64  # turns whose token ids are kept for extension (parallel agents, sub-agents)
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
    ttft_s: float = 0.0  # submission to first token: queueing plus the prefill of the uncached part
    decode_tokens_per_s: float = 0.0


class EmbeddedClient:
    def __init__(
        self,
        folder: Path,
        dtype: str | None = None,
        device: str | None = None,
        max_new_tokens: int = 4096,
        temperature: float = 0.0,
        cache: CacheConfig | None = None,
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
        if cache is None:
            cache = CacheConfig(disk_folder=default_disk_root())
        namespace = model_fingerprint(folder) + f"{dtype}:{device}".encode()
        self.engine = Engine(
            loaded.model, self.tokenizer.eos_token_ids, device, cache=cache, namespace=namespace
        )
        self.service = EngineService(self.engine)
        atexit.register(self.close)  # blocks queued for the disk tier reach it; threads end before exit
        self.context_window = int(loaded.config.get("max_position_embeddings") or 32768)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.memory = TurnMemory(self.tokenizer, RECENT_TURNS)
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.service.close()

    def prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[int]:
        return self.memory.encode(self.template.render(self.memory.restore(messages), tools))

    def count_tokens(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> tuple[int, bool]:
        return len(self.prompt_ids(messages, tools)), True

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        on_token: Callable[[str], None] | None = None,
    ) -> Reply:
        prompt = self.template.render(self.memory.restore(messages), tools)
        ids = self.memory.encode(prompt)
        room = self.context_window - len(ids)
        if room <= 0:
            raise EmbeddedClientError(
                f"the prompt has {len(ids)} tokens; the model's window is {self.context_window}"
            )
        parser = make_parser(self.family, tools, prompt=prompt)
        decoder = IncrementalDecoder(self.tokenizer)

        def emit(content: str) -> None:
            if on_token:  # every token, "" when it shows nothing: the caller may stop the reply at any token
                on_token(content)

        params = SamplingParams(temperature=self.temperature, max_tokens=min(self.max_new_tokens, room))
        try:
            stream = self.service.submit(ids, params)
        except ValueError as err:
            raise EmbeddedClientError(str(err)) from err
        generated: list[int] = []
        try:
            for token in stream:
                generated.append(token)
                if token not in self.tokenizer.eos_token_ids:
                    emit(parser.push(decoder.push(token)).content)
        finally:
            if stream.result is None:  # interrupted (Ctrl-C, an error in on_token): free the sequence
                stream.cancel()
        result = stream.result
        assert result is not None
        if result.finish_reason == "error":
            raise EmbeddedClientError(result.error or "the engine failed")
        emit(parser.push(decoder.finish()).content)
        emit(parser.flush().content)
        parsed = parser.finish()
        message: dict[str, Any] = {"role": "assistant", "content": parsed.content, RAW: parsed.raw}
        if parsed.reasoning_content:
            message["reasoning_content"] = parsed.reasoning_content
        if parsed.tool_calls:
            message["tool_calls"] = parsed.tool_calls
        self.memory.remember(prompt, ids, generated, message, parsed.raw)
        finish = "tool_calls" if parsed.tool_calls else result.finish_reason
        rate = (len(generated) - 1) / result.decode_s if len(generated) > 1 and result.decode_s > 0 else 0.0
        usage = TokenUsage(len(ids), len(generated), result.cached_tokens)
        return Reply(message, usage, finish, result.prefill_s, rate)
