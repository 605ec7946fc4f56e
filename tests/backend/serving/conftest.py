"""Servers for the protocol tests: ``codeagent serve``'s server on 127.0.0.1 over two services.

The real ``EngineService`` over a tiny random Qwen3-MoE (real batching, cancellation, prefix
cache), and ``ScriptedService``, a real implementation of the service protocol that plays back
a scripted token sequence, so the tool-call, stop-string and tool_choice conversions of every
protocol can be checked on exact text a random model would never write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.engine import CacheConfig, Engine, Result
from codeagent.backend.loader import load_model, read_config
from codeagent.backend.service import EngineService
from codeagent.backend.serving.server import OpenAIServer, serve


class ScriptedStream:
    def __init__(self, service: ScriptedService, tokens: list[int], prompt_tokens: int) -> None:
        self.service, self.tokens, self.prompt_tokens = service, tokens, prompt_tokens
        self.cancelled = threading.Event()
        self.result: Result | None = None

    def __iter__(self) -> Iterator[int]:
        sent: list[int] = []
        finish = "stop"
        try:
            for token in self.tokens:
                if self.service.delay_s:
                    self.cancelled.wait(self.service.delay_s)
                if self.cancelled.is_set():
                    finish = "cancelled"
                    return
                sent.append(token)
                yield token
        finally:
            error = self.service.error
            self.result = Result(sent, "error" if error else finish, self.prompt_tokens, error=error)
            self.service.finished(self)

    def cancel(self) -> None:
        self.cancelled.set()


class ScriptedService:
    """Plays ``text`` (tokenized, then end-of-sequence) to every request, ``delay_s`` per token,
    ending in ``error`` when one is given."""

    def __init__(self, model: ChatModel, text: str, delay_s: float = 0.0, error: str | None = None) -> None:
        self.tokens = [*model.tokenizer.encode(text), *sorted(model.tokenizer.eos_token_ids)[:1]]
        self.delay_s = delay_s
        self.error = error  # end every stream with this engine error
        self.prompts: list[list[int]] = []
        self.streams: list[ScriptedStream] = []
        self.lock = threading.Lock()
        self.live = 0

    def submit(self, prompt_ids: list[int], params: Any) -> ScriptedStream:
        with self.lock:
            self.prompts.append(list(prompt_ids))
            self.live += 1
        stream = ScriptedStream(self, self.tokens[: params.max_tokens], len(prompt_ids))
        self.streams.append(stream)
        return stream

    def finished(self, stream: ScriptedStream) -> None:
        with self.lock:
            self.live -= 1


@pytest.fixture(scope="module")
def chat_model(tiny_chat_model: Path) -> ChatModel:
    return ChatModel.from_dir(tiny_chat_model, read_config(tiny_chat_model), "tiny")


@pytest.fixture(scope="module")
def engine_server(tiny_chat_model: Path, chat_model: ChatModel) -> Iterator[tuple[OpenAIServer, Engine]]:
    loaded = load_model(tiny_chat_model)
    cache = CacheConfig(num_blocks=256)  # 8192 tokens of 32 per block: small and quick to allocate
    engine = Engine(loaded.model, chat_model.tokenizer.eos_token_ids, "cpu", cache=cache)
    service = EngineService(engine)
    server = OpenAIServer(("127.0.0.1", 0), chat_model, service, max_output_tokens=16)
    serve(server)
    yield server, engine
    server.shutdown()
    server.server_close()
    service.close()


@pytest.fixture
def scripted(chat_model: ChatModel) -> Iterator[Any]:
    """Start a server over a ScriptedService: ``scripted(text, delay_s=0, api_key=None, error=None,
    **options)``, the options going to ``OpenAIServer`` (``max_connections``, ``grace_s``...)."""
    servers: list[OpenAIServer] = []

    def start(
        text: str, delay_s: float = 0.0, api_key: str | None = None, error: str | None = None, **options: Any
    ) -> tuple[OpenAIServer, ScriptedService]:
        service = ScriptedService(chat_model, text, delay_s, error)
        server = OpenAIServer(("127.0.0.1", 0), chat_model, service, api_key=api_key, **options)
        serve(server)
        servers.append(server)
        return server, service

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
