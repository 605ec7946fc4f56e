"""Wiring the embedded runtime into the agent: resolve (or pull) the model, load it, adapt
its errors. This is one of the two places where backend and agent meet."""

from __future__ import annotations

from typing import Any

from codeagent.agent.protocol import ModelError
from codeagent.backend.client import EmbeddedClient, EmbeddedClientError
from codeagent.backend.loader import LoadError, resolve_model
from codeagent.tui.firstrun import fetch_default


def embedded_client(spec: str, args: Any, default: str) -> Any:
    """The in-process client; the default model is fetched on first use where a network exists,
    after saying what it takes (``firstrun``). Raises ValueError with one clear message when the
    model cannot be had."""
    if spec == default:
        folder = fetch_default(spec)
    else:
        try:
            folder = resolve_model(spec)
        except LoadError as missing:
            raise ValueError(str(missing)) from missing
    try:
        inner = EmbeddedClient(
            folder,
            dtype=getattr(args, "dtype", None),
            device=getattr(args, "device", None),
            max_new_tokens=getattr(args, "max_output_tokens", 4096),
            tp=getattr(args, "tp", 1),
            ep=getattr(args, "ep", False),
            cpu_experts=getattr(args, "cpu_experts", 0),
            pack=getattr(args, "pack", None),
        )
    except LoadError as err:
        raise ValueError(str(err)) from err
    return AgentFacingClient(inner)


class AgentFacingClient:
    """The embedded client with the runtime's request errors turned into the agent's ModelError."""

    def __init__(self, inner: EmbeddedClient) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.context_window: int = inner.context_window

    def count_tokens(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> tuple[int, bool]:
        return self.inner.count_tokens(messages, tools)

    def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], on_token: Any = None
    ) -> Any:
        try:
            return self.inner.complete(messages, tools, on_token)
        except EmbeddedClientError as err:
            raise ModelError(str(err)) from err

    def sampled(self, temperature: float, seed: int | None) -> AgentFacingClient:
        """The same model sampling at ``temperature`` with its own seed (one of several attempts)."""
        return AgentFacingClient(self.inner.sampled(temperature, seed))
