"""The project's setup command (``.codeagent/config.toml``: ``setup_command``), run once before a
run's first step: by ``fix`` before its tests-before, by the terminal UI with the session's
first message.

The command is repository content, so it runs exactly as a command the model asks for: the
``run`` tool, inside the sandbox, with the same limits, through the approval policy (runs
unasked only in ``full-auto``; asks in ``ask`` and ``auto-edit`` where someone can answer;
refused headless otherwise and in ``read-only``). With the sandbox off it never runs
(``settings`` drops it before, with a notice; this is the second lock). What happened is
told to the model in the task message (``note``), so a failed setup is not a mystery, and
shown to the front end as a ``run`` call (events), so a long setup is not a silent wait.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from codeagent.agent import events as ev
from codeagent.sandbox.policy import Policy
from codeagent.sandbox.secrets import KnownSecrets
from codeagent.tools.base import ToolEnv, run_tool
from codeagent.tools.registry import get_tool

TAIL_CHARS = 2_000
CALL_ID = "setup"


@dataclass(frozen=True, slots=True)
class SetupOutcome:
    command: str
    ran: bool
    exit_code: int | None = None
    message: str = ""  # why it did not run, or the tail of its output

    @property
    def note(self) -> str:
        """What the model is told, in the task message."""
        if not self.ran:
            return f"(The project's setup command `{self.command}` was not run: {self.message}.)"
        return (
            f"(The project's setup command `{self.command}` ran in the sandbox before you started; "
            f"exit code {self.exit_code}. Its output ends with:\n{self.message})"
        )

    def as_dict(self) -> dict[str, object]:
        return {"command": self.command, "ran": self.ran, "exit_code": self.exit_code}


def run_setup(
    command: str, env: ToolEnv, policy: Policy, secrets: KnownSecrets, sink: ev.EventSink = ev.ignore
) -> SetupOutcome:
    """Run ``command`` as the ``run`` tool would, if the sandbox is on and the policy lets it;
    shown to ``sink`` as a ``run`` call, its output cleared of ``secrets``."""
    if env.sandbox is None:
        return SetupOutcome(command, False, message="the sandbox is off")
    arguments = {"command": command}
    decision = policy.check("run", arguments, True)
    if not decision.allowed:
        return SetupOutcome(command, False, message=decision.reason)
    sink(ev.ToolCallStarted(CALL_ID, "run", arguments))
    started = time.monotonic()
    if env.checkpoints is not None:
        env.checkpoints.snapshot("before the setup command")
    observation = run_tool(get_tool("run"), arguments, env)
    text = secrets.redact(observation.text)
    sink(ev.ToolCallFinished(CALL_ID, "run", observation.ok, text, {}, time.monotonic() - started))
    code = observation.data.get("exit_code")
    return SetupOutcome(command, True, code if isinstance(code, int) else None, text[-TAIL_CHARS:])
