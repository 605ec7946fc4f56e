"""Memory files beyond the repository's root: the user's own ``AGENTS.md``, and the ``AGENTS.md``
of each subfolder the agent works in.

- The user's file (``AGENTS.md`` in codeagent's config folder, ``xdg.folder("config")``) is
  read once by the front end (``user_memory``) and pinned in the prompt prefix before the
  repository's memory files (``context.system_message``). It is the user's own word.
- A subfolder's ``AGENTS.md`` (``FolderMemory``) is shown when a tool call first reads, edits,
  lists or searches a path under that folder (``touched_paths``: the call's ``path``,
  ``paths`` or a patch's file headers): appended to that call's result, once per session,
  outermost folder first, cut to ``MAX_FOLDER_CHARS`` each and ``MAX_FOLDER_TOTAL`` in all.
  The pinned prefix is never rewritten, so the engine's prefix cache stays valid (DESIGN.md:
  the prompt layout is a cache layout). The root's own ``AGENTS.md`` is pinned already, so only
  folders below the root count. Compaction keeps what was shown (``shown`` goes into the
  summary); a resumed session finds the folders it showed from the markers in its turns and
  reads them again.

Subfolder files are repository content, which an attacker may write: they are read only as
``tools.contained`` allows (regular files, no symlink leading out), marked with their path and
as repository content, and given no more authority than the root's ``AGENTS.md``. Limits: only
``AGENTS.md`` is looked for below the root (not ``CLAUDE.md``); paths that a shell command
touches (``run``) are not seen; a turn that quotes the marker text can keep that folder's file
from being shown again after a resume (never make one appear).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from codeagent import xdg
from codeagent.agent.prompts import render
from codeagent.agent.protocol import Message
from codeagent.tools.contained import Contained

FOLDER_FILE = "AGENTS.md"
MAX_USER_CHARS = 20_000
MAX_FOLDER_CHARS = 8_000
MAX_FOLDER_TOTAL = 32_000
MARKER = re.compile(r"^\[Instructions from (\S+/AGENTS\.md) \(repository content", re.MULTILINE)
PATCH_FILE = re.compile(r"^(?:\+\+\+|---) (?:[ab]/)?(\S+)", re.MULTILINE)


def user_memory_path() -> Path:
    return xdg.folder("config") / FOLDER_FILE


def capped_text(path: Path, chars: int) -> str:
    """A memory file's first ``chars`` characters (enough bytes read for that many)."""
    with path.open("rb") as handle:
        data = handle.read(chars * 4)
    return data.decode("utf-8", errors="replace")[:chars]


def user_memory(path: Path | None = None) -> tuple[str, str] | None:
    """(where, text) of the user's own ``AGENTS.md``, cut to ``MAX_USER_CHARS``; None when absent."""
    path = path or user_memory_path()
    try:
        text = capped_text(path, MAX_USER_CHARS)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return (str(path), text) if text.strip() else None


def touched_paths(tool: str, args: dict[str, Any]) -> list[str]:
    """The repository paths a call names: what it reads, edits, lists or searches."""
    if tool == "apply_patch" and isinstance(args.get("patch"), str):
        return [p for p in PATCH_FILE.findall(args["patch"]) if p != "/dev/null"]
    paths = args.get("paths") if tool == "run_tests" else [args.get("path")]
    return [p for p in paths or [] if isinstance(p, str) and p.strip()]


class FolderMemory:
    """The subfolder ``AGENTS.md`` files shown so far in one session, and the next ones to show."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.shown: dict[str, str] = {}  # "sub/AGENTS.md" -> the text shown
        self.spent = 0

    @classmethod
    def resumed(cls, root: Path, messages: Iterable[Message]) -> FolderMemory:
        """The memory of a session continued from ``messages``: the files its turns showed, read again."""
        memory = cls(root)
        vet = Contained(memory.root)
        for message in messages:
            for rel in MARKER.findall(str(message.get("content") or "")):
                if rel not in memory.shown:
                    memory.shown[rel] = _read(vet, rel) or ""
        memory.spent = sum(len(text) for text in memory.shown.values())
        return memory

    def note(self, tool: str, args: dict[str, Any]) -> str:
        """The instructions of the folders ``tool`` touches that were not shown yet ("" if none)."""
        vet = Contained(self.root)
        parts = []
        for folder in self._folders(touched_paths(tool, args)):
            rel = f"{folder}/{FOLDER_FILE}"
            if rel in self.shown or self.spent >= MAX_FOLDER_TOTAL:
                continue
            text = _read(vet, rel)
            if text is None:
                continue
            room = min(MAX_FOLDER_CHARS, MAX_FOLDER_TOTAL - self.spent)
            self.shown[rel] = text[:room]
            self.spent += len(self.shown[rel])
            parts.append(
                render("folder_memory", path=rel, folder=folder, text=text[:room], cut=len(text) > room)
            )
        return "\n\n".join(parts)

    def _folders(self, paths: list[str]) -> list[str]:
        """Each folder below the root on the way to each path (the path itself when it is a folder)."""
        folders: list[str] = []
        for raw in paths:
            rel = os.path.relpath(raw, self.root) if os.path.isabs(raw) else raw
            parts = [part for part in rel.replace(os.sep, "/").split("/") if part not in ("", ".")]
            if not parts or ".." in parts:
                continue
            last = len(parts) if (self.root.joinpath(*parts)).is_dir() else len(parts) - 1
            folders += ["/".join(parts[:end]) for end in range(1, last + 1)]
        return list(dict.fromkeys(folders))


def _read(vet: Contained, rel: str) -> str | None:
    path = vet.file(rel)
    return None if path is None else capped_text(path, MAX_FOLDER_CHARS + 1)  # one more: was it cut
