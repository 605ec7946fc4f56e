"""The chat screen: transcript, plan, activity line, approval panel, prompt and status bar,
and how each message from the agent's worker shows on them.

Attributes down, messages up: the app tells the screen what the user did (``sent``,
``stopping``, ``answered``, ``clear``) and the worker's messages (``messages``) arrive here
in the order they happened; each handler mounts or updates one transcript entry or panel.
The status bar and the plan panel follow the ``stats`` and ``plan`` reactives (bound with
``data_bind``), so a handler only sets them. ``WorkDone`` bubbles on to the app, which takes
the next queued message.

Time is read from ``clock`` (``time.monotonic`` by default) for everything shown: the
elapsed time, tool durations and decode speed are measured here, not taken from the
events, so a frozen clock gives the same screen every time (the snapshot tests rely on it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import AwaitMount, Widget

from codeagent.agent import events as ev
from codeagent.agent.interactive import Session
from codeagent.tui.app import messages as msg
from codeagent.tui.app.attach import Attached, list_files
from codeagent.tui.app.entries import (
    AssistantEntry,
    DiffEntry,
    FinalEntry,
    Foldable,
    NoticeEntry,
    ReasoningEntry,
    ToolEntry,
    TranscriptView,
    UserEntry,
)
from codeagent.tui.app.history import History
from codeagent.tui.app.panels import WRITING, ActivityLine, ApprovalPanel, PlanPanel, StatusBar
from codeagent.tui.app.prompt import Completions, PromptInput
from codeagent.tui.app.replay import entries
from codeagent.tui.app.status import Stats, count

PLACEHOLDER = "Describe a task · Enter sends · Ctrl+J new line · @file attaches · /help"
MIN_RATE_WINDOW_S = 0.2  # a reply that took less tells nothing about decode speed (a script, a cache)
MIN_SHOWN_S = 0.1  # a tool call that took less shows no duration


class ChatScreen(Screen[None]):
    stats: reactive[Stats] = reactive(Stats)
    plan: reactive[list[dict[str, str]]] = reactive(list)

    def __init__(
        self, session: Session, stats: Stats, clock: Callable[[], float], history: History, root: Path
    ) -> None:
        super().__init__()
        self.set_reactive(ChatScreen.stats, stats)
        self.session = session  # read here for its model only, while the worker reports
        self.clock = clock
        self.history = history
        self.root = root
        self.phase: str | None = None
        self.model_loading = False
        self.interrupting = False
        self.tools: dict[str, ToolEntry] = {}  # running, by call id
        self.reply: AssistantEntry | None = None  # being streamed
        self.tokens = 0  # streamed in the current reply, shown and not
        self.started_at = self.step_at = self.token_at = self.tool_at = 0.0
        self._files: list[str] | None = None
        self.composed = asyncio.Event()  # set once its widgets are mounted

    @property
    def ready(self) -> bool:
        """A model is there to send to (none is loading)."""
        return not self.model_loading and self.session.client is not None

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield TranscriptView(id="transcript")
            yield PlanPanel(id="plan", classes="-empty").data_bind(ChatScreen.plan)
        yield ActivityLine(id="activity", classes="-idle")
        yield ApprovalPanel(id="approval", classes="-idle")
        completions = Completions(id="completions", classes="-idle")
        yield completions
        yield PromptInput(self.history, self.files, completions, id="prompt", placeholder=PLACEHOLDER)
        yield StatusBar(id="status").data_bind(ChatScreen.stats)

    def on_mount(self) -> None:
        self.query_one(PromptInput).focus()
        self.set_interval(0.5, self.tick)
        self.composed.set()

    # what the screen shows

    @property
    def transcript(self) -> TranscriptView:
        return self.query_one(TranscriptView)

    def add(self, widget: Widget, before: Widget | None = None) -> AwaitMount:
        return self.transcript.mount(widget, before=before)

    def notice(self, text: str | Text, kind: str = "info") -> AwaitMount:
        return self.add(NoticeEntry(text, kind))

    def files(self) -> list[str]:
        """The repository's files, for ``@`` completion: listed again after each turn."""
        if self._files is None:
            self._files = list_files(self.root)
        return self._files

    def set_phase(self, phase: str | None) -> None:
        self.phase = phase
        self.tick()

    def tick(self) -> None:
        try:
            activity = self.query_one(ActivityLine)
        except NoMatches:  # a timer firing while the screen is built or torn down
            return
        if self.phase is None:
            activity.show(None)
            return
        now = self.clock()
        self.stats = replace(self.stats, elapsed=now - self.started_at)
        activity.working(self.phase, now, now - self.started_at, self.tokens, self.ready)

    # what the user did (the app calls these)

    def begin(self, phase: str) -> None:
        """Work starts now: its time counts from here."""
        self.started_at = self.clock()
        self.set_phase(phase)

    def sent(self, text: str, attached: Attached) -> None:
        self.transcript.anchor()  # follow the new turn, even after the user scrolled back
        self.add(UserEntry(text, attached.files))
        for problem in attached.problems:
            self.notice(problem, "warn")
        self.interrupting = False
        self.begin("starting")

    def stopping(self) -> None:
        self.interrupting = True
        self.query_one(ApprovalPanel).close()
        self.query_one(PromptInput).focus()
        self.set_phase("stopping")

    def answered(self) -> None:
        self.query_one(ApprovalPanel).close()
        self.query_one(PromptInput).focus()
        self.tool_at = self.clock()  # the tool's time starts now, not when it asked
        self.set_phase("running")

    def clear(self) -> None:
        self.transcript.remove_children()
        self.plan = []
        self.stats = replace(self.stats, steps=0, context=0)
        self.notice("new conversation (the files keep their changes; /undo still works)")

    # what the agent did

    def on_step_started(self, message: msg.StepStarted) -> None:
        self.stats = replace(self.stats, steps=message.event.step)
        self.reply, self.tokens, self.step_at = None, 0, self.clock()
        self.set_phase(f"the model is reading {count(self.stats.context)} tokens")

    async def on_token_streamed(self, message: msg.TokenStreamed) -> None:
        self.tokens += 1
        if self.tokens == 1:
            self.token_at = self.clock()
            self.set_phase(WRITING)
        if not message.event.text:
            return  # a token that shows nothing (a tool call, reasoning): counted, not drawn
        if self.reply is None:
            self.reply = AssistantEntry()
            await self.add(self.reply)
        await self.reply.write(message.event.text)

    async def on_assistant_message(self, message: msg.AssistantMessage) -> None:
        event = message.event
        if event.reasoning.strip():
            await self.add(ReasoningEntry(event.reasoning), before=self.reply)
        if self.reply is not None:
            await self.reply.settle(event.content)
        elif event.content.strip():
            await self.add(AssistantEntry(event.content))
        self.stats = self._replied(event)
        self.reply = None

    def _replied(self, event: ev.AssistantMessage) -> Stats:
        """The stats after a reply: its tokens, and its decode speed (the client's, or measured)."""
        usage = event.usage
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        took = self.clock() - (self.token_at if self.tokens else self.step_at)
        measured = completion / took if took >= MIN_RATE_WINDOW_S else None
        rate = event.decode_tokens_per_s or measured
        cached = usage.get("cached_tokens", 0)
        return replace(self.stats, prompt=prompt, cached=cached, context=prompt + completion, rate=rate)

    async def on_tool_call_started(self, message: msg.ToolCallStarted) -> None:
        event = message.event
        self.tool_at = self.clock()
        self.set_phase(f"running {event.name}")
        if event.name != "finish":
            self.tools[event.call_id] = ToolEntry(event.name, event.arguments)
            await self.add(self.tools[event.call_id])

    async def on_tool_call_finished(self, message: msg.ToolCallFinished) -> None:
        event = message.event
        took = self.clock() - self.tool_at
        if event.name == "finish" and event.ok:
            await self.add(FinalEntry(str(event.data.get("summary") or event.text)))
            return
        entry = self.tools.pop(event.call_id, None)
        if entry is None:
            entry = ToolEntry(event.name, {})
            await self.add(entry)
        shown = took if took >= MIN_SHOWN_S else None
        entry.finish(event.ok, event.text, shown, self.interrupting and not event.ok)
        if event.ok and event.data.get("diff"):
            await self.add(DiffEntry(str(event.data["diff"])))
        self.set_phase("the model is reading the result")

    def on_plan_updated(self, message: msg.PlanUpdated) -> None:
        self.plan = list(message.event.plan)

    async def on_compacted(self, message: msg.Compacted) -> None:
        before, after = count(message.event.tokens_before), count(message.event.tokens_after)
        await self.notice(f"context compacted: {before} → {after} tokens")

    async def on_run_finished(self, message: msg.RunFinished) -> None:
        event = message.event
        if self.reply is not None:  # a reply cut short: what it wrote so far stays
            await self.reply.settle(self.reply.text)
            self.reply = None
        if event.status == "interrupted":
            await self.notice("⏹ interrupted; the conversation is kept: send a message to go on", "warn")
        elif event.status == "budget":
            await self.notice(f"stopped: {event.message}; send a message to go on", "warn")
        elif event.status != "finished":
            await self.notice(f"stopped: {event.message}", "error")

    # what the app's worker reported

    def on_context_measured(self, message: msg.ContextMeasured) -> None:
        self.stats = replace(self.stats, context=message.tokens, exact=message.exact, window=message.window)

    def on_approval_needed(self, message: msg.ApprovalNeeded) -> None:
        running = [entry for entry in self.tools.values() if entry.tool == message.request.tool]
        if running:
            running[-1].waiting()
        self.query_one(ApprovalPanel).ask(message.preview, message.request.kind)
        self.set_phase("waiting for your approval")
        self.app.bell()

    def on_model_loading(self, message: msg.ModelLoading) -> None:
        self.model_loading = True
        self.stats = replace(self.stats, model=message.spec)
        self.begin(f"loading {message.spec}")

    async def on_model_ready(self, message: msg.ModelReady) -> None:
        self.model_loading = False
        self.stats = replace(self.stats, model=message.name, window=message.window)
        await self.notice(f"model ready: {message.name} ({count(message.window)} tokens of context)", "ok")

    async def on_model_failed(self, message: msg.ModelFailed) -> None:
        self.model_loading = False
        client = self.session.client
        self.stats = replace(self.stats, model=client.name if client else "no model")
        await self.notice(f"model: {message.message}; /model SPEC picks another", "error")

    async def on_resumed(self, message: msg.Resumed) -> None:
        state = message.state
        await self.transcript.remove_children()
        await self.transcript.mount_all(entries(state.messages[1:]))
        self.plan = list(state.plan)
        self.stats = replace(self.stats, steps=state.steps)
        await self.notice(f"resumed session {message.run_id} ({state.steps} steps); send a message to go on")

    async def on_work_crashed(self, message: msg.WorkCrashed) -> None:
        head = Text("codeagent hit a bug; the session goes on (Enter on this line shows the traceback)")
        await self.add(Foldable(head, message.error, classes="crash"))

    def on_work_done(self, message: msg.WorkDone) -> None:
        self.set_phase(None)
        self.interrupting = False
        self._files = None  # the agent may have added files: list them again on the next @
        self.query_one(ApprovalPanel).close()
