"""What ``codeagent fix`` takes and gives: ``FixOptions`` and ``FixResult`` (its exit codes).

``FixOptions.run`` is the ``RunConfig`` every front end sets its runs up with; the rest is
``fix``'s own: a dirty tree, pushing, the pull request and where it goes, extra secrets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from codeagent.agent.attempts import AttemptPlan
from codeagent.agent.run import RunConfig
from codeagent.sandbox.gitpush import HostToken


class PullRequests(Protocol):
    """Where ``--pr`` opens a pull request (``github.GitHubClient`` is one, by shape)."""

    def create_pull_request(self, head: str, base: str, title: str, body: str) -> str:
        """Open it; its URL."""
        ...


@dataclass(slots=True)
class FixOptions:
    root: Path
    run: RunConfig = field(default_factory=RunConfig)  # tools, budgets, mode, sandbox, pinned prefix
    allow_dirty: bool = False
    push: bool = False
    pr: bool = False
    pull_requests: PullRequests | None = None  # where ``pr`` opens one
    secret_values: dict[str, str] = field(default_factory=dict)  # name -> value, besides the environment's
    attempts: AttemptPlan | None = None  # ``--attempts N`` (N > 1): ``fix_attempts.py``
    push_token: HostToken | None = None  # pushes to its host's https URLs send it (``gitops.push_token``)


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
    confinement: str | None = None  # where commands ran: bubblewrap, landlock+seccomp, landlock or none
    attempts: dict[str, Any] | None = None  # with --attempts N: each attempt's outcome, the winner, why

    @property
    def exit_code(self) -> int:
        return {"resolved": 0, "unresolved": 1, "refused": 4, "interrupted": 130}.get(self.status, 3)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"exit_code": self.exit_code}
