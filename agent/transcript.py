"""JSONL transcripts: every message, tool call, observation, timing and usage of a run,
written as it happens so a killed run loses at most the step in flight.

Records (one JSON object a line, ``type`` first):
- ``meta``: run id, repository, model, task, limits, plus workflow extras (branch, ...).
- ``message``: one chat message as appended to the conversation, with the step it belongs to;
  a model reply also carries that call's ``usage`` (prompt, cached and completion tokens).
- ``compaction``: the turns after a compaction replaced them (resume replays this).
- ``step``: a step completed: plan, cumulative usage, elapsed time. Resume keeps only
  messages of completed steps, so a half-done step is redone rather than replayed.
- ``end`` / ``result``: how the run ended, and the workflow's machine-readable result.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeagent.agent.protocol import Message, Usage
from codeagent.sandbox.secrets import KnownSecrets


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "codeagent"


def runs_dir() -> Path:
    return state_dir() / "runs"


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


@dataclass(slots=True)
class RunState:
    """What a transcript says about a run, rebuilt for ``--resume``."""

    meta: dict[str, Any]
    messages: list[Message]
    steps: int = 0
    plan: list[dict[str, str]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    turns: list[Usage] = field(default_factory=list)  # usage of each model call of completed steps
    elapsed_s: float = 0.0
    end: dict[str, Any] | None = None

    @property
    def assistant_turns(self) -> int:
        return sum(1 for message in self.messages if message.get("role") == "assistant")


def read_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn line from a crash mid-write
    return records


def load_run(path: Path) -> RunState:
    """Replay a transcript up to its last completed step."""
    records = read_records(path)
    metas = [r for r in records if r.get("type") == "meta"]
    if not metas:
        raise ValueError(f"{path} has no meta record; it is not a codeagent transcript")
    state = RunState(meta=metas[0], messages=[])
    tagged: list[tuple[int, Message]] = []
    turns: list[tuple[int, Usage]] = []  # kept apart: a compaction drops messages, not their cost
    for record in records:
        kind = record.get("type")
        if kind == "message":
            tagged.append((record.get("step", 0), record["message"]))
            if "usage" in record:
                turns.append((record.get("step", 0), Usage(**record["usage"])))
        elif kind == "compaction":
            tagged = [(record.get("step", 0), m) for m in record["messages"]]
        elif kind == "step":
            state.steps = record["step"]
            state.plan = record.get("plan", [])
            state.usage = Usage(**record.get("usage", {}))
            state.elapsed_s = record.get("elapsed_s", 0.0)
        elif kind == "end":
            state.end = record
    state.messages = [message for step, message in tagged if step <= state.steps]
    state.turns = [usage for step, usage in turns if step <= state.steps]
    return state
