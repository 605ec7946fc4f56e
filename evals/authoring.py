"""Authoring tasks of a project-folder set: fill in ``base_commit`` and the test lists.

    python -m codeagent.evals.authoring evals/tasks/PROJECT/TASK [...]

A task folder holds ``issue.md`` (the report, as its user would write it: the symptom, not
the fix), ``fix.patch`` (base -> fixed, source files only) and ``tests.patch`` (the hidden
tests, against the base); the project's ``repo/`` holds the fixed state. For each task this
computes the base commit (``repo/`` minus the fix), checks that the visible tests pass at the
base, runs the tests with the hidden ones at the base and again with the fix, and writes
``task.json``: ``FAIL_TO_PASS`` fail at the base and pass with the fix, ``PASS_TO_PASS`` pass
at both. Other keys of an existing ``task.json`` (``bug_kind``...) are kept. A task is refused
when a test fails with the fix, or none fails at the base.

Commands run unconfined: this is for the set's authors, on their own tasks.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from codeagent.evals import patches
from codeagent.evals.environment import RunSettings, run_tests, task_env
from codeagent.evals.loader import PROJECT_FILE, TASK_FILE, TEXT_FILES
from codeagent.evals.repos import base_commit_of, materialize
from codeagent.evals.task import Task, TaskError
from codeagent.tools.test_results import PARSERS, parse_any

UNCONFINED = RunSettings(sandbox=False)


def draft(task_dir: Path) -> tuple[Task, dict[str, Any]]:
    """The task with a placeholder base commit and empty lists, and its task.json so far."""
    project = task_dir.parent
    shared = json.loads((project / PROJECT_FILE).read_text(encoding="utf-8"))
    existing = task_dir / TASK_FILE
    meta = json.loads(existing.read_text(encoding="utf-8")) if existing.is_file() else {}
    texts = {field: (task_dir / name).read_text(encoding="utf-8") for field, name in TEXT_FILES.items()}
    fields = {**shared, **meta, **texts, "base_commit": "unknown", "FAIL_TO_PASS": [], "PASS_TO_PASS": []}
    fields |= {"instance_id": f"{project.name}__{task_dir.name}", "source_state": "fixed"}
    fields["repo_path"] = str((project / "repo").resolve())
    return Task.model_validate(fields), meta


def passed_and_failed(task: Task, root: Path) -> tuple[set[str], set[str]]:
    result = run_tests(task, task_env(root, UNCONFINED), UNCONFINED)
    report = PARSERS.get(task.test_runner, parse_any)(result.output)
    return set(report.passed), set(report.failed) | set(report.errors)


def author(task_dir: Path) -> dict[str, Any]:
    task, meta = draft(task_dir)
    task = task.model_copy(update={"base_commit": base_commit_of(task, Path(task.repo_path or ""))})
    with tempfile.TemporaryDirectory(prefix="codeagent-author-") as scratch:
        root = Path(scratch) / "repo"
        materialize(task, Path(task.repo_path or ""), root)
        passed, failed = passed_and_failed(task, root)
        if failed or not passed:
            raise TaskError(f"{task_dir}: the visible tests must pass at the base; failing: {sorted(failed)}")
        patches.apply(root, task.test_patch)
        at_base, _ = passed_and_failed(task, root)
        patches.apply(root, task.patch)
        fixed, still_failing = passed_and_failed(task, root)
    if still_failing:
        raise TaskError(f"{task_dir}: tests fail with the fix: {sorted(still_failing)}")
    fail_to_pass = sorted(fixed - at_base)
    if not fail_to_pass:
        raise TaskError(f"{task_dir}: no hidden test fails at the base")
    meta |= {
        "base_commit": task.base_commit,
        "FAIL_TO_PASS": fail_to_pass,
        "PASS_TO_PASS": sorted(fixed & at_base),
    }
    (task_dir / TASK_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return meta


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for arg in argv:
        meta = author(Path(arg))
        print(f"{arg}: {len(meta['FAIL_TO_PASS'])} fail-to-pass, {len(meta['PASS_TO_PASS'])} pass-to-pass")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
