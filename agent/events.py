"""Events the loop emits while it works; UIs, logs and the JSON result subscribe to them.

Attributes go down (the loop is given a sink), events come up. A sink must not block for
long: the TUI forwards them to its own thread, the headless mode prints or ignores them.
``redacting`` puts a filter in front of a sink (the session passes every field of every event
through the run's known secrets, so no UI or log shows one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(slots=True)
class Event:
    pass


@dataclass(slots=True)
class StepStarted(Event):
    step: int


@dataclass(slots=True)
class TokenStreamed(Event):
    text: str  # "" for a token that shows nothing (a tool call being written): progress only


@dataclass(slots=True)
class AssistantMessage(Event):
    content: str
    reasoning: str
    usage: dict[str, int]
    elapsed_s: float
    decode_tokens_per_s: float | None = None  # when the client measured it (the embedded runtime does)


@dataclass(slots=True)
class ToolCallStarted(Event):
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class ToolCallFinished(Event):
    call_id: str
    name: str
    ok: bool
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0


@dataclass(slots=True)
class PlanUpdated(Event):
    plan: list[dict[str, str]]


@dataclass(slots=True)
class Compacted(Event):
    tokens_before: int
    tokens_after: int


@dataclass(slots=True)
class RunFinished(Event):
    status: str  # "finished", "budget", "error", "interrupted"
    message: str


@dataclass(slots=True)
class AttemptEvent(Event):
    """An event of one of several attempts at once (``fix --attempts N``), numbered from 1."""

    attempt: int
    event: Event


EventSink = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """A sink that drops events (headless runs that only want the result)."""


def redacting(sink: EventSink, redact: Callable[[Any], Any]) -> EventSink:
    """``sink`` behind ``redact``: every field of every event passes through it first."""

    def forward(event: Event) -> None:
        sink(replace(event, **{f.name: redact(getattr(event, f.name)) for f in fields(event)}))

    return forward
