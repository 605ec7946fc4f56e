"""One interactive session on a worker thread: ``agent.interactive.Session`` (the agent, its
transcript, checkpoints and notes) driven for the screen.

The app calls down (``send``, ``interrupt``, ``answer``, ``set_mode``, ``undo``, ...); what the
worker has to say goes up through ``post``, which must be thread-safe (the app wraps each item
in a Textual message): the loop's own events (``agent.events``) and the updates defined here.
The app reads the agent's state only while no worker runs (``busy`` is False).

- The agent runs on one daemon thread per user message, so a slow model or tool never blocks
  the screen and quitting never waits for a model that is still thinking.
- A session is a transcript under ``runs_dir()`` (meta ``kind: interactive``), written as it
  goes: quitting at any moment loses at most the step in flight, and ``resume`` continues it.
- Budgets (steps, tokens, wall time) apply to each user message, not to the whole session.
- Approvals: the policy calls ``_approve`` on the worker, which posts ``ApprovalNeeded`` with a
  preview made there (the full diff or command) and waits for ``answer``.
- Interrupt: sets the agent's cancel event (the loop stops at the next streamed token, tool
  call or step), answers a pending approval "deny" and stops the running command
  (``interrupt.stop_commands``). Limit: a model still reading its prompt (prefill, or a remote
  server yet to answer) stops only at its first token; the app does not wait for it.
- ``diff`` is everything changed since the session's first message (a checkpoint taken then);
  ``undo`` restores the newest checkpoint that differs from the files, and the model is told
  with the next message.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeagent.agent import events as ev
from codeagent.agent.interactive import Session, SessionError
from codeagent.agent.loop import Agent
from codeagent.agent.protocol import ModelClient, ModelError
from codeagent.agent.record import RunState
from codeagent.agent.run import RunConfig
from codeagent.sandbox.checkpoint import Undone
from codeagent.sandbox.policy import Request
from codeagent.sandbox.supervisors import stop_commands
from codeagent.tui.app.preview import preview
from codeagent.tui.app.reports import (
    ApprovalNeeded,
    ContextMeasured,
    Idle,
    ModelFailed,
    ModelLoading,
    ModelReady,
    Resumed,
    WorkerCrashed,
)

ClientBuilder = Callable[[str, int], ModelClient]  # (model spec, replies already consumed) -> client
__all__ = ["ClientBuilder", "Conversation", "SessionError", "Setup"]


@dataclass(slots=True)
class Setup:
    """What the command line decided, once: the repository, the model, how runs are set up."""

    root: Path
    model: str
    clients: ClientBuilder  # raises ModelError when the model cannot be had
    config: RunConfig = field(default_factory=lambda: RunConfig(mode="ask"))  # limits: per user message
    client: ModelClient | None = None  # built already (cheap specs); None: built on the worker


class Conversation:
    def __init__(self, setup: Setup, post: Callable[[Any], None]) -> None:
        self.setup = setup
        self.post = post
        self.session = Session(setup.root, setup.config, setup.model, setup.client, self._sink, self._approve)
        self._thread: threading.Thread | None = None
        self._working = False
        self._asking: queue.Queue[str] | None = None

    @property
    def busy(self) -> bool:
        return self._working

    @property
    def agent(self) -> Agent | None:
        return self.session.agent

    @property
    def run_id(self) -> str | None:
        return self.session.run_id

    @property
    def client(self) -> ModelClient | None:
        return self.session.client

    @client.setter
    def client(self, client: ModelClient) -> None:
        self.session.client = client

    @property
    def model(self) -> str:
        return self.session.model

    @property
    def notes(self) -> list[str]:
        return self.session.notes

    @property
    def policy(self):
        return self.session.policy

    @property
    def env(self):
        return self.session.env

    def _spawn(self, work: Callable[..., None], *args: Any) -> None:
        if self._working:
            raise RuntimeError("the agent's worker is still running")
        self._working = True
        self._thread = threading.Thread(
            target=self._guarded, args=(work, *args), name="codeagent-agent", daemon=True
        )
        self._thread.start()

    def _guarded(self, work: Callable[..., None], *args: Any) -> None:
        try:
            work(*args)
        except Exception:  # a bug in codeagent: shown in the transcript, and the session goes on
            self.post(WorkerCrashed(traceback.format_exc()))
        finally:
            self._working = False
            self.post(Idle())

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def load_model(self, spec: str | None = None) -> None:
        self._spawn(self._load, spec or self.model, 0)

    def _load(self, spec: str, consumed: int) -> bool:
        self.post(ModelLoading(spec))
        try:
            client = self.setup.clients(spec, consumed)
        except ModelError as err:
            self.post(ModelFailed(str(err)))
            return False
        self.session.use(client, spec)
        self.post(ModelReady(client.name, client.context_window))
        return True

    def send(self, text: str) -> None:
        if self.client is None:
            raise RuntimeError("no model yet")
        self.session.cancel.clear()  # here, not on the worker: an Esc right after sending must count
        self._spawn(self._turn, text)

    def _turn(self, text: str) -> None:
        self.session.send(text)
        self._measure()

    def _sink(self, event: ev.Event) -> None:
        if isinstance(event, ev.StepStarted):
            self._measure()
        self.post(event)

    def _measure(self) -> None:
        size = self.session.context_size()
        if size is not None and self.client is not None:
            self.post(ContextMeasured(*size, self.client.context_window))

    def interrupt(self) -> bool:
        if not self.busy:
            return False
        self.session.cancel.set()
        self.answer("deny")
        stop_commands()
        return True

    def answer(self, choice: str) -> None:
        asking = self._asking
        if asking is not None:
            with contextlib.suppress(queue.Full):
                asking.put_nowait(choice)

    def _approve(self, request: Request) -> str:
        answers: queue.Queue[str] = queue.Queue(maxsize=1)
        self._asking = answers
        try:
            if self.session.cancel.is_set():
                return "deny"
            self.post(ApprovalNeeded(request, preview(request, self.env)))
            return answers.get()
        finally:
            self._asking = None

    def set_mode(self, mode: str) -> None:
        self.session.set_mode(mode)

    def undo(self) -> Undone | None:
        return self.session.undo()

    def diff(self) -> str | None:
        return self.session.diff()

    def compact(self) -> bool:
        return self.session.compact()

    def clear(self) -> None:
        self.session.clear()

    def resume(self, run_id: str) -> None:
        state = self.session.resumable(run_id)
        self._spawn(self._resume, run_id, state)

    def _resume(self, run_id: str, state: RunState) -> None:
        self.session.clear()
        stale = self.client is None or self.model.startswith("scripted:")
        if stale and not self._load(self.model, state.assistant_turns):
            return
        self.session.resume(state)
        self.post(Resumed(run_id, state))
        self._measure()

    def usage(self) -> dict[str, int]:
        return self.session.usage()
