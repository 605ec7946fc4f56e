"""The one place that opens or resumes a run, for ``fix``, the terminal UI and the evals.

A front end says how runs are set up once (``RunConfig``: the tools' settings, budgets,
approval mode, confinement, the pinned prefix, whether checkpoints are kept) and plugs in
what it brings (``Hooks``: where events go, who answers approvals, the known secrets, the
cancel event). ``open_run`` writes the run's typed record (``record.RunRecord``) as its
transcript's first line and starts the agent on the task; ``resume_run`` reopens the
transcript of a ``RunState``, notes the resume and rebuilds the agent from it. Either gives
a ``Run``: the record, the agent and its transcript. The prompt layout (and so the engine's
prefix cache) is ``session``'s, the same whichever front end runs.

What is not here: a front end's own workflow (``fix``'s branch, tests and gates, the UI's
threads), and building model clients (the command line's wiring).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeagent.agent.events import EventSink, ignore
from codeagent.agent.loop import Agent, Limits
from codeagent.agent.protocol import ModelClient
from codeagent.agent.record import RunRecord, RunState
from codeagent.agent.session import SessionSpec, new_agent, resumed_agent
from codeagent.agent.transcript import Transcript
from codeagent.sandbox.checkpoint import Checkpoints
from codeagent.sandbox.confine import SandboxSpec
from codeagent.sandbox.policy import Policy
from codeagent.sandbox.secrets import KnownSecrets
from codeagent.sandbox.spec import BUBBLEWRAP
from codeagent.tools.base import Tool, ToolEnv, ToolSettings


@dataclass(slots=True)
class RunConfig:
    """How a front end's runs are set up, decided once from the flags and the config."""

    settings: ToolSettings = field(default_factory=ToolSettings)
    limits: Limits = field(default_factory=Limits)
    mode: str = "full-auto"  # approvals: read-only, ask, auto-edit, full-auto
    sandbox: bool = True  # run the model's commands confined (bubblewrap); off only with consent
    network: bool = False  # let sandboxed commands reach the network
    repo_map: bool = True
    codebase_share: float = 0.5  # of the window, for the whole codebase in the pinned prefix; 0: never
    checkpoints: bool = True  # snapshots before every change (undo); off where the workspace is thrown away
    extra_tools: tuple[Tool, ...] = ()  # offered beside the built-in ones: the MCP servers' tools
    user_memory: tuple[str, str] | None = None  # (where, text) of the user's own AGENTS.md, pinned first
    setup_command: str | None = None  # the project's, run once in the sandbox before the first step
    confinement: str = BUBBLEWRAP  # which sandbox, when ``sandbox``: bubblewrap or the Landlock fallback

    def tool_env(self, root: Path) -> ToolEnv:
        """What the tools may touch in ``root``: confined or not, with checkpoints or not."""
        sandbox = (
            SandboxSpec(root, network=self.network, confinement=self.confinement) if self.sandbox else None
        )
        checkpoints = Checkpoints(root) if self.checkpoints else None
        return ToolEnv(root, settings=self.settings, checkpoints=checkpoints, sandbox=sandbox)


@dataclass(slots=True)
class Hooks:
    """What a front end plugs into a run."""

    sink: EventSink = ignore
    policy: Policy | None = None  # None: the config's mode, with no one to ask
    secrets: KnownSecrets | None = None  # redacted from what the run shows and records; None: gathered
    cancel: threading.Event | None = None  # set to stop the agent at its next token, tool call or step


@dataclass(slots=True)
class Run:
    """An opened run: its record, its agent, and the transcript the agent writes."""

    record: RunRecord
    agent: Agent
    transcript: Transcript | None

    @property
    def secrets(self) -> KnownSecrets:
        """Everything the run redacts: its transcript's set (the session's, widened to the
        process's environment), or the agent's when no transcript is kept."""
        return self.transcript.secrets if self.transcript is not None else self.agent.secrets

    def write(self, record_type: str, **fields: Any) -> None:
        """One more record in the transcript, if one is kept."""
        if self.transcript is not None:
            self.transcript.write(record_type, **fields)

    def close(self) -> None:
        if self.transcript is not None:
            self.transcript.close()


def open_run(
    record: RunRecord,
    task: str,
    client: ModelClient,
    env: ToolEnv,
    config: RunConfig,
    hooks: Hooks,
    transcript: Path | None,
) -> Run:
    """Start a run on ``task``: the record first in the transcript at ``transcript`` (None:
    none kept), then the agent with the pinned prefix and the task."""
    written = Transcript(transcript, hooks.secrets) if transcript is not None else None
    if written is not None:
        written.write("meta", **record.meta())
    agent = new_agent(_spec(client, env, config, hooks, written), task)
    return _started(record, agent, written, hooks)


def resume_run(
    state: RunState,
    client: ModelClient,
    env: ToolEnv,
    config: RunConfig,
    hooks: Hooks,
    transcript: Path,
    model: str | None = None,
) -> Run:
    """Continue ``state`` in its transcript at ``transcript`` (``model``: the one it goes on with,
    recorded for runs that can switch)."""
    written = Transcript(transcript, hooks.secrets)
    written.write("resume", steps=state.steps, **({"model": model} if model else {}))
    agent = resumed_agent(_spec(client, env, config, hooks, written), state)
    return _started(state.record, agent, written, hooks)


def _spec(
    client: ModelClient, env: ToolEnv, config: RunConfig, hooks: Hooks, transcript: Transcript | None
) -> SessionSpec:
    return SessionSpec(
        client,
        env,
        config.limits,
        transcript,
        hooks.sink,
        config.repo_map,
        hooks.policy if hooks.policy is not None else Policy(config.mode),
        config.codebase_share,
        hooks.secrets,
        config.extra_tools,
        config.user_memory,
    )


def _started(record: RunRecord, agent: Agent, transcript: Transcript | None, hooks: Hooks) -> Run:
    if hooks.cancel is not None:
        agent.cancel = hooks.cancel
    return Run(record, agent, transcript)
