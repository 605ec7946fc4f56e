"""JSONL transcripts: every message, tool call, observation, timing and usage of a run,
written as it happens so a killed run loses at most the step in flight.

Records (one JSON object a line, ``type`` first):
- ``meta``: the run's typed record (``record.RunRecord``): run id, kind, repository, model,
  limits, plus each kind's own fields (a fix run's branch, a session's first message, ...).
- ``message``: one chat message as appended to the conversation, with the step it belongs to;
  a model reply also carries that call's ``usage`` (prompt, cached and completion tokens).
- ``compaction``: the turns after a compaction replaced them (resume replays this).
- ``step``: a step completed: plan, cumulative usage, elapsed time. Resume keeps only
  messages of completed steps, so a half-done step is redone rather than replayed.
- ``end`` / ``result``: how the run ended, and the workflow's machine-readable result.
- ``resume``, ``model``, ``undo``: a run continued, a model switched, the files undone.

``record.py`` reads a transcript back: the typed ``meta`` record and the state to resume.

Each line is flushed and fsynced; a torn last line (crash mid-write) is skipped on load.
Every record passes through the run's known secrets (``secrets``: by default the process's
environment; the session widens it to the repository's git credentials) before it is
written, so a secret in a model's reply, a result or a message never reaches the file; a
resumed run reads ``[secret:NAME]`` where one was.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from codeagent import xdg
from codeagent.sandbox.secrets import KnownSecrets

TRANSCRIPT = "transcript.jsonl"  # in each run's folder under ``runs_dir()``


def state_dir() -> Path:
    return xdg.folder("state")


def runs_dir() -> Path:
    return state_dir() / "runs"


def transcript_path(run_id: str) -> Path:
    """Where the run ``run_id`` keeps its transcript."""
    return runs_dir() / run_id / TRANSCRIPT


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class Transcript:
    """Append-only writer of one run's ``transcript.jsonl``."""

    def __init__(self, path: Path, secrets: KnownSecrets | None = None) -> None:
        self.path = path
        self.secrets = secrets if secrets is not None else KnownSecrets.from_environment(os.environ)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def write(self, record_type: str, **fields: Any) -> None:
        record = self.secrets.redact_data({"type": record_type, "time": round(time.time(), 3), **fields})
        line = json.dumps(record, ensure_ascii=False)
        self._file.write(line + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def read_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn line from a crash mid-write
    return records
