"""The model-client protocol: OpenAI chat-shaped messages and tool schemas in, an assistant
message with tool calls and token usage out, with optional streaming of visible text.

Every backend meets it by shape: the remote HTTP client, the scripted client for tests and
replays, and the embedded runtime's client in ``codeagent.backend``. Messages are plain
dicts in OpenAI chat format so transcripts, scripted files and the wire format are one thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

Message = dict[str, Any]
ToolSchema = dict[str, Any]
TokenCallback = Callable[[str], None]


class ModelError(Exception):
    """The model could not answer (network, server, configuration, script exhausted)."""


class ScriptExhausted(ModelError):
    """A scripted model has no replies left."""


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # part of prompt_tokens served from a prefix cache
    cache_creation_tokens: int = 0  # part of prompt_tokens written to a provider's cache (Anthropic)

    @classmethod
    def of(cls, usage: Any) -> Usage:
        """Any object with the counts (clients meet the protocol by shape; the cache counts may be absent)."""
        return cls(
            int(usage.prompt_tokens),
            int(usage.completion_tokens),
            int(getattr(usage, "cached_tokens", 0)),
            int(getattr(usage, "cache_creation_tokens", 0)),
        )

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.cache_creation_tokens += other.cache_creation_tokens

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class Completion:
    """One assistant turn: ``message`` is an OpenAI assistant message dict
    (``role``, ``content``, optional ``tool_calls`` and ``reasoning_content``)."""

    message: Message
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"


class ModelClient(Protocol):
    """What the agent needs of a model."""

    name: str  # shown in UIs and results, e.g. "remote:gpt-4o" or "scripted:run.jsonl"
    context_window: int  # tokens the model accepts, prompt and completion together

    def complete(
        self, messages: list[Message], tools: list[ToolSchema], on_token: TokenCallback | None = None
    ) -> Completion:
        """Answer the conversation; call ``on_token`` with visible text as it streams. Streaming
        clients call it for every token or chunk, with "" when it shows nothing (a tool call or
        reasoning being written), so the caller can stop the reply at any point by raising."""
        ...

    def count_tokens(self, messages: list[Message], tools: list[ToolSchema]) -> tuple[int, bool]:
        """Tokens the prompt would take, and whether that count is exact."""
        ...


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about four characters a token for code and English)."""
    return (len(text) + 3) // 4
