"""The Textual app: the transcript, the plan, the prompt and the status bar around one
``Conversation``.

Messages up, attributes down: the conversation's worker thread posts each event as an
``AgentUpdate`` (``post_message`` is thread-safe), handled here in order on the UI thread,
which mounts or updates one entry per event; the app calls the conversation's methods. The
screen never waits on the model or a tool: while the worker runs the prompt stays usable,
and a message sent then is queued until the worker is done.

Time is read from ``clock`` (``time.monotonic`` by default) for everything shown: the
elapsed time, tool durations and decode speed are measured here, not taken from the
events, so a frozen clock gives the same screen every time (the snapshot tests rely on it).
Slash commands live in ``slash.SlashCommands``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widget import Widget

from codeagent.agent import events as ev
from codeagent.tui.app import conversation as cv
from codeagent.tui.app.attach import attach, list_files
from codeagent.tui.app.entries import (
    AssistantEntry,
    DiffEntry,
    FinalEntry,
    Foldable,
    NoticeEntry,
    ReasoningEntry,
    ToolEntry,
    Transcript,
    UserEntry,
)
from codeagent.tui.app.history import History
from codeagent.tui.app.panels import ActivityLine, ApprovalPanel, PlanPanel, StatusBar
from codeagent.tui.app.prompt import Completions, PromptInput
from codeagent.tui.app.replay import entries
from codeagent.tui.app.slash import SlashCommands, needs_idle
from codeagent.tui.app.status import SPINNER, Stats, count

QUIT_WINDOW_S = 2.0  # the second Ctrl+C must come within this
PLACEHOLDER = "Describe a task · Enter sends · Ctrl+J new line · @file attaches · /help"


class AgentUpdate(Message):
    def __init__(self, item: Any) -> None:
        super().__init__()
        self.item = item


class CodeAgentApp(SlashCommands, App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "codeagent"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (100, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "escape", "interrupt", priority=True, show=False),
        Binding("ctrl+c", "ctrl_c", "quit", priority=True, show=False),
        Binding("ctrl+o", "details", "tool output", show=False),
    ]

    def __init__(
        self,
        setup: cv.Setup,
        resume: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        history: History | None = None,
    ) -> None:
        super().__init__()
        self.setup = setup
        self.conversation = cv.Conversation(setup, post=lambda item: self.post_message(AgentUpdate(item)))
        self.clock = clock
        self.resume_id = resume
        self.history = history or History()
        client = setup.client
        self.stats = Stats(
            model=client.name if client else setup.model,
            window=client.context_window if client else 0,
            mode=setup.mode,
            sandbox=setup.sandbox,
        )
        self.ready = client is not None
        self.queued: list[str] = []
        self.tools: dict[str, ToolEntry] = {}
        self.reply: AssistantEntry | None = None
        self.phase: str | None = None
        self.started_at = self.step_at = self.token_at = self.tool_at = 0.0
        self.interrupting = False
        self._files: list[str] | None = None
        self._last_ctrl_c = -QUIT_WINDOW_S

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield Transcript(id="transcript")
            yield PlanPanel(id="plan", classes="-empty")
        yield ActivityLine(id="activity", classes="-idle")
        yield ApprovalPanel(id="approval", classes="-idle")
        completions = Completions(id="completions", classes="-idle")
        yield completions
        yield PromptInput(self.history, self.files, completions, id="prompt", placeholder=PLACEHOLDER)
        yield StatusBar(self.stats, id="status")

    def on_mount(self) -> None:
        self.query_one(PromptInput).focus()
        self.welcome()
        self.set_interval(0.5, self.tick)
        if self.resume_id is not None:
            self.resume(self.resume_id)
        elif not self.ready:
            self.conversation.load_model()

    def welcome(self) -> None:
        line = Text.assemble(
            ("codeagent ", "bold"),
            (version("codeagent"), "dim"),
            f" in {self.setup.root.name} · {self.conversation.policy.mode} mode · /help for commands and keys",
        )
        self.add(NoticeEntry(line))
        if not self.setup.sandbox:
            self.add(NoticeEntry("the sandbox is off: the model's commands run as you", "error"))

    # helpers

    @property
    def transcript(self) -> Transcript:
        return self.query_one(Transcript)

    def add(self, widget: Widget, before: Widget | None = None):
        return self.transcript.mount(widget, before=before)

    def notice(self, text: str | Text, kind: str = "info"):
        return self.add(NoticeEntry(text, kind))

    def files(self) -> list[str]:
        if self._files is None:
            self._files = list_files(self.setup.root)
        return self._files

    def set_phase(self, phase: str | None) -> None:
        self.phase = phase
        self.tick()

    def tick(self) -> None:
        activity = self.query_one(ActivityLine)
        if self.phase is None:
            activity.show(None)
            return
        now = self.clock()
        self.stats.elapsed = now - self.started_at
        frame = SPINNER[int(now * 8) % len(SPINNER)]
        activity.show(
            Text.assemble(
                (frame + " ", "bold cyan"),
                self.phase,
                f" · {int(now - self.started_at)}s",
                ("   esc interrupts", "dim"),
            )
        )
        self.query_one(StatusBar).show()

    # sending

    def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
        self.submit(message.text)

    def submit(self, text: str) -> None:
        """Send a message or run a command now, or queue it until the worker is done."""
        command = text.startswith("/")
        waits = needs_idle(text) if command else True
        if (self.conversation.busy and waits) or not (command or self.ready):
            self.queued.append(text)
            waiting = "the model is ready" if not self.ready else "the agent stops"
            self.notice(f"queued until {waiting} (Esc interrupts): {text.splitlines()[0][:60]}")
        elif command:
            self.run_slash(text)
        else:
            self.send(text)

    def send(self, text: str) -> None:
        attached = attach(text, self.setup.root)
        self.add(UserEntry(text, attached.files))
        for problem in attached.problems:
            self.notice(problem, "warn")
        self.started_at = self.clock()
        self.interrupting = False
        self.set_phase("starting")
        self.conversation.send(attached.message)

    # control

    def interrupt(self) -> None:
        if self.conversation.interrupt():
            self.interrupting = True
            self.query_one(ApprovalPanel).close()
            self.query_one(PromptInput).focus()
            self.set_phase("stopping")

    def action_escape(self) -> None:
        completions = self.query_one(Completions)
        if completions.open:
            completions.close()
        else:
            self.interrupt()

    def action_ctrl_c(self) -> None:
        now = time.monotonic()
        if now - self._last_ctrl_c < QUIT_WINDOW_S:
            self.quit()
            return
        self._last_ctrl_c = now
        if self.conversation.busy:
            self.interrupt()
        else:
            self.query_one(PromptInput).clear()
        self.notify("Press Ctrl+C again to quit", timeout=QUIT_WINDOW_S)

    def quit(self) -> None:
        self.conversation.interrupt()
        self.exit(0)

    def action_details(self) -> None:
        blocks = list(self.query(ToolEntry))
        expand = any(not block.expanded for block in blocks)
        for block in blocks:
            block.expanded = expand

    def on_approval_panel_answered(self, message: ApprovalPanel.Answered) -> None:
        self.query_one(ApprovalPanel).close()
        self.query_one(PromptInput).focus()
        self.conversation.answer(message.choice)
        self.tool_at = self.clock()  # the tool's time starts now, not when it asked
        self.set_phase("running")

    # what the worker reports

    async def on_agent_update(self, message: AgentUpdate) -> None:
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(message.item).__name__).lower()
        handler = getattr(self, f"got_{name}", None)
        if handler is not None:
            await handler(message.item)

    async def got_step_started(self, event: ev.StepStarted) -> None:
        self.stats.steps = event.step
        self.reply, self.token_at, self.step_at = None, 0.0, self.clock()
        self.set_phase(f"the model is reading {count(self.stats.context)} tokens")

    async def got_token_streamed(self, event: ev.TokenStreamed) -> None:
        if self.reply is None:
            self.reply = AssistantEntry()
            await self.add(self.reply)
            self.token_at = self.clock()
            self.set_phase("the model is writing")
        await self.reply.write(event.text)

    async def got_assistant_message(self, event: ev.AssistantMessage) -> None:
        if event.reasoning.strip():
            await self.add(ReasoningEntry(event.reasoning), before=self.reply)
        if self.reply is not None:
            await self.reply.settle(event.content)
        elif event.content.strip():
            await self.add(AssistantEntry(event.content))
        usage = event.usage
        self.stats.prompt, self.stats.cached = usage.get("prompt_tokens", 0), usage.get("cached_tokens", 0)
        self.stats.context = self.stats.prompt + usage.get("completion_tokens", 0)
        took = self.clock() - (self.token_at or self.step_at)
        self.stats.rate = usage.get("completion_tokens", 0) / took if took > 0 else None
        self.reply = None
        self.query_one(StatusBar).show()

    async def got_tool_call_started(self, event: ev.ToolCallStarted) -> None:
        self.tool_at = self.clock()
        self.set_phase(f"running {event.name}")
        if event.name != "finish":
            self.tools[event.call_id] = ToolEntry(event.name, event.arguments)
            await self.add(self.tools[event.call_id])

    async def got_tool_call_finished(self, event: ev.ToolCallFinished) -> None:
        took = self.clock() - self.tool_at
        if event.name == "finish" and event.ok:
            await self.add(FinalEntry(str(event.data.get("summary") or event.text)))
            return
        entry = self.tools.pop(event.call_id, None)
        if entry is None:
            entry = ToolEntry(event.name, {})
            await self.add(entry)
        entry.finish(event.ok, event.text, took if took >= 0.1 else None, self.interrupting and not event.ok)
        if event.ok and event.data.get("diff"):
            await self.add(DiffEntry(str(event.data["diff"])))
        self.set_phase("the model is reading the result")

    async def got_plan_updated(self, event: ev.PlanUpdated) -> None:
        self.query_one(PlanPanel).show(event.plan)

    async def got_compacted(self, event: ev.Compacted) -> None:
        await self.notice(
            f"context compacted: {count(event.tokens_before)} → {count(event.tokens_after)} tokens"
        )

    async def got_run_finished(self, event: ev.RunFinished) -> None:
        if event.status == "interrupted":
            await self.notice("⏹ interrupted; the conversation is kept: send a message to go on", "warn")
        elif event.status == "budget":
            await self.notice(f"stopped: {event.message}; send a message to go on", "warn")
        elif event.status != "finished":
            await self.notice(f"stopped: {event.message}", "error")

    async def got_context_measured(self, item: cv.ContextMeasured) -> None:
        self.stats.context, self.stats.exact, self.stats.window = item.tokens, item.exact, item.window
        self.query_one(StatusBar).show()

    async def got_approval_needed(self, item: cv.ApprovalNeeded) -> None:
        running = [entry for entry in self.tools.values() if entry.tool == item.request.tool]
        if running:
            running[-1].waiting()
        self.query_one(ApprovalPanel).ask(item.preview, item.request.kind)
        self.set_phase("waiting for your approval")
        self.bell()

    async def got_model_loading(self, item: cv.ModelLoading) -> None:
        self.ready = False
        self.stats.model = item.spec
        self.started_at = self.clock()
        self.set_phase(f"loading {item.spec}")

    async def got_model_ready(self, item: cv.ModelReady) -> None:
        self.ready = True
        self.stats.model, self.stats.window = item.name, item.window
        await self.notice(f"model ready: {item.name} ({count(item.window)} tokens of context)", "ok")

    async def got_model_failed(self, item: cv.ModelFailed) -> None:
        self.stats.model = self.conversation.client.name if self.conversation.client else "no model"
        self.ready = self.conversation.client is not None
        await self.notice(f"model: {item.message}; /model SPEC picks another", "error")

    async def got_resumed(self, item: cv.Resumed) -> None:
        await self.transcript.remove_children()
        await self.transcript.mount_all(entries(item.state.messages[1:]))
        self.query_one(PlanPanel).show(item.state.plan)
        self.stats.steps = item.state.steps
        await self.notice(
            f"resumed session {item.run_id} ({item.state.steps} steps); send a message to go on"
        )

    async def got_worker_crashed(self, item: cv.WorkerCrashed) -> None:
        head = Text("codeagent hit a bug; the session goes on (Enter on this line shows the traceback)")
        await self.add(Foldable(head, item.error, classes="crash"))

    async def got_idle(self, item: cv.Idle) -> None:
        self.set_phase(None)
        self.interrupting = False
        self._files = None  # the agent may have added files: list them again on the next @
        self.query_one(ApprovalPanel).close()
        self.query_one(StatusBar).show()
        if self.queued and (self.ready or self.queued[0].startswith("/")):
            self.submit(self.queued.pop(0))
