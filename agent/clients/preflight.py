"""Is a provider's endpoint usable? One quick look before ``fix`` touches the repository.

``endpoint_problem(kind, settings)`` says, in one line, why the endpoint of a ``--model
KIND:NAME`` spec cannot be used now, or None when it can:

1. a provider that needs a key (``NEEDS_KEY``: Anthropic, OpenAI, DeepSeek, and ``remote``
   pointed at OpenAI's own API) has none: the line names the variables that would hold it;
2. one ``GET`` of the provider's model listing (``{base}/models``; Anthropic's
   ``{base}/v1/models``) with a short timeout and no retry: no answer (refused, unknown host,
   timed out) or an answer of 401/403 (the key refused) is a problem; any other answer,
   404 included (llama.cpp and some proxies have no listing), shows that the endpoint lives.

Limits: it checks reachability and the key, not the model name (a listing may be partial,
and some servers accept any name); the request's own errors still say the rest. A server
that answers the listing but fails the chat route is found by the run, as before.
"""

from __future__ import annotations

import httpx

from codeagent.agent.clients.settings import (
    ANTHROPIC,
    DEEPSEEK,
    OPENAI,
    OPENAI_COMPATIBLE,
    Provider,
    RemoteSettings,
)

TIMEOUT = httpx.Timeout(5.0, connect=3.0)
PROVIDERS = {p.kind: p for p in (ANTHROPIC, OPENAI, DEEPSEEK, OPENAI_COMPATIBLE)}
NEEDS_KEY = {"anthropic", "openai", "deepseek"}
ANTHROPIC_VERSION = "2023-06-01"


def endpoint_problem(kind: str, settings: RemoteSettings) -> str | None:
    """Why ``settings``' endpoint cannot serve a ``kind:`` spec now; None when it can."""
    missing = _missing_key(kind, settings)
    if missing:
        return missing
    url, headers = _listing(kind, settings)
    try:
        response = httpx.get(url, headers=headers, timeout=TIMEOUT, follow_redirects=True)
    except httpx.HTTPError as err:
        return f"the model endpoint {settings.base_url} does not answer ({_reason(err)}); {_ways(kind)}"
    if response.status_code in (401, 403):
        return (
            f"the model endpoint {settings.base_url} refused the API key (HTTP {response.status_code}); "
            f"{_key_hint(kind)}"
        )
    return None


def _missing_key(kind: str, settings: RemoteSettings) -> str | None:
    if settings.api_key:
        return None
    official = kind == "remote" and settings.base_url == OPENAI_COMPATIBLE.default_base_url
    if kind not in NEEDS_KEY and not official:
        return None
    where = (
        ""
        if kind != "remote"
        else f" (the endpoint is {settings.base_url}; set CODEAGENT_BASE_URL for another)"
    )
    return f"no API key for --model {kind}:{settings.model}{where}: {_key_hint(kind)}"


def _key_hint(kind: str) -> str:
    provider: Provider | None = PROVIDERS.get(kind)
    names = " or ".join(provider.key_envs) if provider and provider.key_envs else "a variable"
    return f"set {names}, or name the variable with --api-key-env NAME"


def _ways(kind: str) -> str:
    if kind in ("local", "ollama"):
        return "start the server, or check the URL (it usually ends in /v1)"
    return "check the network and --base-url, or use a local model (--model PATH, --model local:URL)"


def _listing(kind: str, settings: RemoteSettings) -> tuple[str, dict[str, str]]:
    key = settings.api_key
    if kind == "anthropic":
        headers = {"anthropic-version": ANTHROPIC_VERSION, **({"x-api-key": key} if key else {})}
        return f"{settings.base_url}/v1/models", headers
    return f"{settings.base_url}/models", ({"Authorization": f"Bearer {key}"} if key else {})


def _reason(err: httpx.HTTPError) -> str:
    if isinstance(err, httpx.TimeoutException):
        return "timed out"
    return str(err) or type(err).__name__
