"""Saved interactive sessions of a repository, for ``--resume`` and ``/resume``.

A session is a run folder under ``runs_dir()`` whose transcript starts with a ``meta`` record of
``kind: interactive``; run ids start with their creation time, so sorting them sorts by age.
Only the first line of each transcript is read to list them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from codeagent.agent.transcript import runs_dir


@dataclass(frozen=True, slots=True)
class SessionInfo:
    run_id: str
    task: str  # the first line of the first message
    model: str


def sessions(root: Path) -> list[SessionInfo]:
    """This repository's sessions, newest first."""
    found = []
    for path in sorted(runs_dir().glob("*/transcript.jsonl"), reverse=True):
        meta = _first_record(path)
        if meta.get("kind") == "interactive" and meta.get("root") == str(root):
            found.append(SessionInfo(path.parent.name, str(meta.get("task", "")), str(meta.get("model", ""))))
    return found


def _first_record(path: Path) -> dict:
    try:
        with path.open(encoding="utf-8") as handle:
            record = json.loads(handle.readline())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}
