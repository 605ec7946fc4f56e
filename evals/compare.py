"""``codeagent eval compare A B``: what changed between two runs' output folders.

Tasks are matched by instance id. The comparison lists tasks that became resolved, tasks
that stopped being resolved, other status changes, and tasks only one run has, then the two
summaries' rates and medians side by side. Only finished tasks count (a run that was
interrupted compares on what it finished).
"""

from __future__ import annotations

from pathlib import Path

from codeagent.evals.reports import TaskReport, read_reports, read_run
from codeagent.evals.summary import summarize


class CompareError(Exception):
    """A folder that is not a run's output (exit code 2)."""


def load_run(folder: Path) -> tuple[str, dict[str, TaskReport]]:
    run = read_run(folder)
    if run is None:
        raise CompareError(f"{folder} is not an eval run's output folder (no run.json)")
    return str(run.get("model", "?")), read_reports(folder)


def compare(a: Path, b: Path) -> str:
    model_a, before = load_run(a)
    model_b, after = load_run(b)
    lines = [
        f"A: {a} (model {model_a}, {len(before)} tasks)",
        f"B: {b} (model {model_b}, {len(after)} tasks)",
        "",
    ]
    common = sorted(set(before) & set(after))
    newly = [i for i in common if after[i].resolved and not before[i].resolved]
    lost = [i for i in common if before[i].resolved and not after[i].resolved]
    moved = [i for i in common if before[i].status != after[i].status and i not in newly and i not in lost]
    lines += _section("resolved in B only", newly, before, after)
    lines += _section("resolved in A only", lost, before, after)
    lines += _section("other status changes", moved, before, after)
    for label, ids in (
        ("only in A", sorted(set(before) - set(after))),
        ("only in B", sorted(set(after) - set(before))),
    ):
        if ids:
            lines += [f"{label} ({len(ids)}): {', '.join(ids)}", ""]
    if not (newly or lost or moved):
        lines += [f"no status changes across {len(common)} common tasks", ""]
    lines += _side_by_side(
        summarize([before[i] for i in common], model_a), summarize([after[i] for i in common], model_b)
    )
    return "\n".join(lines)


def _section(
    title: str, ids: list[str], before: dict[str, TaskReport], after: dict[str, TaskReport]
) -> list[str]:
    if not ids:
        return []
    return [f"{title} ({len(ids)}):", *(f"  {i}: {before[i].status} -> {after[i].status}" for i in ids), ""]


def _side_by_side(first: dict, second: dict) -> list[str]:
    lines = [
        "| over common tasks | A | B |",
        "| --- | ---: | ---: |",
        f"| resolved | {first['resolved']}/{first['ran']} ({first['resolved_pct']:.1f}%) "
        f"| {second['resolved']}/{second['ran']} ({second['resolved_pct']:.1f}%) |",
    ]
    for name, stats in first["metrics"].items():
        lines.append(f"| median {name} | {stats['median']:g} | {second['metrics'][name]['median']:g} |")
    return lines
