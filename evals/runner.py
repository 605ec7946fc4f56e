"""Running a task set: each task solved and graded in fresh workspaces, N at a time.

``run_eval`` takes tasks already selected (shard, limit) and a solver. Per task, in a worker
thread: skip it (with the reason) when a toolchain, its repository or its environment is
missing; otherwise solve it in one workspace and grade the patch in another (both fresh
copies at the base commit, in a temporary folder that is removed afterwards unless kept).
The main thread writes each finished task's report as it arrives and calls ``on_done``
(the progress bar), so an interrupted run keeps every finished task.

Time per task: ``wall_time_s`` from the first check to the grade; ``agent_time_s`` the
agent's own run (model calls and its tool calls); ``overhead_s`` the rest (workspaces,
setup, patch extraction, grading): the harness's cost.

Ctrl-C (``KeyboardInterrupt`` in the main thread) sets the stop event: workers take no new
task, agents stop between steps, tasks that finish within ``STOP_GRACE_S`` are kept, the
others leave no report (their commands die with codeagent, their workspaces are removed);
the run ends with ``EvalInterrupted`` and ``--resume`` runs what is left. A bug in a worker stops the run and is raised in the main thread.
Worker threads share one solver; model sharing is the solver's concern.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeagent.agent.protocol import ModelError
from codeagent.evals import toolchains
from codeagent.evals.environment import RunSettings, SetupFailed
from codeagent.evals.grading import Grade, grade
from codeagent.evals.patches import PatchError
from codeagent.evals.reports import TaskReport, read_reports, read_run, write_json, write_report
from codeagent.evals.repos import SourceMissing, WorkspaceError, locate
from codeagent.evals.solvers import Attempt, Solver, TaskInterrupted
from codeagent.evals.task import Task
from codeagent.sandbox.git import GitError

STOP_GRACE_S = 5.0
# Failures of one task that end that task with status "error"; anything else is a bug.
TASK_ERRORS = (
    WorkspaceError,
    SetupFailed,
    ModelError,
    GitError,
    PatchError,
    OSError,
    subprocess.TimeoutExpired,
)


class EvalError(Exception):
    """A problem with how the run was asked for (exit code 2)."""


class EvalInterrupted(Exception):
    """Ctrl-C: finished reports are kept; ``--resume`` continues."""


@dataclass(slots=True)
class EvalOptions:
    output: Path
    parallel: int = 1
    resume: bool = False
    repos: Path | None = None  # where repositories without repo_path are looked up
    keep_workspaces: bool = False
    settings: RunSettings = field(default_factory=RunSettings)
    meta: dict[str, Any] = field(default_factory=dict)  # extra run.json fields (task source, shard...)


def prepare(tasks: list[Task], solver: Solver, options: EvalOptions) -> list[Task]:
    """Check the output folder and write ``run.json``; the tasks still to run."""
    done = read_reports(options.output) if (options.output / "tasks").is_dir() else {}
    previous = read_run(options.output)
    if (done or previous) and not options.resume:
        raise EvalError(
            f"{options.output} already holds a run; pass --resume to continue it, or choose another --output"
        )
    if options.resume and previous and previous.get("model") != solver.name:
        raise EvalError(
            f"{options.output} is a run of model {previous.get('model')!r}, not {solver.name!r}; "
            "resume it with the same --model"
        )
    run = {"model": solver.name, "parallel": options.parallel, "tasks": len(tasks), **options.meta}
    write_json(options.output / "run.json", (previous or {}) | run)
    return [task for task in tasks if task.instance_id not in done]


def run_eval(
    tasks: list[Task], solver: Solver, options: EvalOptions, on_done: Callable[[TaskReport], None]
) -> float:
    """Run ``tasks`` (those ``prepare`` left); returns the wall time. Raises ``EvalInterrupted``."""
    started = time.monotonic()
    runner = _Runner(solver, options, on_done)
    runner.run(tasks)
    return time.monotonic() - started


class _Runner:
    def __init__(self, solver: Solver, options: EvalOptions, on_done: Callable[[TaskReport], None]) -> None:
        self.solver = solver
        self.options = options
        self.on_done = on_done
        self.stop = threading.Event()
        self.pending: queue.Queue[Task] = queue.Queue()
        self.results: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.active: set[Path] = set()  # workspaces of tasks in progress

    def run(self, tasks: list[Task]) -> None:
        for task in tasks:
            self.pending.put(task)
        workers = [
            threading.Thread(target=self._worker, daemon=True)
            for _ in range(min(self.options.parallel, len(tasks)))
        ]
        for worker in workers:
            worker.start()
        try:
            self._collect(len(tasks))
        except KeyboardInterrupt:
            self._interrupted(workers)
            raise EvalInterrupted from None

    def _interrupted(self, workers: list[threading.Thread]) -> None:
        """Keep what finishes within the grace period; abandon the rest (their commands die
        with codeagent, under their reapers) and remove their workspaces."""
        self.stop.set()
        deadline = time.monotonic() + STOP_GRACE_S
        while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
            self._drain(timeout=0.2)
        while self._drain(timeout=0):
            pass
        if not self.options.keep_workspaces:
            for folder in list(self.active):
                shutil.rmtree(folder, ignore_errors=True)

    def _collect(self, count: int) -> None:
        while count:
            try:
                kind, payload = self.results.get(timeout=0.5)
            except queue.Empty:
                continue
            count -= 1
            self._handle(kind, payload)

    def _drain(self, timeout: float) -> bool:
        try:
            kind, payload = self.results.get(timeout=timeout) if timeout else self.results.get_nowait()
        except queue.Empty:
            return False
        if kind == "done":
            self._handle(kind, payload)
        return True

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "crash":
            self.stop.set()
            raise payload
        if payload is not None:
            write_report(self.options.output, payload)
            self.on_done(payload)

    def _worker(self) -> None:
        while not self.stop.is_set():
            try:
                task = self.pending.get_nowait()
            except queue.Empty:
                return
            try:
                self.results.put(("done", self._task(task)))
            except BaseException as err:  # handed to the main thread, which raises it
                self.results.put(("crash", err))
                return

    def _task(self, task: Task) -> TaskReport | None:
        started = time.monotonic()
        report = TaskReport(task.instance_id, "skipped", "", self.solver.name)
        try:
            source = locate(task, self.options.repos)
        except SourceMissing as err:
            return _skipped(report, str(err))
        reason = toolchains.missing(task.requires) or _no_environment(task)
        if reason:
            return _skipped(report, reason)
        if not self._solve_and_grade(task, source, report):
            return None
        report.wall_time_s = round(time.monotonic() - started, 3)
        report.overhead_s = round(report.wall_time_s - report.agent_time_s, 3)
        return report

    def _solve_and_grade(self, task: Task, source: Path, report: TaskReport) -> bool:
        """Fill ``report`` in; False when the run was stopped before the task finished."""
        folder = Path(tempfile.mkdtemp(prefix="codeagent-eval-"))
        self.active.add(folder)
        try:
            attempt = self.solver.solve(task, source, folder / "agent", self.stop)
            if self.stop.is_set():
                return False
            _fill_attempt(report, attempt)
            _fill_grade(report, grade(task, attempt.patch, source, folder / "grade", self.options.settings))
        except TaskInterrupted:
            return False
        except TASK_ERRORS as err:
            report.status, report.message = "error", f"{type(err).__name__}: {err}"
        finally:
            if self.options.keep_workspaces:
                report.message += f" (workspaces kept in {folder})"
            else:
                shutil.rmtree(folder, ignore_errors=True)
            self.active.discard(folder)
        return True


def _fill_attempt(report: TaskReport, attempt: Attempt) -> None:
    report.patch, report.steps, report.tokens = attempt.patch, attempt.steps, attempt.tokens
    report.agent_time_s = round(attempt.agent_time_s, 3)
    report.agent_status, report.agent_message = attempt.agent_status, attempt.agent_message
    report.transcript, report.attempts = attempt.transcript, attempt.attempts


def _fill_grade(report: TaskReport, graded: Grade) -> None:
    report.status, report.message, report.resolved = graded.status, graded.message, graded.resolved
    report.tests, report.test_command = graded.tests, graded.test_command
    report.test_exit_code, report.test_output_tail = graded.exit_code, graded.output_tail


def _skipped(report: TaskReport, reason: str) -> TaskReport:
    report.status, report.message = "skipped", reason
    return report


def _no_environment(task: Task) -> str | None:
    if task.environment_setup is not None:
        return None
    return f"no environment for {task.repo or task.instance_id}: the task has no environment_setup (pass --setup CMD)"
