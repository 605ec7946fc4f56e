"""What the command line decided for the terminal UI, once: the repository, the model (and
how to build a client for it) and how its runs are set up (``agent.run.RunConfig``; the
limits apply to each user message). Plain data, so the command line builds it without
loading Textual."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from codeagent.agent.protocol import ModelClient
from codeagent.agent.run import RunConfig
from codeagent.agent.settings import Settings

ClientBuilder = Callable[[str, int], ModelClient]  # (model spec, replies already consumed) -> client


@dataclass(slots=True)
class Setup:
    root: Path
    model: str
    clients: ClientBuilder  # raises ModelError when the model cannot be had
    config: RunConfig = field(default_factory=lambda: RunConfig(mode="ask"))
    client: ModelClient | None = None  # built already (cheap specs); None: built on the worker
    settings: Settings | None = None  # the settings in effect and their sources, for /help; None: not known
