"""Where a task's commands run: its workspace, confined like the agent's own commands.

The environment setup, the agent's tools and the hidden tests all run through the tools'
``run_in_repo``: inside the sandbox when it is on (workspace writable, no network unless
allowed), bubblewrap or the Landlock fallback as ``RunSettings.confinement`` says (chosen by
``sandbox.choose`` from ``--sandbox``, like ``codeagent fix``), unconfined only when the user
turned it off (``--sandbox off``, with the same warning as ``codeagent fix``). Setup commands
therefore write into the workspace (a ``.venv`` there, say), and fetch nothing unless
``--network`` is given. Limit of the fallback: commands cannot create top-level entries of
the workspace, so a setup that makes ``.venv`` at the top fails there (inside an existing
folder works).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from codeagent.agent.loop import Limits
from codeagent.agent.run import RunConfig
from codeagent.evals.task import Task, touched_test_files
from codeagent.sandbox.process import CommandResult
from codeagent.sandbox.spec import BUBBLEWRAP
from codeagent.tools.base import ToolEnv, ToolSettings
from codeagent.tools.shell import run_in_repo

OUTPUT_CHARS = 2_000_000  # test output kept for parsing: -rA lists every passing test


@dataclass(slots=True)
class RunSettings:
    sandbox: bool = True
    network: bool = False
    confinement: str = BUBBLEWRAP  # which sandbox, when ``sandbox``: bubblewrap or the Landlock fallback
    setup_timeout_s: float = 1800.0
    test_timeout_s: float = 600.0
    tools: ToolSettings = field(default_factory=ToolSettings)


class SetupFailed(Exception):
    """The task's environment setup command failed."""


def agent_config(settings: RunSettings, limits: Limits | None = None, repo_map: bool = True) -> RunConfig:
    """How a task's agent and commands are set up: everything runs, confined as the settings say,
    with no checkpoints (the workspace is thrown away after the task)."""
    return RunConfig(
        settings.tools,
        limits or Limits(),
        "full-auto",
        settings.sandbox,
        settings.network,
        repo_map,
        checkpoints=False,
        confinement=settings.confinement,
    )


def task_env(root: Path, settings: RunSettings) -> ToolEnv:
    return agent_config(settings).tool_env(root)


def set_up(task: Task, env: ToolEnv, settings: RunSettings) -> None:
    command = (task.environment_setup or "").strip()
    if not command:
        return
    result = run_in_repo(env, expand(command, task), settings.setup_timeout_s, max_output_chars=20_000)
    if result.timed_out or result.exit_code != 0:
        how = "timed out" if result.timed_out else f"exit code {result.exit_code}"
        raise SetupFailed(f"environment setup failed ({how}): {result.output[-2000:].strip()}")


def run_tests(task: Task, env: ToolEnv, settings: RunSettings) -> CommandResult:
    return run_in_repo(env, expand(task.test_command, task), settings.test_timeout_s, OUTPUT_CHARS)


def expand(command: str, task: Task) -> str:
    """``{python}`` and ``{test_files}`` filled in, shell-quoted."""
    return command.replace("{python}", shlex.quote(sys.executable)).replace(
        "{test_files}", shlex.join(touched_test_files(task))
    )
