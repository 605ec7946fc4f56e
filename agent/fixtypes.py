"""What ``codeagent fix`` takes and gives: ``FixOptions`` and ``FixResult`` (its exit codes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from codeagent.agent.loop import Limits
from codeagent.tools.base import ToolSettings


@dataclass(slots=True)
class FixOptions:
    root: Path
    allow_dirty: bool = False
    push: bool = False
    pr: bool = False
    limits: Limits = field(default_factory=Limits)
    settings: ToolSettings = field(default_factory=ToolSettings)
    repo_map: bool = True
    mode: str = "full-auto"
    sandbox: bool = True  # run the model's commands confined (bubblewrap); off only with consent
    network: bool = False  # let sandboxed commands reach the network
    publish: Callable[[str, str, str, str], str] | None = None  # (head, base, title, body) -> PR url
    codebase_share: float = 0.5  # of the window, for the whole codebase in the pinned prefix; 0: never
    secret_values: dict[str, str] = field(default_factory=dict)  # name -> value, besides the environment's


@dataclass(slots=True)
class FixResult:
    status: str  # resolved | unresolved | refused | error | interrupted
    message: str
    run_id: str
    branch: str | None = None
    base_commit: str | None = None
    commit: str | None = None
    files_changed: list[str] = field(default_factory=list)
    tests_before: dict[str, Any] = field(default_factory=dict)
    tests_after: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)  # totals and each model call's tokens
    wall_time_s: float = 0.0
    transcript: str | None = None
    summary: str | None = None
    agent_status: str | None = None
    pull_request: str | None = None
    stash: str | None = None

    @property
    def exit_code(self) -> int:
        return {"resolved": 0, "unresolved": 1, "refused": 4, "interrupted": 130}.get(self.status, 3)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"exit_code": self.exit_code}
