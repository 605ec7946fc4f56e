"""Approval policy: which tool calls run, which wait for the user, which are refused.

Modes:
- ``read-only``: nothing that can change files or run commands; reading tools only.
- ``ask`` (the TUI's default): every edit and every command waits for the user, who can
  approve once, deny, or always allow that command (or all edits) for the session.
- ``auto-edit``: edits run without asking; commands ask.
- ``full-auto`` (the headless default): everything runs, inside the sandbox.

Tools that run outside the sandbox (MCP servers' tools) carry an ``approval`` of their own:
``"ask"`` asks in every mode (refused in ``read-only`` and where nobody can answer), and
``"allowed"`` (the user's config allows that tool) runs unasked.

``Policy.check`` is the one place that decides; the agent loop calls it before every tool
call. ``ask`` decisions go to an ``Approver`` (the TUI's dialog); without one (headless) an
``ask`` is a refusal, so a misconfigured run fails safe rather than running unapproved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MODES = ("read-only", "ask", "auto-edit", "full-auto")
COMMAND_TOOLS = frozenset({"run", "run_tests"})


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    tool: str
    arguments: dict[str, Any]
    kind: str  # "edit" or "command"

    @property
    def command(self) -> str | None:
        return str(self.arguments.get("command")) if self.tool == "run" else None


Approver = Callable[[ApprovalRequest], str]  # returns "allow", "deny" or "always"


@dataclass(slots=True)
class Decision:
    allowed: bool
    reason: str = ""


@dataclass(slots=True)
class Policy:
    mode: str = "full-auto"
    approver: Approver | None = None
    always_commands: set[str] = field(default_factory=set)
    always_edits: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; modes: {', '.join(MODES)}")

    def check(
        self, tool: str, arguments: dict[str, Any], mutates: bool, approval: str | None = None
    ) -> Decision:
        if approval == "allowed":
            return Decision(True)
        if approval == "ask":
            if self.mode == "read-only":
                return Decision(
                    False, f"{tool} runs outside the sandbox and is not allowed in read-only mode"
                )
            return self._ask(ApprovalRequest(tool, arguments, "command"))
        if not mutates:
            return Decision(True)
        kind = "command" if tool in COMMAND_TOOLS else "edit"
        if self.mode == "read-only":
            return Decision(False, f"{tool} is not allowed in read-only mode")
        if self.mode == "full-auto" or (self.mode == "auto-edit" and kind == "edit"):
            return Decision(True)
        return self._ask(ApprovalRequest(tool, arguments, kind))

    def _ask(self, request: ApprovalRequest) -> Decision:
        if request.kind == "edit" and self.always_edits:
            return Decision(True)
        if request.kind == "command" and (request.command or request.tool) in self.always_commands:
            return Decision(True)
        if self.approver is None:
            return Decision(
                False, f"{request.tool} needs approval in {self.mode} mode and nobody can approve here"
            )
        answer = self.approver(request)
        if answer == "always":
            if request.kind == "edit":
                self.always_edits = True
            else:
                self.always_commands.add(request.command or request.tool)
            return Decision(True)
        if answer == "allow":
            return Decision(True)
        return Decision(False, f"the user denied {request.tool}")
