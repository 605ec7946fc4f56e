"""The prompt layout: a pinned prefix and append-only turns, sized with the model's counter.

The pinned prefix (system prompt, memory files such as ``AGENTS.md``, repository context:
the whole codebase when it fits, else the repo map) is built once per session and never
rewritten, so an engine's prefix cache stays valid across turns; tool schemas travel beside
it in the request. Turns only grow, until compaction rewrites them: the task message and the
most recent exchanges stay verbatim, everything between becomes one message listing the
steps taken, the plan and the current text of the files edited. With the codebase pinned
(``tracker`` set), edits reach the model as diffs in the turns (see ``codebase.py``), and
compaction also takes a new snapshot through ``refresh`` (new pinned prefix = current files),
which makes the files' text in the summary unnecessary. Compaction is mechanical (no model call), so it is deterministic
and works with every client; its limit is that the model's own reasoning in the dropped
turns is lost.

Memory files and the files a summary quotes are read on the host, so only as
``tools.contained`` allows: regular files reached without a symlink that leads out of the
repository (a ``.codeagent`` linked to another folder is not read).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from codeagent.agent.codebase import Tracker
from codeagent.agent.memory import FolderMemory, capped_text
from codeagent.agent.prompts import render
from codeagent.agent.protocol import Message, ModelClient, ToolSchema
from codeagent.tools.contained import Contained

MEMORY_FILES = ("AGENTS.md", "CLAUDE.md", ".codeagent/instructions.md")
MAX_MEMORY_CHARS = 20_000
MAX_FILE_CHARS_IN_SUMMARY = 6_000
DIFF_TARGET = re.compile(r"^\+\+\+ (?:b/)?(\S+)", re.MULTILINE)


def read_memory_files(root: Path) -> list[tuple[str, str]]:
    """(name, text) of the memory files present: regular files, reached without a symlink
    that leads out of the repository (``tools.contained``), cut to ``MAX_MEMORY_CHARS``."""
    found = []
    vet = Contained(root)
    for name in MEMORY_FILES:
        path = vet.file(name)
        if path is not None:
            found.append((name, capped_text(path, MAX_MEMORY_CHARS)))
    return found


def system_message(
    root: Path, repo_context: str, codebase: str = "", user_memory: tuple[str, str] | None = None
) -> Message:
    """The pinned system message: instructions, the user's own ``AGENTS.md`` (``memory.user_memory``:
    where, text), the repository's memory files, then the codebase or the repo map."""
    memory = read_memory_files(root)
    text = render(
        "system",
        user_memory=user_memory,
        memory=memory,
        repo_context=repo_context,
        codebase=codebase,
    )
    return {"role": "system", "content": text}


Refresh = Callable[[], tuple[list[Message], Tracker | None]]  # a new pinned prefix and its tracker


@dataclass(slots=True)
class Context:
    client: ModelClient
    tools: list[ToolSchema]
    pinned: list[Message]
    turns: list[Message] = field(default_factory=list)
    compact_at: float = 0.8  # share of the window (less the reply reserve) that triggers compaction
    reply_reserve: int = 4096
    keep_recent: int = 6  # messages kept verbatim at the end when compacting
    tracker: Tracker | None = None  # set when the pinned prefix holds the codebase
    refresh: Refresh | None = None
    folders: FolderMemory | None = None  # subfolder AGENTS.md files, shown in the turns as the agent goes

    @property
    def messages(self) -> list[Message]:
        return self.pinned + self.turns

    def append(self, message: Message) -> None:
        self.turns.append(message)

    def tokens(self) -> tuple[int, bool]:
        return self.client.count_tokens(self.messages, self.tools)

    @property
    def limit(self) -> int:
        return max(1, int((self.client.context_window - self.reply_reserve) * self.compact_at))

    def needs_compaction(self) -> bool:
        return self.tokens()[0] > self.limit

    def compact(self, root: Path, steps: int, plan_text: str) -> bool:
        """Rewrite the turns into task + summary + recent tail; False when there is nothing to drop."""
        cut = _tail_start(self.turns, self.keep_recent)
        if cut <= 1:
            return False
        middle = self.turns[1:cut]
        resnapshot = False
        if self.tracker is not None and self.refresh is not None:
            self.pinned, self.tracker = self.refresh()
            resnapshot = self.tracker is not None  # None: the codebase outgrew the window; a repo map now
        summary = render(
            "compacted",
            steps=steps,
            plan=plan_text,
            actions=_actions(middle),
            resnapshot=resnapshot,
            instructions=list(self.folders.shown.items()) if self.folders is not None else [],
            files=[] if resnapshot else _current_files(root, middle),
        )
        self.turns = [self.turns[0], {"role": "user", "content": summary}, *self.turns[cut:]]
        return True


def _tail_start(turns: list[Message], keep: int) -> int:
    """Index where the verbatim tail starts: an assistant message, so tool replies keep their call."""
    index = max(1, len(turns) - keep)
    while index < len(turns) and turns[index].get("role") != "assistant":
        index += 1
    return index


def _actions(messages: list[Message]) -> list[str]:
    results = {m.get("tool_call_id"): str(m.get("content", "")) for m in messages if m.get("role") == "tool"}
    lines = []
    for message in messages:
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            outcome = results.get(call.get("id"), "").strip().splitlines()
            first = outcome[0][:160] if outcome else "(no result)"
            lines.append(f"{function.get('name')}({str(function.get('arguments', ''))[:160]}) -> {first}")
    return lines


def _current_files(root: Path, messages: list[Message]) -> list[tuple[str, str]]:
    paths: list[str] = []
    for message in messages:
        for call in message.get("tool_calls") or []:
            paths += _edited_paths(call)
    files = []
    vet = Contained(root)  # the paths come from the model: only files inside the repository
    for rel in dict.fromkeys(paths):
        path = vet.file(rel)
        if path is not None:
            text = path.read_text(encoding="utf-8", errors="replace")
            files.append((rel, text[:MAX_FILE_CHARS_IN_SUMMARY]))
    return files


def _edited_paths(call: dict) -> list[str]:
    function = call.get("function", {})
    try:
        args = json.loads(function.get("arguments") or "{}")
    except json.JSONDecodeError:
        return []
    if not isinstance(args, dict):
        return []
    if function.get("name") in ("edit_file", "write_file") and isinstance(args.get("path"), str):
        return [args["path"]]
    if function.get("name") == "apply_patch" and isinstance(args.get("patch"), str):
        return [p for p in DIFF_TARGET.findall(args["patch"]) if p != "/dev/null"]
    return []
