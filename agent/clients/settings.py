"""Settings of the HTTP model clients: one typed object, validated once, and where each
provider's defaults come from.

A value comes from the caller (flags or the config file; None means unset), then the
provider's environment variables, then the provider's default. Each ``Provider`` names its
own variables (``ANTHROPIC_API_KEY``, ``DEEPSEEK_API_KEY``...), so a key set for one provider is
never sent to another. Thinking is opt-in: ``CODEAGENT_THINKING_BUDGET`` (tokens, Anthropic)
and ``CODEAGENT_REASONING_EFFORT`` (``low``/``medium``/``high``, OpenAI Responses).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from codeagent.agent.protocol import ModelError


@dataclass(frozen=True, slots=True)
class Provider:
    """Where one provider's settings come from when the caller does not give them."""

    kind: str  # the spec prefix, as in --model anthropic:NAME
    default_base_url: str
    base_envs: tuple[str, ...] = ()
    key_envs: tuple[str, ...] = ()
    model_envs: tuple[str, ...] = ()
    spec_kinds: tuple[str, ...] = ()  # CODEAGENT_MODEL prefixes whose name this provider takes


OPENAI_COMPATIBLE = Provider(
    "remote",
    "https://api.openai.com/v1",
    base_envs=("CODEAGENT_BASE_URL", "OPENAI_BASE_URL"),
    key_envs=("CODEAGENT_API_KEY", "OPENAI_API_KEY"),
    model_envs=("OPENAI_MODEL",),
    spec_kinds=("remote",),
)
OPENAI = Provider(
    "openai",
    "https://api.openai.com/v1",
    base_envs=("OPENAI_BASE_URL",),
    key_envs=("OPENAI_API_KEY",),
    model_envs=("OPENAI_MODEL",),
    spec_kinds=("openai",),
)
ANTHROPIC = Provider(
    "anthropic",
    "https://api.anthropic.com",
    base_envs=("ANTHROPIC_BASE_URL",),
    key_envs=("ANTHROPIC_API_KEY",),
    spec_kinds=("anthropic",),
)
DEEPSEEK = Provider(
    "deepseek",
    "https://api.deepseek.com",
    base_envs=("DEEPSEEK_BASE_URL",),
    key_envs=("DEEPSEEK_API_KEY",),
    spec_kinds=("deepseek",),
)
OLLAMA = Provider("ollama", "http://127.0.0.1:11434/v1", spec_kinds=("ollama",))
LOCAL = Provider("local", "http://127.0.0.1:8000/v1")


@dataclass(slots=True)
class RemoteSettings:
    base_url: str
    api_key: str | None
    model: str
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_retries: int = 5
    context_window: int = 128_000
    temperature: float | None = None
    max_tokens: int | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    backoff_s: float = 1.0  # first retry waits up to this long; each later one doubles it
    max_backoff_s: float = 60.0
    stream: bool = True
    thinking_budget: int | None = None  # Anthropic extended thinking, in tokens; None: off
    reasoning_effort: str | None = None  # OpenAI Responses reasoning effort; None: the model's default

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ModelError(f"base URL must start with http:// or https://, not {self.base_url!r}")
        if not self.model:
            raise ModelError("the remote model has no name")
        if self.max_retries < 0 or self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ModelError("max_retries must be >= 0 and timeouts > 0")
        if self.thinking_budget is not None and self.thinking_budget < 1024:
            raise ModelError(f"the thinking budget must be at least 1024 tokens, not {self.thinking_budget}")

    @classmethod
    def from_env(
        cls,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        env: Mapping[str, str] | None = None,
        provider: Provider = OPENAI_COMPATIBLE,
        **options: Any,
    ) -> RemoteSettings:
        """Settings from flags or config values (the arguments; None means unset), then the
        provider's environment variables, then its defaults."""
        env = os.environ if env is None else env
        model = model or _model_from_env(env, provider)
        if not model:
            hint = f"use --model {provider.kind}:NAME"
            if provider.model_envs:
                hint += f", or set CODEAGENT_MODEL or {' or '.join(provider.model_envs)}"
            raise ModelError(f"the {provider.kind} model has no name: {hint}")
        base_url = base_url or _first(env, provider.base_envs) or provider.default_base_url
        api_key = api_key or _first(env, provider.key_envs)
        given = {name: value for name, value in options.items() if value is not None}
        if "thinking_budget" not in given and env.get("CODEAGENT_THINKING_BUDGET", "").isdigit():
            given["thinking_budget"] = int(env["CODEAGENT_THINKING_BUDGET"])
        if "reasoning_effort" not in given and env.get("CODEAGENT_REASONING_EFFORT"):
            given["reasoning_effort"] = env["CODEAGENT_REASONING_EFFORT"]
        return cls(base_url=base_url, api_key=api_key, model=model, **given)


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((env[name] for name in names if env.get(name)), None)


def _model_from_env(env: Mapping[str, str], provider: Provider) -> str | None:
    # CODEAGENT_MODEL is also the CLI's default model spec, so it may read "remote:NAME" or
    # name another kind of model altogether ("scripted:FILE"), which is no model name here.
    kind, colon, name = (env.get("CODEAGENT_MODEL") or "").partition(":")
    if kind in provider.spec_kinds and name:
        return name
    if kind and not colon and provider is OPENAI_COMPATIBLE:
        return kind  # a bare name, as CODEAGENT_MODEL=gpt-4o with --model remote
    return _first(env, provider.model_envs)
