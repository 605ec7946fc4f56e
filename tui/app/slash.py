"""Slash commands: their names, help, and what an unknown one is told.

A registry (name -> argument syntax and a line of help) plus aliases, and ``SlashCommands``,
one method a command (``HANDLERS`` maps the names to them), acting on the app through the
``Host`` protocol: its session, its chat screen, loading a model, resuming, quitting. An
unknown command is answered with the closest names and a pointer to ``/help``, never sent
to the model. ``/help`` also lists the settings in effect and where each came from (default,
user config, project config, command line: ``agent.settings``). Commands that touch the conversation or the files (``IDLE_ONLY``, and
switching models) are queued by the app until the agent stops; ``/mode`` applies at once,
to the agent's next tool call.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from rich.text import Text

from codeagent.agent.interactive import Session, SessionError
from codeagent.agent.runs import sessions
from codeagent.agent.settings import Settings
from codeagent.sandbox.git import GitError
from codeagent.tools.plan import render_plan
from codeagent.tui.app.chat import ChatScreen
from codeagent.tui.app.entries import DiffEntry
from codeagent.tui.app.panels import PlanPanel
from codeagent.tui.app.plain import plain
from codeagent.tui.app.setup import Setup
from codeagent.tui.app.status import count

COMMANDS: dict[str, tuple[str, str]] = {
    "help": ("", "commands and keys"),
    "model": ("[SPEC]", "show the model, or load another (path, alias, anthropic:NAME, openai:NAME, ...)"),
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


def settings_text(settings: Settings, mode: str) -> Text:
    """The settings in effect and where each came from (``mode``: the session's now, which
    ``/mode`` may have changed); values may be repository text, shown inert."""
    rows = [(n, mode, "/mode") if n == "mode" and mode != v else (n, v, s) for n, v, s in settings.rows()]
    width = max(len(name) for name, _, _ in rows) + 2
    where = f" (project file: {settings.project_file})" if settings.project_file else " (no project file)"
    text = Text("\nsettings in effect, and where each came from", style="bold")
    text.append_text(plain(where + ":\n"))
    for name, value, source in rows:
        text.append(f"  {name.ljust(width)}", style="bold")
        text.append_text(plain(value))
        text.append(f"  [{source}]\n", style="dim")
    for line in settings.notices:
        text.append_text(plain(f"  note: {line}\n", "yellow"))
    return text


IDLE_ONLY = frozenset({"diff", "undo", "compact", "clear", "resume"})


def needs_idle(text: str) -> bool:
    """Whether the command must wait for the agent's worker (the app queues it until then)."""
    name, argument = parse(text)
    command = resolve(name)
    return command in IDLE_ONLY or (command == "model" and bool(argument))


class Host(Protocol):
    """What the commands act on: the app, by shape."""

    session: Session
    chat: ChatScreen
    setup: Setup

    def load_model(self, spec: str | None = None) -> None: ...

    def resume(self, run_id: str) -> None: ...

    def quit(self) -> None: ...


class SlashCommands:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.session = host.session
        self.chat = host.chat

    def run(self, text: str) -> None:
        name, argument = parse(text)
        command = resolve(name)
        if command is None:
            self.chat.notice(unknown(name), "warn")
        else:
            HANDLERS[command](self, argument)

    def help(self, argument: str) -> None:
        rows = help_lines()
        width = max(len(left) for left, _ in rows) + 2
        text = Text()
        for left, right in rows:
            text.append(left.ljust(width), style="bold")
            text.append(right + "\n")
        settings = self.host.setup.settings
        if settings is not None:
            text.append(settings_text(settings, self.session.policy.mode))
        text.rstrip()
        self.chat.notice(text)

    def model(self, argument: str) -> None:
        if argument:
            self.host.load_model(argument)
            return
        stats = self.chat.stats
        window = f", {count(stats.window)} tokens of context" if stats.window else ""
        self.chat.notice(f"model: {stats.model} ({self.session.model}{window})")

    def mode(self, argument: str) -> None:
        if argument:
            try:
                self.session.set_mode(argument)
            except SessionError as err:
                self.chat.notice(str(err), "warn")
                return
            self.chat.stats = replace(self.chat.stats, mode=argument)
        mode = self.session.policy.mode
        self.chat.notice(f"mode: {mode} ({MODE_HELP[mode]})")

    def plan(self, argument: str) -> None:
        panel = self.chat.query_one(PlanPanel)
        panel.toggle_class("-hidden")
        plan = self.session.env.plan
        shown = "hidden" if panel.has_class("-hidden") else "shown"
        listed = render_plan(plan) if plan else "no plan yet"
        self.chat.notice(f"{listed}\n(plan panel {shown}; /plan toggles it)")

    def diff(self, argument: str) -> None:
        try:
            diff = self.session.diff()
        except GitError as err:
            self.chat.notice(f"/diff failed: {err}", "error")
            return
        if diff is None:
            self.chat.notice("nothing changed yet: the session starts with your first message")
        elif not diff.strip():
            self.chat.notice("no changes to the files this session")
        else:
            self.chat.add(DiffEntry(diff))

    def undo(self, argument: str) -> None:
        try:
            undone = self.session.undo()
        except GitError as err:
            self.chat.notice(f"/undo failed: {err}", "error")
            return
        if undone is None:
            self.chat.notice("nothing to undo: the files match the latest checkpoint")
            return
        files = ", ".join(undone.changed) or "no file"
        self.chat.notice(f"undone: {files} restored to before '{undone.label}' (the model is told)", "ok")

    def compact(self, argument: str) -> None:
        if not self.session.compact():
            self.chat.notice("nothing to compact yet")

    def clear(self, argument: str) -> None:
        self.session.clear()
        self.chat.clear()

    def usage(self, argument: str) -> None:
        usage = self.session.usage()
        self.chat.notice(
            f"{usage['calls']} model calls, {usage['steps']} steps · prompt {count(usage['prompt_tokens'])} "
            f"tokens ({count(usage['cached_tokens'])} cached) · completion {count(usage['completion_tokens'])}"
        )

    def resume(self, argument: str) -> None:
        if argument:
            self.host.resume(argument)
            return
        found = sessions(self.host.setup.root)[:10]
        if not found:
            self.chat.notice("no saved sessions for this repository")
            return
        text = Text("sessions of this repository, newest first (/resume ID continues one):\n")
        for info in found:
            text.append(plain(info.run_id, "bold"))
            text.append(plain(f"  {info.task[:60]}  "))
            text.append(plain(info.model + "\n", "dim"))
        text.rstrip()
        self.chat.notice(text)

    def quit(self, argument: str) -> None:
        self.host.quit()


HANDLERS: dict[str, Callable[[SlashCommands, str], None]] = {
    "help": SlashCommands.help,
    "model": SlashCommands.model,
    "mode": SlashCommands.mode,
    "plan": SlashCommands.plan,
    "diff": SlashCommands.diff,
    "undo": SlashCommands.undo,
    "compact": SlashCommands.compact,
    "clear": SlashCommands.clear,
    "usage": SlashCommands.usage,
    "resume": SlashCommands.resume,
    "quit": SlashCommands.quit,
}
