"""Assembling an agent: tools, the pinned prefix, the transcript; fresh or resumed.

Every front end starts agents through here (``run.open_run`` and ``run.resume_run`` for
``fix``, the TUI and the evals; the benchmarks directly), so the prompt layout (and with it
the engine's prefix cache) is the same whichever front end runs.

The repository part of the pinned prefix is the whole codebase when it fits
``codebase_share`` of the model's window (``codebase.py``), else the repo map (when
``repo_map``), else nothing; the map is followed by the ten definitions ranked best for the
task (``tools.repomap.localise``; about ten lines beyond the map's budget). They come last, the
end of the system message, so the map before them stays the same for every task on a
repository state and two tasks there still share its cached prefix. A resumed
session keeps its pinned prefix; when that holds a snapshot, the files' changes since it are
told to the model once, as a note.

Memory files: the user's own ``AGENTS.md`` (``SessionSpec.user_memory``, read by the front
end) and the repository's are pinned; subfolders' ``AGENTS.md`` files are shown in the turns
as the agent reaches them (``memory.FolderMemory``, rebuilt from the turns on resume).

The run's known secrets (``SessionSpec.secrets``; when not given, gathered here from the
process's environment and the git credentials of the repository and the user) reach the
loop, which redacts every tool result, the event sink (every field of every event
redacted) and the transcript (every record redacted): one set for everything the run shows
or records. ``fix`` passes its own, gathered before the run, to check what it commits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from codeagent.agent import events as ev
from codeagent.agent.codebase import Tracker, fitting_snapshot, parse
from codeagent.agent.context import Context, system_message
from codeagent.agent.loop import Agent, Limits
from codeagent.agent.memory import FolderMemory
from codeagent.agent.prompts import render
from codeagent.agent.protocol import Message, ModelClient
from codeagent.agent.record import RunState
from codeagent.agent.transcript import Transcript
from codeagent.sandbox.policy import Policy
from codeagent.sandbox.secrets import KnownSecrets
from codeagent.tools.base import Tool, ToolEnv, openai_schema, run_tool
from codeagent.tools.ignore import iter_files
from codeagent.tools.registry import default_tools, get_tool
from codeagent.tools.repomap.tool import best_definitions


@dataclass(slots=True)
class SessionSpec:
    client: ModelClient
    env: ToolEnv
    limits: Limits = field(default_factory=Limits)
    transcript: Transcript | None = None
    sink: ev.EventSink = ev.ignore
    repo_map: bool = True
    policy: Policy = field(default_factory=Policy)
    codebase_share: float = 0.5  # of the window, for the whole codebase in the pinned prefix; 0: never
    secrets: KnownSecrets | None = None  # redacted from what the run shows and records; None: gathered
    extra_tools: tuple[Tool, ...] = ()  # beside the built-in tools: the MCP servers' tools
    user_memory: tuple[str, str] | None = None  # (where, text) of the user's own AGENTS.md, pinned


def repo_context(env: ToolEnv, task: str = "") -> str:
    """The repository part of the pinned prefix: the repo map, or nothing if none can be built.

    With the task's text, the definitions the localiser ranks best for it follow the map (after
    it, so that the map's part of the prefix is the same whatever the task)."""
    observation = run_tool(get_tool("repo_map"), {}, env)
    text = observation.text if observation.ok else ""
    best = best_definitions(env, iter_files(env.root), task) if text and task.strip() else ""
    return f"{text}\n\n{best}" if best else text


def pinned_prefix(spec: SessionSpec, task: str = "") -> tuple[list[Message], Tracker | None]:
    """The system message, with the codebase (and a tracker of its changes) or the repo map."""
    root = spec.env.root
    snapshot = fitting_snapshot(root, spec.client, spec.codebase_share)
    if snapshot is not None:
        return [system_message(root, "", snapshot.render(), spec.user_memory)], Tracker(snapshot.files)
    context = repo_context(spec.env, task) if spec.repo_map else ""
    return [system_message(root, context, user_memory=spec.user_memory)], None


def new_agent(spec: SessionSpec, task: str) -> Agent:
    tools = [*default_tools(), *spec.extra_tools]
    schemas = [openai_schema(tool) for tool in tools]
    pinned, tracker = pinned_prefix(spec, task)
    context = Context(spec.client, schemas, pinned, tracker=tracker, refresh=lambda: pinned_prefix(spec))
    context.folders = FolderMemory(spec.env.root)
    agent = _agent(spec, tools, context)
    if spec.transcript:
        spec.transcript.write("message", step=0, message=context.pinned[0])
    agent.add_message({"role": "user", "content": render("task", task=task)})
    return agent


def resumed_agent(spec: SessionSpec, state: RunState) -> Agent:
    """An agent that continues ``state``: same pinned prefix, turns of the completed steps."""
    tools = [*default_tools(), *spec.extra_tools]
    schemas = [openai_schema(tool) for tool in tools]
    pinned, turns = state.messages[:1], state.messages[1:]
    files = parse(str(pinned[0].get("content") or "")) if pinned else None
    tracker = Tracker(files) if files is not None else None
    context = Context(
        spec.client, schemas, pinned, list(turns), tracker=tracker, refresh=lambda: pinned_prefix(spec)
    )
    context.folders = FolderMemory.resumed(spec.env.root, turns)
    spec.env.plan = list(state.plan)
    agent = _agent(spec, tools, context)
    agent.steps = state.steps
    agent.usage = state.usage
    agent.turn_usage = list(state.turns)
    agent.elapsed_before_s = state.elapsed_s
    note = tracker.changes(spec.env.root, resumed=True) if tracker is not None else ""
    if note:
        agent.add_message({"role": "user", "content": note})
    return agent


def session_secrets(spec: SessionSpec) -> KnownSecrets:
    """The spec's secrets, or everything this process and the repository know as secret."""
    if spec.secrets is not None:
        return spec.secrets
    return KnownSecrets.gather(spec.env.root, os.environ, spec.env.settings.secret_env_names)


def _agent(spec: SessionSpec, tools: list[Tool], context: Context) -> Agent:
    """The agent, with the run's secrets kept out of its tool results, events and transcript."""
    secrets = session_secrets(spec)
    if spec.transcript is not None:
        spec.transcript.secrets = spec.transcript.secrets | secrets
    sink = ev.redacting(spec.sink, secrets.redact_data)
    return Agent(
        spec.client,
        spec.env,
        tools,
        context,
        spec.limits,
        spec.transcript,
        sink,
        policy=spec.policy,
        secrets=secrets,
    )
