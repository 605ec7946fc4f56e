"""``run(command, timeout?)``: a shell command in the repository root, through the sandbox's
process layer (whole tree killed on timeout, output capped head and tail, secrets stripped
from the environment)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from codeagent.sandbox.environment import scrub_env
from codeagent.sandbox.process import CommandResult, run_command
from codeagent.tools.base import Observation, ToolEnv, ToolError, schema


def command_env(env: ToolEnv) -> dict[str, str]:
    scrubbed = scrub_env(os.environ, env.settings.secret_env_names)
    scrubbed.update(PAGER="cat", GIT_PAGER="cat", TERM="dumb", NO_COLOR="1", CI=scrubbed.get("CI", "1"))
    return scrubbed


def run_in_repo(env: ToolEnv, command: str | list[str], timeout: float) -> CommandResult:
    return run_command(
        command,
        env.root,
        timeout=timeout,
        max_output_chars=env.settings.max_output_chars,
        env=command_env(env),
    )


def describe(result: CommandResult) -> str:
    if result.timed_out:
        return f"timed out after {result.duration_s:.0f}s; killed {result.killed_processes} processes"
    return f"exit code: {result.exit_code}"


class Run:
    name: ClassVar[str] = "run"
    description: ClassVar[str] = (
        "Run a shell command (bash) in the repository root. Output is capped (head and tail kept); "
        "the command and everything it started are killed at the timeout. No interactive input."
    )
    parameters: ClassVar[dict[str, Any]] = schema(
        {"command": {"type": "string"}, "timeout": {"type": "number", "description": "seconds"}}, ["command"]
    )
    mutates: ClassVar[bool] = True

    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        command = args["command"]
        if not isinstance(command, str) or not command.strip():
            raise ToolError("command must be a non-empty string")
        ceiling = env.settings.command_timeout
        try:
            timeout = min(float(args.get("timeout") or ceiling), ceiling)
        except (TypeError, ValueError) as err:
            raise ToolError("timeout must be a number of seconds") from err
        if timeout <= 0:
            raise ToolError("timeout must be positive")
        result = run_in_repo(env, command, timeout)
        text = (result.output.rstrip("\n") + "\n" if result.output else "") + describe(result)
        data = {
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "duration_s": round(result.duration_s, 3),
            "truncated": result.truncated,
        }
        return Observation(text, ok=result.exit_code == 0, data=data)
