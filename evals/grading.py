"""Grading a patch the way SWE-bench does, in a workspace of its own.

A fresh copy at the base commit gets the environment setup, then the patch under test,
then the hidden tests: the files the test patch touches are put back to their base version
first, so a model that edited those files cannot make the test patch fail to apply or keep
its own version of the tests. The task's test command runs once; its output is parsed per
test with the runner's parser (``tools.test_results``). The task is resolved when every
``FAIL_TO_PASS`` and every ``PASS_TO_PASS`` test is reported passed; a test missing from the
output counts as failed. Only the patch crosses from the agent's workspace to the grader's,
so what is graded is exactly what the report's ``patch`` holds.

Statuses: ``resolved``; ``unresolved`` (tests ran, some did not pass); ``patch_failed`` (the
patch does not apply to the base); ``error`` (setup failed, or the hidden tests do not apply).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codeagent.evals import patches
from codeagent.evals.environment import RunSettings, SetupFailed, expand, run_tests, set_up, task_env
from codeagent.evals.repos import materialize
from codeagent.evals.task import Task, touched_test_files
from codeagent.tools.test_results import PARSERS, TestReport, parse_any

OUTPUT_TAIL = 4000


@dataclass(slots=True)
class Grade:
    status: str
    message: str
    tests: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    test_command: str = ""
    exit_code: int | None = None
    output_tail: str = ""

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"


def grade(task: Task, patch: str, source: Path, root: Path, settings: RunSettings) -> Grade:
    """Grade ``patch`` for ``task`` in a new repository at ``root``."""
    materialize(task, source, root)
    env = task_env(root, settings)
    try:
        set_up(task, env, settings)
    except SetupFailed as err:
        return Grade("error", str(err))
    try:
        patches.apply(root, patch)
    except patches.PatchError as err:
        return Grade("patch_failed", f"the patch does not apply to the base commit: {err}")
    patches.reset_test_files(root, task.base_commit, touched_test_files(task))
    try:
        patches.apply(root, task.test_patch)
    except patches.PatchError as err:
        return Grade("error", f"the hidden tests do not apply: {err}")
    result = run_tests(task, env, settings)
    report = PARSERS.get(task.test_runner, parse_any)(result.output)
    tests = {
        "FAIL_TO_PASS": _split(task.FAIL_TO_PASS, report),
        "PASS_TO_PASS": _split(task.PASS_TO_PASS, report),
    }
    failing = tests["FAIL_TO_PASS"]["failure"] + tests["PASS_TO_PASS"]["failure"]
    status = "unresolved" if failing else "resolved"
    message = _message(tests, result.timed_out)
    tail = result.output[-OUTPUT_TAIL:] if failing else ""
    return Grade(status, message, tests, expand(task.test_command, task), result.exit_code, tail)


def _split(names: list[str], report: TestReport) -> dict[str, list[str]]:
    passed = set(report.passed)
    return {
        "success": [name for name in names if name in passed],
        "failure": [name for name in names if name not in passed],
    }


def _message(tests: dict[str, dict[str, list[str]]], timed_out: bool) -> str:
    parts = [
        f"{kind} {len(result['success'])}/{len(result['success']) + len(result['failure'])} pass"
        for kind, result in tests.items()
    ]
    return ", ".join(parts) + ("; the tests timed out" if timed_out else "")
