"""The results of a run on disk: one JSON report per task, the run's metadata, predictions.

Layout of an output folder::

    run.json            model, task source, shard, budgets, codeagent version
    tasks/ID.json       one report per finished task (written once, atomically)
    transcripts/ID.jsonl  the agent's transcript per task (agent runs only; ID.N.jsonl per attempt)
    predictions.jsonl   SWE-bench's predictions format (instance_id, model_name_or_path, model_patch)
    summary.json, summary.md

A report exists only for a finished task, so after an interruption the folder says exactly
what is done, and ``--resume`` runs the rest. Reports are written to a temporary name and
renamed into place: a killed run never leaves half a report.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

STATUSES = ("resolved", "unresolved", "patch_failed", "error", "skipped")


@dataclass(slots=True)
class TaskReport:
    instance_id: str
    status: str  # one of STATUSES
    message: str
    model: str
    resolved: bool = False
    tests: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    test_command: str = ""
    test_exit_code: int | None = None
    steps: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: {"prompt": 0, "cached": 0, "completion": 0})
    agent_status: str | None = None
    agent_message: str = ""
    wall_time_s: float = 0.0
    agent_time_s: float = 0.0
    overhead_s: float = 0.0  # wall time outside the agent: workspaces, setup, grading
    patch: str = ""
    transcript: str | None = None
    test_output_tail: str = ""
    attempts: dict[str, Any] | None = None  # with --attempts N: each attempt, the winner and why

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskReport:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def safe_name(instance_id: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in instance_id)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, path)


def write_report(output: Path, report: TaskReport) -> None:
    write_json(output / "tasks" / f"{safe_name(report.instance_id)}.json", report.as_dict())


def read_reports(output: Path) -> dict[str, TaskReport]:
    """Finished tasks' reports by instance id."""
    reports = {}
    for path in sorted((output / "tasks").glob("*.json")):
        report = TaskReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
        reports[report.instance_id] = report
    return reports


def read_run(output: Path) -> dict[str, Any] | None:
    path = output / "run.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_predictions(output: Path, reports: list[TaskReport]) -> None:
    lines = [
        json.dumps({"instance_id": r.instance_id, "model_name_or_path": r.model, "model_patch": r.patch})
        for r in reports
        if r.status != "skipped"
    ]
    path = output / "predictions.jsonl"
    partial = path.with_name(".predictions.jsonl.partial")
    partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(partial, path)
