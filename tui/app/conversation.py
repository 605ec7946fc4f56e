"""One interactive session apart from its screen: the agent, its transcript, the worker thread.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from codeagent.agent import events as ev
from codeagent.agent.loop import Agent, Limits
from codeagent.agent.protocol import ModelClient, ModelError
from codeagent.agent.session import SessionSpec, new_agent, resumed_agent
from codeagent.agent.transcript import RunState, Transcript, load_run, new_run_id, read_records, runs_dir
from codeagent.sandbox.checkpoint import Checkpoints, Undone
from codeagent.sandbox.confine import SandboxSpec
from codeagent.sandbox.policy import MODES, Policy, Request
from codeagent.tools.base import ToolEnv, ToolSettings
from codeagent.tui.app.interrupt import stop_commands
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


@dataclass(slots=True)
class Setup:
    """What the command line decided, once: the repository, the model, the tools' settings."""

    root: Path
    model: str
    clients: ClientBuilder  # raises ModelError when the model cannot be had
    settings: ToolSettings = field(default_factory=ToolSettings)
    limits: Limits = field(default_factory=Limits)  # per user message
    mode: str = "ask"
    sandbox: bool = True
    network: bool = False
    repo_map: bool = True
    codebase_share: float = 0.5
    client: ModelClient | None = None  # built already (cheap specs); None: built on the worker


class SessionError(Exception):
    """A request the session cannot fulfil (unknown session, another repository's session)."""


class Conversation:
    def __init__(self, setup: Setup, post: Callable[[Any], None]) -> None:
        self.setup = setup
        self.post = post
        self.cancel = threading.Event()
        self.policy = Policy(setup.mode, approver=self._approve)
        self.client = setup.client
        self.model = setup.model
        self.env = self._new_env()
        self.agent: Agent | None = None
        self.transcript: Transcript | None = None
        self.run_id: str | None = None
        self.base: str | None = None  # checkpoint at the session's first message
        self.notes: list[str] = []  # told to the model with the next message
        self._thread: threading.Thread | None = None
        self._working = False
        self._asking: queue.Queue[str] | None = None

    def _new_env(self) -> ToolEnv:
        root = self.setup.root
        sandbox = SandboxSpec(root, network=self.setup.network) if self.setup.sandbox else None
        return ToolEnv(root, settings=self.setup.settings, checkpoints=Checkpoints(root), sandbox=sandbox)

    @property
    def busy(self) -> bool:
        return self._working

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

    # model

    def load_model(self, spec: str | None = None) -> None:
        """Build the client on the worker (an embedded model loads for a while)."""
        self._spawn(self._load, spec or self.model, 0)

    def _load(self, spec: str, consumed: int) -> bool:
        self.post(ModelLoading(spec))
        try:
            client = self.setup.clients(spec, consumed)
        except ModelError as err:
            self.post(ModelFailed(str(err)))
            return False
        self.client, self.model = client, spec
        if self.agent is not None:
            self.agent.client = client
            self.agent.context.client = client
        if self.transcript is not None:
            self.transcript.write("model", model=spec)
        self.post(ModelReady(client.name, client.context_window))
        return True

    # turns

    def send(self, text: str) -> None:
        """Run the agent on a user message (the first one starts the session)."""
        if self.client is None:
            raise RuntimeError("no model yet")
        self.cancel.clear()  # here, not on the worker: an Esc right after sending must count
        self._spawn(self._turn, text)

    def _turn(self, text: str) -> None:
        message = "\n\n".join([*self.notes, text])
        self.notes.clear()
        if self.agent is None:
            self.agent = self._start(message)
        else:
            self.agent.env.finished = None
            self.agent.add_message({"role": "user", "content": message})
        agent = self.agent
        agent.limits = _per_message(agent, self.setup.limits)
        agent.run()
        self._measure()

    def _start(self, task: str) -> Agent:
        self.run_id = new_run_id()
        self.transcript = Transcript(runs_dir() / self.run_id / "transcript.jsonl")
        assert self.env.checkpoints is not None
        self.base = self.env.checkpoints.snapshot("session start")
        self.transcript.write(
            "meta",
            run_id=self.run_id,
            kind="interactive",
            root=str(self.env.root),
            model=self.model,
            task=task.strip().splitlines()[0][:200] if task.strip() else "",
            base=self.base,
            limits=asdict(self.setup.limits),
        )
        agent = new_agent(self._spec(), task)
        agent.cancel = self.cancel
        return agent

    def _spec(self) -> SessionSpec:
        assert self.client is not None
        return SessionSpec(
            self.client,
            self.env,
            self.setup.limits,
            self.transcript,
            self._sink,
            self.setup.repo_map,
            self.policy,
            self.setup.codebase_share,
        )

    def _sink(self, event: ev.Event) -> None:
        if isinstance(event, ev.StepStarted):
            self._measure()
        self.post(event)

    def _measure(self) -> None:
        if self.agent is not None and self.client is not None:
            tokens, exact = self.agent.context.tokens()
            self.post(ContextMeasured(tokens, exact, self.client.context_window))

    # control

    def interrupt(self) -> bool:
        """Stop the agent at once; False when it was not running."""
        if not self.busy:
            return False
        self.cancel.set()
        self.answer("deny")
        stop_commands()
        return True

    def answer(self, choice: str) -> None:
        """The user's answer to the pending approval: "allow", "deny" or "always"."""
        asking = self._asking
        if asking is not None:
            with contextlib.suppress(queue.Full):
                asking.put_nowait(choice)

    def _approve(self, request: Request) -> str:
        answers: queue.Queue[str] = queue.Queue(maxsize=1)
        self._asking = answers
        try:
            if self.cancel.is_set():
                return "deny"
            self.post(ApprovalNeeded(request, preview(request, self.env)))
            return answers.get()
        finally:
            self._asking = None

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise SessionError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        self.policy.mode = mode

    # files

    def undo(self) -> Undone | None:
        assert self.env.checkpoints is not None
        undone = self.env.checkpoints.undo()
        if undone is not None:
            files = ", ".join(undone.changed) or "nothing"
            self.notes.append(f"(The user undid the last change to the files; restored: {files}.)")
            if self.transcript is not None:
                self.transcript.write("undo", commit=undone.commit, changed=undone.changed)
        return undone

    def diff(self) -> str | None:
        """Everything changed since the session's first message; None before it."""
        if self.base is None:
            return None
        assert self.env.checkpoints is not None
        return self.env.checkpoints.diff(self.base)

    def compact(self) -> bool:
        return self.agent is not None and self.agent.compact()

    def clear(self) -> None:
        """Forget the conversation; the next message starts a new session."""
        if self.transcript is not None:
            self.transcript.close()
        self.agent, self.transcript, self.run_id, self.base = None, None, None, None
        self.notes.clear()
        self.env = self._new_env()

    def resume(self, run_id: str) -> None:
        """Continue a saved session of this repository (on the worker: a model may need loading)."""
        path = runs_dir() / run_id / "transcript.jsonl"
        if not path.is_file():
            raise SessionError(f"no session {run_id!r}")
        state = load_run(path)
        if state.meta.get("kind") != "interactive" or state.meta.get("root") != str(self.env.root):
            raise SessionError(f"{run_id} is not a session of this repository")
        self._spawn(self._resume, run_id, path, state)

    def _resume(self, run_id: str, path: Path, state: RunState) -> None:
        self.clear()
        consumed = state.assistant_turns
        if (self.client is None or self.model.startswith("scripted:")) and not self._load(
            self.model, consumed
        ):
            return
        self.run_id, self.base = run_id, state.meta.get("base")
        self.transcript = Transcript(path)
        self.transcript.write("resume", steps=state.steps, model=self.model)
        self.agent = resumed_agent(self._spec(), state)
        self.agent.cancel = self.cancel
        self.post(Resumed(run_id, state))
        self._measure()

    def usage(self) -> dict[str, int]:
        agent = self.agent
        if agent is None:
            return {"calls": 0, "prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": 0, "steps": 0}
        return {"calls": len(agent.turn_usage), **agent.usage.as_dict(), "steps": agent.steps}


def _per_message(agent: Agent, base: Limits) -> Limits:
    spent = agent.usage.prompt_tokens + agent.usage.completion_tokens
    return Limits(
        agent.steps + base.max_steps,
        spent + base.max_tokens,
        agent.elapsed_s + base.max_wall_s,
        base.max_format_errors,
    )


def session_model(run_id: str) -> str | None:
    """The model a saved session used last (``/model`` switches are recorded)."""
    path = runs_dir() / run_id / "transcript.jsonl"
    model = None
    for record in read_records(path) if path.is_file() else []:
        if record.get("type") in ("meta", "model", "resume") and record.get("model"):
            model = record["model"]
    return model
