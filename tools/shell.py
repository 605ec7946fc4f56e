"""``run(command, timeout?)``: a bash command in the repository root.

It goes through the sandbox's process layer: the whole process tree is killed at the
timeout (and any daemon it left behind when it exits), output is capped with its head and
tail kept, and the environment is the user's minus secrets (``scrub_env`` with the
configured extra names), with pagers and colours turned off because nobody reads them
interactively. The timeout defaults to, and is capped at, ``settings.command_timeout``; every
command (``run``, ``run_tests`` and its probes) is also capped at the run's remaining time
budget (``ToolEnv.time_left``), and one cut by it says so.

When the session has a sandbox (``ToolEnv.sandbox``), the command runs confined by
bubblewrap (``sandbox/confine.py``: read-only filesystem but the workspace, emptied homes,
no network unless allowed, process and memory bounds); without one (``--sandbox off``,
only with the user's consent) it runs as the user, within the process layer's bounds only.
"""

from __future__ import annotations

import math
import os
from typing import Any

from codeagent.sandbox.confine import run_confined
from codeagent.sandbox.environment import scrub_env
from codeagent.sandbox.process import CommandResult, run_command
from codeagent.tools.base import Observation, ToolEnv, ToolError
from codeagent.tools.spec import Specified

# Set after scrubbing: no pager or colour codes in captured output, never a credential prompt.
QUIET_ENV = {"PAGER": "cat", "GIT_PAGER": "cat", "TERM": "dumb", "NO_COLOR": "1", "GIT_TERMINAL_PROMPT": "0"}


def command_env(env: ToolEnv) -> dict[str, str]:
    scrubbed = scrub_env(os.environ, env.settings.secret_env_names)
    scrubbed.update(QUIET_ENV)
    scrubbed.setdefault("CI", "1")  # test runners and installers then skip watch modes and prompts
    return scrubbed


def run_in_repo(
    env: ToolEnv, command: str | list[str], timeout: float, max_output_chars: int | None = None
) -> CommandResult:
    cap = max_output_chars or env.settings.max_output_chars
    timeout = env.time_left(timeout)
    if env.sandbox is not None:
        return run_confined(env.sandbox, command, timeout=timeout, max_output_chars=cap, env=command_env(env))
    return run_command(command, env.root, timeout=timeout, max_output_chars=cap, env=command_env(env))


def describe(result: CommandResult, timeout: float, env: ToolEnv) -> str:
    """The last line of an observation: how the command ended."""
    if result.timed_out and env.out_of_time():
        return (
            f"stopped after {result.duration_s:.1f}s: the run's time budget ran out; "
            f"killed {result.killed_processes} processes"
        )
    if result.timed_out:
        return f"timed out after {timeout:g}s; killed {result.killed_processes} processes"
    return f"exit code: {result.exit_code}"


def _timeout(args: dict[str, Any], ceiling: float) -> float:
    value = args.get("timeout")
    if value is None:
        return ceiling
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ToolError("timeout must be a number of seconds")
    if value <= 0:
        raise ToolError("timeout must be positive")
    return min(float(value), ceiling)


class RunCommand(Specified, spec="run"):
    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        command = args["command"]
        if not isinstance(command, str) or not command.strip():
            raise ToolError("command must be a non-empty string")
        timeout = _timeout(args, env.settings.command_timeout)
        result = run_in_repo(env, command, timeout)
        text = (result.output.rstrip("\n") + "\n" if result.output else "") + describe(result, timeout, env)
        data = {
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "duration_s": round(result.duration_s, 3),
            "truncated": result.truncated,
        }
        return Observation(text, ok=result.exit_code == 0, data=data)
