"""What the conversation's worker reports to the app, besides the loop's own events.

Plain dataclasses, so the conversation does not depend on Textual: the app wraps each in
an ``AgentUpdate`` message and dispatches on its type.
"""

from __future__ import annotations

from dataclasses import dataclass

from codeagent.agent.record import RunState
from codeagent.sandbox.policy import Request
from codeagent.tui.app.preview import Preview


@dataclass(slots=True)
class ModelLoading:
    spec: str


@dataclass(slots=True)
class ModelReady:
    name: str
    window: int


@dataclass(slots=True)
class ModelFailed:
    message: str


@dataclass(slots=True)
class ContextMeasured:
    tokens: int
    exact: bool
    window: int


@dataclass(slots=True)
class ApprovalNeeded:
    request: Request
    preview: Preview


@dataclass(slots=True)
class Resumed:
    run_id: str
    state: RunState


@dataclass(slots=True)
class Idle:
    """The worker is done (a message answered, a model loaded, a session resumed, or a crash)."""


@dataclass(slots=True)
class WorkerCrashed:
    error: str  # a traceback: a bug in codeagent, shown rather than hidden
