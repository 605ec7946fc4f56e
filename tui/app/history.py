"""The prompt's history: what the user sent, kept across sessions in the state folder.

One JSON string a line in ``$XDG_STATE_HOME/codeagent/history.jsonl``; the newest
``MAX_ENTRIES`` are kept (the file is rewritten when it grows past twice that). Navigation
works like a shell's: ``older`` and ``newer`` walk the entries, and the text being typed
when the walk started comes back at its end.
"""

from __future__ import annotations

import json
from pathlib import Path

from codeagent.agent.transcript import state_dir

MAX_ENTRIES = 500


def history_path() -> Path:
    return state_dir() / "history.jsonl"


class History:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or history_path()
        self.entries = self._load()
        self._index = len(self.entries)
        self._draft = ""

    def _load(self) -> list[str]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return []
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, str):
                entries.append(entry)
        return entries[-MAX_ENTRIES:]

    def add(self, text: str) -> None:
        if text.strip() and (not self.entries or self.entries[-1] != text):
            self.entries.append(text)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(text, ensure_ascii=False) + "\n")
            if len(self.entries) > 2 * MAX_ENTRIES:
                self.entries = self.entries[-MAX_ENTRIES:]
                lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.entries)
                self.path.write_text(lines, encoding="utf-8")
        self._index = len(self.entries)

    def older(self, current: str) -> str | None:
        if self._index == 0:
            return None
        if self._index == len(self.entries):
            self._draft = current
        self._index -= 1
        return self.entries[self._index]

    def newer(self) -> str | None:
        if self._index >= len(self.entries):
            return None
        self._index += 1
        return self._draft if self._index == len(self.entries) else self.entries[self._index]
