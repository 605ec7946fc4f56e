"""Model clients the agent side owns, and ``make_client`` that picks one from a spec.

Specs: ``scripted:FILE`` (replies from a JSONL file) and ``remote:MODEL`` / ``openai:MODEL``
(an OpenAI-compatible endpoint). Paths and aliases of the embedded runtime are resolved by
the wiring in ``codeagent.tui``, which alone may import the backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codeagent.agent.protocol import ModelClient, ModelError

KINDS = ("scripted:FILE", "remote:MODEL", "openai:MODEL")


class UnknownModelSpec(ModelError):
    pass


def make_client(spec: str, *, start: int = 0, **settings: Any) -> ModelClient:
    kind, _, rest = spec.partition(":")
    if kind == "scripted" and rest:
        from codeagent.agent.clients.scripted import ScriptedClient

        return ScriptedClient(Path(rest).expanduser(), start=start)
    if kind in ("remote", "openai"):
        from codeagent.agent.clients.remote import RemoteClient, RemoteSettings

        return RemoteClient(RemoteSettings.resolve(model=rest or None, **settings))
    raise UnknownModelSpec(f"unknown model {spec!r}; accepted here: {', '.join(KINDS)}")
