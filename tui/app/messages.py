"""What the agent's worker tells the screen: one Textual ``Message`` per kind of thing.

- Each kind of agent event (``agent.events``) has its message class here, named after it
  (``StepStarted`` wraps an ``events.StepStarted``); ``for_event`` picks it.
- The app's own reports: a model loading, ready or failed; the conversation measured; an
  approval wanted; a session resumed; the worker's turn done or crashed.

Textual routes each to the handler its class name gives (``StepStarted`` ->
``on_step_started``). The worker posts all of them to the one chat screen
(``post_message`` is thread-safe), so they are handled in the order they happened, the
turn's ``WorkDone`` last; that one bubbles on to the app, which then takes the next
queued message.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from textual.message import Message

from codeagent.agent import events as ev
from codeagent.agent.record import RunState
from codeagent.sandbox.policy import ApprovalRequest
from codeagent.tui.app.preview import Preview

E = TypeVar("E", bound=ev.Event)


class AgentEvent(Message, Generic[E]):
    """An event of the agent loop, as it came."""

    def __init__(self, event: E) -> None:
        super().__init__()
        self.event = event


class StepStarted(AgentEvent[ev.StepStarted]):
    pass


class TokenStreamed(AgentEvent[ev.TokenStreamed]):
    pass


class AssistantMessage(AgentEvent[ev.AssistantMessage]):
    pass


class ToolCallStarted(AgentEvent[ev.ToolCallStarted]):
    pass


class ToolCallFinished(AgentEvent[ev.ToolCallFinished]):
    pass


class PlanUpdated(AgentEvent[ev.PlanUpdated]):
    pass


class Compacted(AgentEvent[ev.Compacted]):
    pass


class RunFinished(AgentEvent[ev.RunFinished]):
    pass


EVENTS: dict[type[ev.Event], type[AgentEvent]] = {
    ev.StepStarted: StepStarted,
    ev.TokenStreamed: TokenStreamed,
    ev.AssistantMessage: AssistantMessage,
    ev.ToolCallStarted: ToolCallStarted,
    ev.ToolCallFinished: ToolCallFinished,
    ev.PlanUpdated: PlanUpdated,
    ev.Compacted: Compacted,
    ev.RunFinished: RunFinished,
}


def for_event(event: ev.Event) -> AgentEvent:
    """The message that carries ``event``; KeyError for a kind of event with none (a bug)."""
    return EVENTS[type(event)](event)


class ModelLoading(Message):
    def __init__(self, spec: str) -> None:
        super().__init__()
        self.spec = spec


class ModelReady(Message):
    def __init__(self, name: str, window: int) -> None:
        super().__init__()
        self.name = name
        self.window = window


class ModelFailed(Message):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class ContextMeasured(Message):
    def __init__(self, tokens: int, exact: bool, window: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.exact = exact
        self.window = window


class ApprovalNeeded(Message):
    def __init__(self, request: ApprovalRequest, preview: Preview) -> None:
        super().__init__()
        self.request = request
        self.preview = preview


class Resumed(Message):
    def __init__(self, run_id: str, state: RunState) -> None:
        super().__init__()
        self.run_id = run_id
        self.state = state


class WorkCrashed(Message):
    """A bug in codeagent stopped the worker's turn: shown rather than hidden."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error  # the traceback


class WorkDone(Message):
    """The worker's turn is over (a message answered, a model loaded, a session resumed, or a
    crash); everything it reported came before this."""
