"""Model clients the agent side owns, and ``make_client`` that picks one from a spec.

Specs: ``scripted:FILE`` (replies from a JSONL file), ``remote[:MODEL]`` /
``openai[:MODEL]`` (an OpenAI-compatible endpoint; with no MODEL the name comes from the
environment). Checkpoint paths and aliases of the embedded runtime are not handled here:
only the wiring in ``codeagent.tui`` may import the backend, so it resolves those before
calling ``make_client``, and anything else is an ``UnknownModelSpec`` listing what is
accepted. Client modules are imported on first use, so importing this package is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeagent.agent.protocol import ModelClient, ModelError

ACCEPTED = ("scripted:FILE", "remote", "remote:MODEL", "openai", "openai:MODEL")


class UnknownModelSpec(ModelError):
    """A model spec this registry does not know (e.g. an embedded-runtime path or alias)."""


def _scripted(rest: str, start: int, settings: dict[str, Any]) -> ModelClient:
    from codeagent.agent.clients.scripted import ScriptedClient

    if not rest:
        raise UnknownModelSpec("scripted: needs a file, e.g. --model scripted:replies.jsonl")
    # settings are the remote endpoint's (base URL, key, window); a script has no use for them
    return ScriptedClient(Path(rest).expanduser(), start=start)


def _remote(rest: str, start: int, settings: dict[str, Any]) -> ModelClient:
    from codeagent.agent.clients.remote import RemoteClient, RemoteSettings

    return RemoteClient(RemoteSettings.from_env(model=rest or settings.pop("model", None), **settings))


KINDS: dict[str, Callable[[str, int, dict[str, Any]], ModelClient]] = {
    "scripted": _scripted,
    "remote": _remote,
    "openai": _remote,
}


def make_client(spec: str, *, start: int = 0, **settings: Any) -> ModelClient:
    """The client for ``spec``. ``start`` is how many replies a resumed run already consumed
    (used by scripted clients); ``settings`` go to ``RemoteSettings.from_env``."""
    kind, _, rest = spec.strip().partition(":")
    build = KINDS.get(kind)
    if build is None:
        raise UnknownModelSpec(f"unknown model spec {spec!r}; accepted here: {', '.join(ACCEPTED)}")
    return build(rest.strip(), start, dict(settings))
