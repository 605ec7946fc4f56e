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
The handlers of those updates live in ``handlers.AgentUpdates``, the slash commands in
``slash.SlashCommands``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.widget import Widget

from codeagent.tui.app import conversation as cv
from codeagent.tui.app.attach import attach, list_files
from codeagent.tui.app.entries import (
    AssistantEntry,
    NoticeEntry,
    ToolEntry,
    Transcript,
    UserEntry,
)
from codeagent.tui.app.handlers import AgentUpdate, AgentUpdates
from codeagent.tui.app.history import History
from codeagent.tui.app.panels import ActivityLine, ApprovalPanel, PlanPanel, StatusBar
from codeagent.tui.app.plain import plain
from codeagent.tui.app.prompt import Completions, PromptInput
from codeagent.tui.app.sessions import sessions
from codeagent.tui.app.slash import MODE_HELP, SlashCommands, needs_idle
from codeagent.tui.app.status import SPINNER, Stats

QUIT_WINDOW_S = 2.0  # the second Ctrl+C must come within this
PLACEHOLDER = "Describe a task · Enter sends · Ctrl+J new line · @file attaches · /help"


class CodeAgentApp(AgentUpdates, SlashCommands, App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "codeagent"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (100, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "escape", "interrupt", priority=True, show=False),
        Binding("ctrl+c", "ctrl_c", "quit", priority=True, show=False),
        Binding("ctrl+o", "details", "tool output", show=False),
        Binding("pageup", "page(-1)", "scroll up", priority=True, show=False),
        Binding("pagedown", "page(1)", "scroll down", priority=True, show=False),
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
            mode=setup.config.mode,
            sandbox=setup.config.sandbox,
        )
        self.ready = client is not None
        self.queued: list[str] = []
        self.tools: dict[str, ToolEntry] = {}
        self.reply: AssistantEntry | None = None
        self.phase: str | None = None
        self.started_at = self.step_at = self.token_at = self.tool_at = 0.0
        self.tokens = 0
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
        mode = self.conversation.policy.mode
        line = Text.assemble(
            ("codeagent", "bold"),
            plain(
                f" in {self.setup.root.name} · {mode} mode: {MODE_HELP[mode]} · /help for commands and keys"
            ),
        )
        earlier = len(sessions(self.setup.root)) if self.resume_id is None else 0
        if earlier:
            line.append(f"\n/resume continues one of the {earlier} earlier session{'s' * (earlier > 1)} here")
        self.add(NoticeEntry(line))
        if not self.setup.config.sandbox:
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
        try:
            activity = self.query_one(ActivityLine)
        except NoMatches:  # a timer firing while the screen is built or torn down
            return
        if self.phase is None:
            activity.show(None)
            return
        now = self.clock()
        self.stats.elapsed = now - self.started_at
        frame = SPINNER[int(now * 8) % len(SPINNER)]
        writing = f" · {self.tokens} tokens" if self.phase == "the model is writing" else ""
        activity.show(
            Text.assemble(
                (frame + " ", "bold cyan"),
                plain(self.phase + writing),
                f" · {int(now - self.started_at)}s",
                ("   esc interrupts" if self.ready else "", "dim"),
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
        self.transcript.anchor()  # follow the new turn, even after the user scrolled back
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

    def action_page(self, direction: int) -> None:
        """Page through the approval being shown, else the transcript (the prompt keeps focus)."""
        approval = self.query_one(ApprovalPanel)
        if not approval.has_class("-idle"):
            approval.action_scroll(10 * direction)
        elif direction < 0:
            self.transcript.scroll_page_up(animate=False)
        else:
            self.transcript.scroll_page_down(animate=False)

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
