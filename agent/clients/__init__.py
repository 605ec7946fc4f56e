"""Model clients the agent side owns, and ``make_client`` that picks one from a spec.

Specs (``ACCEPTED``):

- ``scripted:FILE``: replies from a JSONL file (``scripted.py``);
- ``anthropic:NAME``: the Anthropic Messages API (``anthropic.py``; ``ANTHROPIC_API_KEY``);
- ``openai[:NAME]``: the OpenAI Responses API (``responses.py``; ``OPENAI_API_KEY``);
- ``deepseek:NAME``: DeepSeek's chat completions (``deepseek.py``; ``DEEPSEEK_API_KEY``);
- ``ollama:NAME``: a model served by Ollama on this machine (``local.py``; no key);
- ``local:URL``: any OpenAI-compatible server at that base URL (``local.py``; no key needed);
- ``remote[:NAME]``: OpenAI chat completions at ``CODEAGENT_BASE_URL``/``OPENAI_BASE_URL``
  (``remote.py``), for any OpenAI-compatible endpoint.

With no NAME the name comes from the environment (``CODEAGENT_MODEL``, ``OPENAI_MODEL``).
``settings`` (``base_url``, ``api_key``, ``context_window``... from flags and the config
file) win over each provider's environment variables (``settings.py``). Checkpoint paths and
aliases of the embedded runtime are not handled here: only the wiring in ``codeagent.tui``
may import the backend, so it resolves those before calling ``make_client`` (any spec not
starting with one of ``SPEC_PREFIXES``), and anything else is an ``UnknownModelSpec`` listing
what is accepted. Client modules are imported on first use, so importing this package is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeagent.agent.protocol import ModelClient, ModelError

ACCEPTED = (
    "scripted:FILE",
    "anthropic:NAME",
    "openai",
    "openai:NAME",
    "deepseek:NAME",
    "ollama:NAME",
    "local:URL",
    "remote",
    "remote:NAME",
)


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


def _anthropic(rest: str, start: int, settings: dict[str, Any]) -> ModelClient:
    from codeagent.agent.clients.anthropic import AnthropicClient
    from codeagent.agent.clients.settings import ANTHROPIC, RemoteSettings

    model = rest or settings.pop("model", None)
    return AnthropicClient(RemoteSettings.from_env(model=model, provider=ANTHROPIC, **settings))


def _openai(rest: str, start: int, settings: dict[str, Any]) -> ModelClient:
    from codeagent.agent.clients.responses import ResponsesClient
    from codeagent.agent.clients.settings import OPENAI, RemoteSettings

    model = rest or settings.pop("model", None)
    return ResponsesClient(RemoteSettings.from_env(model=model, provider=OPENAI, **settings))


def _deepseek(rest: str, start: int, settings: dict[str, Any]) -> ModelClient:
    from codeagent.agent.clients.deepseek import DeepSeekClient
    from codeagent.agent.clients.settings import DEEPSEEK, RemoteSettings

    model = rest or settings.pop("model", None)
    return DeepSeekClient(RemoteSettings.from_env(model=model, provider=DEEPSEEK, **settings))


def _ollama(rest: str, start: int, settings: dict[str, Any]) -> ModelClient:
    from codeagent.agent.clients.local import OllamaClient
    from codeagent.agent.clients.settings import OLLAMA, RemoteSettings

    model = rest or settings.pop("model", None)
    return OllamaClient(RemoteSettings.from_env(model=model, provider=OLLAMA, **settings))


def _local(rest: str, start: int, settings: dict[str, Any]) -> ModelClient:
    from codeagent.agent.clients.local import UNNAMED, LocalClient
    from codeagent.agent.clients.settings import LOCAL, RemoteSettings

    if not rest:
        raise UnknownModelSpec("local: needs a base URL, e.g. --model local:http://127.0.0.1:8000/v1")
    settings.pop("base_url", None)  # the spec names the URL
    model = settings.pop("model", None)
    client_settings = RemoteSettings.from_env(
        model=model or UNNAMED, base_url=rest, provider=LOCAL, **settings
    )
    return LocalClient(client_settings, named=bool(model))


KINDS: dict[str, Callable[[str, int, dict[str, Any]], ModelClient]] = {
    "scripted": _scripted,
    "anthropic": _anthropic,
    "openai": _openai,
    "deepseek": _deepseek,
    "ollama": _ollama,
    "local": _local,
    "remote": _remote,
}
SPEC_PREFIXES = tuple(f"{kind}:" for kind in KINDS)  # specs this registry takes; the rest are the runtime's


def make_client(spec: str, *, start: int = 0, **settings: Any) -> ModelClient:
    """The client for ``spec``. ``start`` is how many replies a resumed run already consumed
    (used by scripted clients); ``settings`` go to ``RemoteSettings.from_env``."""
    kind, _, rest = spec.strip().partition(":")
    build = KINDS.get(kind)
    if build is None:
        raise UnknownModelSpec(f"unknown model spec {spec!r}; accepted here: {', '.join(ACCEPTED)}")
    return build(rest.strip(), start, dict(settings))
