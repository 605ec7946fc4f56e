"""The Textual app: one ``agent.interactive.Session`` shown on one ``chat.ChatScreen``.

Messages up, attributes down: the app calls the session's methods on a Textual thread
worker (``@work(thread=True)``, one turn at a time: a message, loading a model, resuming a
session; ``working``), so a slow model or tool never blocks the screen. The worker posts
what happens to the chat screen as messages (``messages``: each agent event, the model's
state, approvals), ``WorkDone`` last; the app takes that one as it bubbles up, and sends
what was queued meanwhile (a message sent while the worker runs or before the model is
ready; commands that need the worker idle). ``busy`` holds from a turn's start until then.

- Approvals: the session's policy asks ``approvals.Approvals`` on the worker; the user's
  answer (``ApprovalPanel.Answered``) comes back through it, "deny" on an interrupt.
- Interrupt (Esc, Ctrl+C): sets the session's cancel event (the loop stops at its next
  streamed token, tool call or step), answers a pending approval "deny" and stops the
  running command (``sandbox.supervisors``). However the app ends, the same happens
  (``on_unmount``): nothing goes on behind a closed screen, and quitting never waits for a
  model still reading its prompt (``working.abandonable``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import App
from textual.binding import Binding, BindingType

from codeagent.agent import events as ev
from codeagent.agent.interactive import Session, SessionError
from codeagent.agent.protocol import ModelError
from codeagent.agent.record import RunState
from codeagent.agent.runs import sessions
from codeagent.sandbox.policy import ApprovalRequest
from codeagent.sandbox.supervisors import stop_commands
from codeagent.tui.app import messages as msg
from codeagent.tui.app.approvals import Approvals
from codeagent.tui.app.attach import attach
from codeagent.tui.app.chat import ChatScreen
from codeagent.tui.app.entries import ToolEntry
from codeagent.tui.app.history import History
from codeagent.tui.app.panels import ApprovalPanel
from codeagent.tui.app.plain import plain
from codeagent.tui.app.prompt import Completions, PromptInput
from codeagent.tui.app.setup import Setup
from codeagent.tui.app.slash import MODE_HELP, SlashCommands, needs_idle
from codeagent.tui.app.status import Stats
from codeagent.tui.app.working import abandonable, reporting

QUIT_WINDOW_S = 2.0  # the second Ctrl+C must come within this


class CodeAgentApp(App[int]):
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
        setup: Setup,
        resume: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        history: History | None = None,
    ) -> None:
        super().__init__()
        self.setup = setup
        self.clock = clock
        self.resume_id = resume
        self.session = Session(
            setup.root, setup.config, setup.model, setup.client, self._event, self._approve
        )
        self.chat = ChatScreen(self.session, _stats(setup), clock, history or History(), setup.root)
        self.approvals = Approvals(self.chat.post_message)
        self.commands = SlashCommands(self)
        self.queued: list[str] = []
        self.busy = False  # a worker's turn is under way, or its WorkDone not taken yet
        self._last_ctrl_c = -QUIT_WINDOW_S

    def get_default_screen(self) -> ChatScreen:
        return self.chat

    async def on_mount(self) -> None:
        await self.chat.composed.wait()  # its widgets, before the app takes input
        self.welcome()
        if self.resume_id is not None:
            self.resume(self.resume_id)
        elif not self.chat.ready:
            self.load_model()

    def welcome(self) -> None:
        mode = self.session.policy.mode
        line = Text.assemble(
            ("codeagent", "bold"),
            plain(
                f" in {self.setup.root.name} · {mode} mode: {MODE_HELP[mode]} · /help for commands and keys"
            ),
        )
        earlier = len(sessions(self.setup.root)) if self.resume_id is None else 0
        if earlier:
            line.append(f"\n/resume continues one of the {earlier} earlier session{'s' * (earlier > 1)} here")
        self.chat.notice(line)
        if not self.setup.config.sandbox:
            self.chat.notice("the sandbox is off: the model's commands run as you", "error")
        for line in self.setup.settings.notices if self.setup.settings else []:
            self.chat.notice(plain(line), "warn")  # the project's settings set aside; they quote its file

    # sending

    def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
        self.submit(message.text)

    def submit(self, text: str) -> None:
        """Send a message or run a command now, or queue it until the worker is done."""
        command = text.startswith("/")
        waits = needs_idle(text) if command else True
        if (self.busy and waits) or not (command or self.chat.ready):
            self.queued.append(text)
            waiting = "the model is ready" if not self.chat.ready else "the agent stops"
            self.chat.notice(f"queued until {waiting} (Esc interrupts): {text.splitlines()[0][:60]}")
        elif command:
            self.commands.run(text)
        else:
            self.send(text)

    def send(self, text: str) -> None:
        if self.session.client is None:
            raise RuntimeError("no model yet")
        attached = attach(text, self.setup.root)
        self.chat.sent(text, attached)
        self.session.cancel.clear()  # here, not on the worker: an Esc right after sending must count
        self._claim()
        self._work(partial(self._send, attached.message))

    def load_model(self, spec: str | None = None) -> None:
        """Build the client on a worker (an embedded model loads for a while)."""
        self._claim()
        self._work(partial(self._build, spec or self.session.model, 0))

    def resume(self, run_id: str) -> None:
        """Continue a saved session of this repository (on a worker: a model may need loading)."""
        try:
            state = self.session.resumable(run_id)
        except SessionError as err:
            self.chat.notice(f"{err}; /resume lists this repository's sessions", "warn")
            return
        self._claim()
        self._work(partial(self._resume, run_id, state))
        self.chat.begin(f"resuming {run_id}")

    def on_work_done(self, message: msg.WorkDone) -> None:
        self.busy = False
        if self.queued and (self.chat.ready or self.queued[0].startswith("/")):
            self.submit(self.queued.pop(0))

    # the worker (one turn at a time; what it reports goes to the chat screen)

    def _claim(self) -> None:
        if self.busy:
            raise RuntimeError("the agent's worker is still running")
        self.busy = True

    @work(thread=True, exit_on_error=False, group="agent")
    def _work(self, turn: Callable[[], object]) -> None:
        with reporting(self.chat.post_message):
            abandonable(turn)

    def _send(self, message: str) -> None:
        self.session.send(message)
        self._measure()

    def _resume(self, run_id: str, state: RunState) -> None:
        self.session.clear()
        stale = self.session.client is None or self.session.model.startswith("scripted:")
        if stale and not self._build(self.session.model, state.assistant_turns):
            return
        self.session.resume(state)
        self.chat.post_message(msg.Resumed(run_id, state))
        self._measure()

    def _build(self, spec: str, consumed: int) -> bool:
        """A client for ``spec`` in the session; False when it cannot be had."""
        self.chat.post_message(msg.ModelLoading(spec))
        try:
            client = self.setup.clients(spec, consumed)
        except ModelError as err:
            self.chat.post_message(msg.ModelFailed(str(err)))
            return False
        self.session.use(client, spec)
        self.chat.post_message(msg.ModelReady(client.name, client.context_window))
        return True

    def _event(self, event: ev.Event) -> None:
        if isinstance(event, ev.StepStarted):
            self._measure()
        self.chat.post_message(msg.for_event(event))

    def _measure(self) -> None:
        size, client = self.session.context_size(), self.session.client
        if size is not None and client is not None:
            self.chat.post_message(msg.ContextMeasured(*size, client.context_window))

    def _approve(self, request: ApprovalRequest) -> str:
        return self.approvals.ask(self.session, request)

    def on_approval_panel_answered(self, message: ApprovalPanel.Answered) -> None:
        self.chat.answered()
        self.approvals.answer(message.choice)

    # control

    def stop(self) -> bool:
        """Stop the worker's agent at once; False when no worker runs."""
        if not self.busy:
            return False
        self.session.cancel.set()
        self.approvals.answer("deny")
        stop_commands()
        return True

    def interrupt(self) -> None:
        if self.stop():
            self.chat.stopping()

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
        if self.busy:
            self.interrupt()
        else:
            self.query_one(PromptInput).clear()
        self.notify("Press Ctrl+C again to quit", timeout=QUIT_WINDOW_S)

    def quit(self) -> None:
        self.exit(0)

    def on_unmount(self) -> None:
        """However the app ends (quit, ``exit``, a crash): the worker's agent stops, a pending
        approval is denied, a running command killed; nothing goes on behind a closed screen."""
        self.stop()

    def action_page(self, direction: int) -> None:
        """Page through the approval being shown, else the transcript (the prompt keeps focus)."""
        approval = self.query_one(ApprovalPanel)
        if not approval.has_class("-idle"):
            approval.action_scroll(10 * direction)
        elif direction < 0:
            self.chat.transcript.scroll_page_up(animate=False)
        else:
            self.chat.transcript.scroll_page_down(animate=False)

    def action_details(self) -> None:
        blocks = list(self.query(ToolEntry))
        expand = any(not block.expanded for block in blocks)
        for block in blocks:
            block.expanded = expand


def _stats(setup: Setup) -> Stats:
    client = setup.client
    return Stats(
        model=client.name if client else setup.model,
        window=client.context_window if client else 0,
        mode=setup.config.mode,
        sandbox=setup.config.sandbox,
        confinement=setup.config.confinement,
    )
