"""A run's summary: resolved rate, medians and totals, as JSON and as a Markdown table.

The rate counts the tasks that ran: skipped tasks (missing toolchain, repository or
environment) are listed with their reasons and left out of the denominator, so a machine
without Go reports the Go tasks as skipped rather than as failures. Times: per-task wall
time, the agent's share, and the harness overhead (wall time outside the agent); ``run
wall time`` is the whole run's clock time in this session, which parallel workers make
shorter than the sum of the tasks.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from codeagent.evals.reports import STATUSES, TaskReport

METRICS = (
    ("wall time per task (s)", lambda r: r.wall_time_s),
    ("agent time (s)", lambda r: r.agent_time_s),
    ("harness overhead (s)", lambda r: r.overhead_s),
    ("steps", lambda r: r.steps),
    ("prompt tokens", lambda r: r.tokens.get("prompt", 0)),
    ("cached tokens", lambda r: r.tokens.get("cached", 0)),
    ("completion tokens", lambda r: r.tokens.get("completion", 0)),
)


def summarize(reports: list[TaskReport], model: str, run_wall_s: float | None = None) -> dict[str, Any]:
    ran = [r for r in reports if r.status != "skipped"]
    resolved = sum(r.resolved for r in ran)
    counts = Counter(r.status for r in reports)
    return {
        "model": model,
        "tasks": len(reports),
        "ran": len(ran),
        "resolved": resolved,
        "resolved_pct": round(100.0 * resolved / len(ran), 1) if ran else 0.0,
        "statuses": {status: counts.get(status, 0) for status in STATUSES},
        "metrics": {name: _stats([get(r) for r in ran]) for name, get in METRICS},
        "run_wall_time_s": None if run_wall_s is None else round(run_wall_s, 2),
        "skipped": {r.instance_id: r.message for r in reports if r.status == "skipped"},
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": _round(statistics.median(values)) if values else 0, "total": _round(sum(values))}


def _round(value: float) -> float:
    return round(value, 3) if isinstance(value, float) else value


def table(summary: dict[str, Any]) -> str:
    """The summary as Markdown (printed as is, and written to summary.md)."""
    lines = [
        f"model `{summary['model']}`: {summary['resolved']}/{summary['ran']} resolved "
        f"({summary['resolved_pct']:.1f}%), {summary['tasks']} tasks, {summary['statuses']['skipped']} skipped"
        + (
            f", run wall time {summary['run_wall_time_s']:.1f}s"
            if summary["run_wall_time_s"] is not None
            else ""
        ),
        "",
        "| status | tasks |",
        "| --- | ---: |",
        *(f"| {status} | {count} |" for status, count in summary["statuses"].items()),
        "",
        "| per task | median | total |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {m['median']:g} | {m['total']:g} |" for name, m in summary["metrics"].items()),
    ]
    if summary["skipped"]:
        lines += ["", "skipped:", *(f"- {iid}: {why}" for iid, why in sorted(summary["skipped"].items()))]
    return "\n".join(lines)


def task_table(reports: list[TaskReport]) -> str:
    """One row per task; with attempts, how many were made, which won and each one's verdict."""
    several = any(r.attempts for r in reports)
    head = "| task | status | FAIL_TO_PASS | PASS_TO_PASS | steps | tokens | wall s |"
    lines = [
        head + (" attempts | winner |" if several else ""),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: | --- |" if several else ""),
    ]
    for r in sorted(reports, key=lambda r: r.instance_id):
        tokens = r.tokens.get("prompt", 0) + r.tokens.get("completion", 0)
        lines.append(
            f"| {r.instance_id} | {r.status} | {_ratio(r, 'FAIL_TO_PASS')} | {_ratio(r, 'PASS_TO_PASS')} "
            f"| {r.steps} | {tokens} | {r.wall_time_s:.2f} |" + (_attempts(r) if several else "")
        )
    return "\n".join(lines)


def _attempts(report: TaskReport) -> str:
    made = report.attempts
    if not made:
        return " 1 | - |"
    verdicts = "; ".join(f"{a['attempt']}: {a['verdict']}" for a in made["attempts"])
    return f" {made['count']} | {made['winner']} ({verdicts}) |"


def _ratio(report: TaskReport, kind: str) -> str:
    result = report.tests.get(kind)
    if not result:
        return "-"
    return f"{len(result['success'])}/{len(result['success']) + len(result['failure'])}"
