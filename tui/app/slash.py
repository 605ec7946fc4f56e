"""Slash commands: their names, help, and what an unknown one is told.

A registry (name -> argument syntax and a line of help) plus aliases, and ``SlashCommands``,
mixed into the app, with one ``slash_<name>(argument)`` method each. An unknown command is
answered with the closest names and a pointer to ``/help``, never sent to the model. Commands
that touch the conversation or the files (``IDLE_ONLY``, and switching models) are queued by
the app until the agent stops; ``/mode`` applies at once, to the agent's next tool call.
"""

from __future__ import annotations

import difflib
from typing import Any

from rich.text import Text

from codeagent.sandbox.git import GitError
from codeagent.tools.plan import render_plan
from codeagent.tui.app.conversation import SessionError
from codeagent.tui.app.entries import DiffEntry
from codeagent.tui.app.panels import PlanPanel, StatusBar
from codeagent.tui.app.plain import plain
from codeagent.tui.app.sessions import sessions
from codeagent.tui.app.status import count

COMMANDS: dict[str, tuple[str, str]] = {
    "help": ("", "commands and keys"),
    "model": ("[SPEC]", "show the model, or load another (path, alias, remote:NAME)"),
    "mode": ("[MODE]", "show or set: read-only, ask, auto-edit, full-auto"),
    "plan": ("", "show the plan, and show or hide its panel"),
    "diff": ("", "everything changed in the files this session"),
    "undo": ("", "undo the last change to the files, exactly"),
    "compact": ("", "summarise older turns to free context"),
    "clear": ("", "start a new conversation"),
    "usage": ("", "tokens used this session (also /cost)"),
    "resume": ("[ID]", "list this repository's sessions, or continue one"),
    "quit": ("", "leave codeagent (also /exit)"),
}
MODE_HELP = {
    "read-only": "reading tools only; no edits, no commands",
    "ask": "every edit and command waits for your approval",
    "auto-edit": "edits run; commands wait for your approval",
    "full-auto": "everything runs, inside the sandbox",
}
ALIASES = {"cost": "usage", "exit": "quit", "q": "quit", "?": "help", "h": "help"}

KEYS = (
    ("Enter", "send"),
    ("Ctrl+J", "new line (Shift+Enter where the terminal tells it apart)"),
    ("Up / Down", "history"),
    ("@path", "attach a file; Tab completes"),
    ("Esc", "interrupt the model or the running command"),
    ("PageUp / PageDown", "scroll the transcript (or the approval being shown)"),
    ("Ctrl+C twice", "quit"),
    ("Ctrl+O", "show or hide the output of every tool call"),
    ("Tab", "move to the transcript's blocks; Enter opens one"),
    ("y / n / a", "approve, deny, always allow (when asked)"),
)


def parse(text: str) -> tuple[str, str]:
    """``/name argument`` -> (name, argument)."""
    name, _, argument = text.strip()[1:].partition(" ")
    return name.strip().lower(), argument.strip()


def resolve(name: str) -> str | None:
    name = ALIASES.get(name, name)
    return name if name in COMMANDS else None


def unknown(name: str) -> str:
    known = [*COMMANDS, *ALIASES]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" (did you mean {' or '.join('/' + c for c in close)}?)" if close else ""
    return f"unknown command /{name}{hint}; /help lists them all"


def help_lines() -> list[tuple[str, str]]:
    rows = [(f"/{name} {syntax}".rstrip(), text) for name, (syntax, text) in COMMANDS.items()]
    return rows + list(KEYS)


IDLE_ONLY = frozenset({"diff", "undo", "compact", "clear", "resume"})


def needs_idle(text: str) -> bool:
    """Whether the command must wait for the agent's worker (the app queues it until then)."""
    name, argument = parse(text)
    command = resolve(name)
    return command in IDLE_ONLY or (command == "model" and bool(argument))


class SlashCommands:
    """The commands, mixed into the app (which provides ``conversation``, ``notice``, ``add``...)."""

    conversation: Any
    stats: Any
    setup: Any

    def run_slash(self, text: str) -> None:
        name, argument = parse(text)
        command = resolve(name)
        if command is None:
            self.notice(unknown(name), "warn")
        else:
            getattr(self, f"slash_{command}")(argument)

    def slash_help(self, argument: str) -> None:
        rows = help_lines()
        width = max(len(left) for left, _ in rows) + 2
        text = Text()
        for left, right in rows:
            text.append(left.ljust(width), style="bold")
            text.append(right + "\n")
        text.rstrip()
        self.notice(text)

    def slash_model(self, argument: str) -> None:
        if not argument:
            window = f", {count(self.stats.window)} tokens of context" if self.stats.window else ""
            self.notice(f"model: {self.stats.model} ({self.conversation.model}{window})")
            return
        self.conversation.load_model(argument)

    def slash_mode(self, argument: str) -> None:
        if argument:
            try:
                self.conversation.set_mode(argument)
            except SessionError as err:
                self.notice(str(err), "warn")
                return
            self.stats.mode = argument
            self.query_one(StatusBar).show()
        self.notice(f"mode: {self.conversation.policy.mode} ({MODE_HELP[self.conversation.policy.mode]})")

    def slash_plan(self, argument: str) -> None:
        panel = self.query_one(PlanPanel)
        panel.toggle_class("-hidden")
        plan = self.conversation.env.plan
        shown = "hidden" if panel.has_class("-hidden") else "shown"
        self.notice(f"{render_plan(plan) if plan else 'no plan yet'}\n(plan panel {shown}; /plan toggles it)")

    def slash_diff(self, argument: str) -> None:
        try:
            diff = self.conversation.diff()
        except GitError as err:
            self.notice(f"/diff failed: {err}", "error")
            return
        if diff is None:
            self.notice("nothing changed yet: the session starts with your first message")
        elif not diff.strip():
            self.notice("no changes to the files this session")
        else:
            self.add(DiffEntry(diff))

    def slash_undo(self, argument: str) -> None:
        try:
            undone = self.conversation.undo()
        except GitError as err:
            self.notice(f"/undo failed: {err}", "error")
            return
        if undone is None:
            self.notice("nothing to undo: the files match the latest checkpoint")
            return
        files = ", ".join(undone.changed) or "no file"
        self.notice(f"undone: {files} restored to before '{undone.label}' (the model is told)", "ok")

    def slash_compact(self, argument: str) -> None:
        if not self.conversation.compact():
            self.notice("nothing to compact yet")

    def slash_clear(self, argument: str) -> None:
        self.conversation.clear()
        self.transcript.remove_children()
        self.query_one(PlanPanel).show([])
        self.stats.steps = self.stats.context = 0
        self.query_one(StatusBar).show()
        self.notice("new conversation (the files keep their changes; /undo still works)")

    def slash_usage(self, argument: str) -> None:
        usage = self.conversation.usage()
        self.notice(
            f"{usage['calls']} model calls, {usage['steps']} steps · prompt {count(usage['prompt_tokens'])} "
            f"tokens ({count(usage['cached_tokens'])} cached) · completion {count(usage['completion_tokens'])}"
        )

    def slash_resume(self, argument: str) -> None:
        if argument:
            self.resume(argument)
            return
        found = sessions(self.setup.root)[:10]
        if not found:
            self.notice("no saved sessions for this repository")
            return
        text = Text("sessions of this repository, newest first (/resume ID continues one):\n")
        for info in found:
            text.append(plain(info.run_id, "bold"))
            text.append(plain(f"  {info.task[:60]}  "))
            text.append(plain(info.model + "\n", "dim"))
        text.rstrip()
        self.notice(text)

    def resume(self, run_id: str) -> None:
        try:
            self.conversation.resume(run_id)
        except SessionError as err:
            self.notice(f"{err}; /resume lists this repository's sessions", "warn")
            return
        self.started_at = self.clock()
        self.set_phase(f"resuming {run_id}")

    def slash_quit(self, argument: str) -> None:
        self.quit()
