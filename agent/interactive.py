"""One interactive session apart from any screen: its agent, transcript, checkpoints and notes.

A front end (the terminal UI) calls these methods from its own worker, one call at a time,
and reads the state (``agent``, ``run_id``, ``usage()``, ...) only while none runs. Nothing
here starts a thread or knows a screen: events go to ``sink`` and approvals to ``approver``,
both the front end's, called on the worker.

- A session is a run (``record.SessionRecord``, kind ``interactive``) that ``run.open_run``
  opens with the first message (after the project's setup command, when there is one:
  ``setup_command``); its transcript, under ``runs_dir()``, is written as it goes,
  so quitting at any moment loses at most the step in flight. ``resumable`` finds a saved
  session of this repository and ``resume`` continues it (``run.resume_run``).
- Budgets (steps, tokens, wall time) apply to each user message, not to the whole session.
- ``cancel`` stops the agent at its next streamed token, tool call or step; stopping a
  running command and answering a pending approval are the front end's (it holds both).
- ``diff`` is everything changed since the session's first message (a checkpoint taken
  then); ``undo`` restores the newest checkpoint that differs from the files, and the model
  is told with the next message.
- ``use`` switches the model, mid-session too; the switch is recorded, so a resume takes the
  last one (``runs.session_model``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from codeagent.agent.events import EventSink, ignore, redacting
from codeagent.agent.loop import Agent, Limits, RunResult
from codeagent.agent.protocol import ModelClient
from codeagent.agent.record import RunState, SessionRecord, load_run
from codeagent.agent.run import Hooks, Run, RunConfig, open_run, resume_run
from codeagent.agent.setup_command import run_setup
from codeagent.agent.transcript import new_run_id, transcript_path
from codeagent.sandbox.checkpoint import Checkpoints, Undone
from codeagent.sandbox.policy import MODES, Approver, Policy
from codeagent.sandbox.secrets import KnownSecrets


class SessionError(Exception):
    """A request the session cannot fulfil (unknown session, another repository's session)."""


class Session:
    def __init__(
        self,
        root: Path,
        config: RunConfig,
        model: str,
        client: ModelClient | None = None,
        sink: EventSink = ignore,
        approver: Approver | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self.model = model
        self.client = client  # None until the front end has built one
        self.sink = sink
        self.policy = Policy(config.mode, approver=approver)
        self.cancel = threading.Event()
        self.env = config.tool_env(root)
        self.run: Run | None = None
        self.base: str | None = None  # the checkpoint at the session's first message
        self.notes: list[str] = []  # told to the model with the next message

    @property
    def agent(self) -> Agent | None:
        return self.run.agent if self.run is not None else None

    @property
    def run_id(self) -> str | None:
        return self.run.record.run_id if self.run is not None else None

    @property
    def checkpoints(self) -> Checkpoints:
        if self.env.checkpoints is None:
            raise SessionError("this session keeps no checkpoints")
        return self.env.checkpoints

    def use(self, client: ModelClient, model: str) -> None:
        """Go on with ``client`` (the model ``model``), from the next model call."""
        self.client, self.model = client, model
        if self.run is not None:
            self.run.agent.client = client
            self.run.agent.context.client = client
            self.run.write("model", model=model)

    def send(self, text: str) -> RunResult:
        """Run the agent on a user message (the first one opens the run); blocks until it stops."""
        message = "\n\n".join([*self.notes, text])
        self.notes.clear()
        if self.run is None:
            self.run = self._open(message)
        else:
            self.run.agent.env.finished = None
            self.run.agent.add_message({"role": "user", "content": message})
        agent = self.run.agent
        agent.limits = per_message(agent, self.config.limits)
        return agent.run()

    def _open(self, task: str) -> Run:
        if self.client is None:
            raise SessionError("no model yet")
        self.base = self.checkpoints.snapshot("session start")
        record = SessionRecord(
            run_id=new_run_id(),
            root=self.env.root,
            model=self.model,
            limits=self.config.limits,
            task=task.strip().splitlines()[0][:200] if task.strip() else "",
            base=self.base,
        )
        hooks = self._hooks()
        if self.config.setup_command:  # the project's, in the sandbox, approved as any command
            secrets = KnownSecrets.gather(self.env.root, os.environ, self.env.settings.secret_env_names)
            hooks.secrets = secrets
            shown = redacting(self.sink, secrets.redact_data)
            task += "\n\n" + run_setup(self.config.setup_command, self.env, self.policy, secrets, shown).note
        path = transcript_path(record.run_id)
        return open_run(record, task, self.client, self.env, self.config, hooks, path)

    def _hooks(self) -> Hooks:
        return Hooks(self.sink, self.policy, cancel=self.cancel)

    def resumable(self, run_id: str) -> RunState:
        """The saved session ``run_id`` of this repository; ``SessionError`` if there is none."""
        path = transcript_path(run_id)
        if not path.is_file():
            raise SessionError(f"no session {run_id!r}")
        try:
            state = load_run(path)
        except ValueError as err:
            raise SessionError(f"session {run_id!r} cannot be read: {err}") from err
        if not isinstance(state.record, SessionRecord) or state.record.root != self.env.root:
            raise SessionError(f"{run_id} is not a session of this repository")
        return state

    def resume(self, state: RunState) -> None:
        """Continue ``state`` (from ``resumable``) with the current model, after ``clear``."""
        if self.client is None or self.run is not None:
            raise SessionError("no model yet" if self.client is None else "clear the session first")
        record = state.record
        self.base = record.base if isinstance(record, SessionRecord) else None
        path = transcript_path(record.run_id)
        hooks = self._hooks()
        self.run = resume_run(state, self.client, self.env, self.config, hooks, path, self.model)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise SessionError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        self.policy.mode = mode

    def undo(self) -> Undone | None:
        undone = self.checkpoints.undo()
        if undone is not None:
            files = ", ".join(undone.changed) or "nothing"
            self.notes.append(f"(The user undid the last change to the files; restored: {files}.)")
            if self.run is not None:
                self.run.write("undo", commit=undone.commit, changed=undone.changed)
        return undone

    def diff(self) -> str | None:
        """Everything changed since the session's first message; None before it."""
        return self.checkpoints.diff(self.base) if self.base is not None else None

    def compact(self) -> bool:
        return self.run is not None and self.run.agent.compact()

    def clear(self) -> None:
        """Forget the conversation; the next message starts a new session."""
        if self.run is not None:
            self.run.close()
        self.run, self.base = None, None
        self.notes.clear()
        self.env = self.config.tool_env(self.root)

    def context_size(self) -> tuple[int, bool] | None:
        """The conversation's tokens now, and whether the count is exact; None before it starts."""
        return self.run.agent.context.tokens() if self.run is not None else None

    def usage(self) -> dict[str, int]:
        agent = self.agent
        if agent is None:
            return {"calls": 0, "prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": 0, "steps": 0}
        return {"calls": len(agent.turn_usage), **agent.usage.as_dict(), "steps": agent.steps}


def per_message(agent: Agent, base: Limits) -> Limits:
    """``base`` budgets for one more user message, on top of what the session spent already."""
    spent = agent.usage.prompt_tokens + agent.usage.completion_tokens
    return Limits(
        agent.steps + base.max_steps,
        spent + base.max_tokens,
        agent.elapsed_s + base.max_wall_s,
        base.max_format_errors,
    )
