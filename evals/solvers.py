"""What produces a task's patch: the gold patch, nothing, or the agent.

- ``gold`` returns the task's own fix (every task must resolve: validates the task set);
- ``empty`` returns no change (no task may resolve: validates the hidden tests);
- ``AgentSolver`` runs the plan-act loop in a fresh workspace at the base commit, inside the
  sandbox, with per-task budgets (steps, tokens, wall time), and returns what it changed.
  The agent sees the problem statement and the repository, nothing else: the gold patch,
  the test patch and the test lists stay with the runner. Checkpoints (undo) are off: the
  workspace is thrown away after the task.

Clients come from ``client_for(task)``: one embedded model serves every worker (its engine
service batches their calls), while stateful clients (scripted replies) get one per task.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from codeagent.agent.issues import IssueSpec, format_task
from codeagent.agent.loop import Limits, RunResult
from codeagent.agent.protocol import ModelClient
from codeagent.agent.record import EvalRecord
from codeagent.agent.run import Hooks, Run, open_run
from codeagent.evals import patches
from codeagent.evals.environment import RunSettings, agent_config, set_up
from codeagent.evals.repos import materialize
from codeagent.evals.task import Task
from codeagent.tools.base import ToolEnv

ClientFor = Callable[[Task], ModelClient]


class TaskInterrupted(Exception):
    """The run was stopped while this task's agent was working; the task is not finished."""


@dataclass(slots=True)
class Attempt:
    patch: str
    steps: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: {"prompt": 0, "cached": 0, "completion": 0})
    agent_time_s: float = 0.0
    agent_status: str | None = None
    agent_message: str = ""
    transcript: str | None = None
    attempts: dict[str, Any] | None = None  # with --attempts N: each attempt, the winner and why


class Solver(Protocol):
    name: str

    def solve(self, task: Task, source: Path, root: Path, stop: threading.Event) -> Attempt: ...


class GoldSolver:
    name = "gold"

    def solve(self, task: Task, source: Path, root: Path, stop: threading.Event) -> Attempt:
        return Attempt(task.patch)


class EmptySolver:
    name = "empty"

    def solve(self, task: Task, source: Path, root: Path, stop: threading.Event) -> Attempt:
        return Attempt("")


@dataclass(slots=True)
class AgentSolver:
    name: str
    client_for: ClientFor
    settings: RunSettings
    limits: Limits = field(default_factory=Limits)
    repo_map: bool = True
    transcripts: Path | None = None  # one JSONL transcript per task in this folder

    def solve(self, task: Task, source: Path, root: Path, stop: threading.Event) -> Attempt:
        materialize(task, source, root)
        env = self.prepare(task, root)
        return self.run(task, env, stop, self.client_for(task), self.transcript_path(task))

    def prepare(self, task: Task, root: Path) -> ToolEnv:
        """The workspace at ``root`` (made already) set up for the agent: its tools' environment."""
        env = agent_config(self.settings, self.limits, self.repo_map).tool_env(root)
        set_up(task, env, self.settings)
        return env

    def run(
        self, task: Task, env: ToolEnv, stop: threading.Event, client: ModelClient, transcript: Path | None
    ) -> Attempt:
        """The agent on ``task`` in the prepared ``env``; what it changed."""
        root, config = env.root, agent_config(self.settings, self.limits, self.repo_map)
        before = patches.untracked(root)
        started = time.monotonic()
        record = EvalRecord(
            run_id=task.instance_id,
            root=root,
            model=self.name,
            limits=self.limits,
            instance_id=task.instance_id,
            repo=task.repo,
            base_commit=task.base_commit,
        )
        run = open_run(
            record, format_task(issue_of(task)), client, env, config, Hooks(cancel=stop), transcript
        )
        outcome = run.agent.run()
        agent_time = time.monotonic() - started
        run.close()
        if outcome.status == "interrupted":
            raise TaskInterrupted(task.instance_id)
        return _attempt(patches.diff_from(root, task.base_commit, before), outcome, agent_time, run)

    def transcript_path(self, task: Task, suffix: str = "") -> Path | None:
        """Where the task's transcript goes (``suffix``: an attempt's ``.N``); None: none kept."""
        if self.transcripts is None:
            return None
        path = self.transcripts / f"{task.instance_id}{suffix}.jsonl"
        path.unlink(missing_ok=True)  # an interrupted attempt's transcript is replaced, not continued
        return path


def _attempt(patch: str, outcome: RunResult, agent_time: float, run: Run) -> Attempt:
    usage = outcome.usage
    return Attempt(
        patch,
        outcome.steps,
        {"prompt": usage.prompt_tokens, "cached": usage.cached_tokens, "completion": usage.completion_tokens},
        agent_time,
        outcome.status,
        outcome.message,
        str(run.transcript.path) if run.transcript else None,
    )


def issue_of(task: Task) -> IssueSpec:
    """The problem statement as an issue: its first line the title, the rest the body."""
    title, _, body = task.problem_statement.strip().partition("\n")
    return IssueSpec(None, title.strip().removeprefix("# ").strip(), body.strip(), source=f"eval:{task.repo}")
