"""The runs kept on disk, for ``--resume`` and ``/resume``: a repository's interactive
sessions, and the model a session used last.

A run is a folder under ``runs_dir()`` holding its transcript; run ids start with their
creation time, so sorting them sorts by age. Listing reads only the first line of each
transcript (its typed record, ``record.parse_record``); a run whose record cannot be read
is not listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from codeagent.agent.record import RunRecord, SessionRecord, parse_record
from codeagent.agent.transcript import TRANSCRIPT, read_records, runs_dir, transcript_path


@dataclass(frozen=True, slots=True)
class SessionInfo:
    run_id: str
    task: str  # the first line of the first message
    model: str


def sessions(root: Path) -> list[SessionInfo]:
    """This repository's interactive sessions, newest first."""
    found = []
    for path in sorted(runs_dir().glob(f"*/{TRANSCRIPT}"), reverse=True):
        record = first_record(path)
        if isinstance(record, SessionRecord) and record.root == root:
            found.append(SessionInfo(path.parent.name, record.task, record.model))
    return found


def first_record(path: Path) -> RunRecord | None:
    """The record a transcript opens with, or None when it cannot be read."""
    try:
        with path.open(encoding="utf-8") as handle:
            meta = json.loads(handle.readline())
        return parse_record({"run_id": path.parent.name, **meta})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError):
        return None  # TypeError: a line that is JSON but not an object


def session_model(run_id: str) -> str | None:
    """The model a saved session used last (``/model`` switches are recorded)."""
    path = transcript_path(run_id)
    model = None
    for record in read_records(path) if path.is_file() else []:
        if record.get("type") in ("meta", "model", "resume") and record.get("model"):
            model = record["model"]
    return model
