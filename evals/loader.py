"""Reading task sets: a JSONL or JSON file, a folder of JSON files, or project folders.

Accepted shapes of ``PATH`` (``--tasks`` or ``--dataset``):

- a ``.jsonl`` file, one instance a line (SWE-bench's exports), or a ``.json`` file holding
  one instance or a list of them;
- a folder of ``*.json`` files, one instance each;
- project folders, the layout of codeagent's own set (``evals/tasks``): a folder holding
  ``project.json`` (fields shared by its tasks: ``repo``, ``test_command``, ``requires``...),
  a ``repo/`` source tree, and one folder per task with a ``task.json``. A task folder may
  hold its long texts as files beside it (``issue.md``, ``fix.patch``, ``tests.patch``) instead
  of JSON strings; ``instance_id`` defaults to ``<project>__<task folder>``, ``repo_path`` to
  the project's ``repo/``, taken as the fixed state (its base is the tree minus ``fix.patch``).
  A folder of such project folders is a task set.

Relative ``repo_path`` values are made absolute from the file that names them. Instance ids
must be unique. Every problem is a ``TaskError`` that names the file (and line).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codeagent.evals.task import Task, TaskError, parse_task

BUILTIN = Path(__file__).with_name("tasks")
PROJECT_FILE = "project.json"
TASK_FILE = "task.json"
TEXT_FILES = {"problem_statement": "issue.md", "patch": "fix.patch", "test_patch": "tests.patch"}


def load_tasks(path: Path, setup: str | None = None) -> list[Task]:
    """Every task under ``path``; ``setup`` is the environment of tasks that name none."""
    if not path.exists():
        raise TaskError(f"{path} does not exist")
    if path.is_file():
        tasks = _from_file(path)
    elif (path / PROJECT_FILE).is_file():
        tasks = _project(path)
    elif projects := sorted(d for d in path.iterdir() if (d / PROJECT_FILE).is_file()):
        tasks = [task for project in projects for task in _project(project)]
    else:
        tasks = [task for file in sorted(path.glob("*.json")) for task in _from_file(file)]
    if not tasks:
        raise TaskError(f"no tasks in {path} (expected a .jsonl/.json file or a folder of them)")
    _check_unique(tasks)
    if setup is not None:
        tasks = [t if t.environment_setup is not None else _with(t, environment_setup=setup) for t in tasks]
    return tasks


def _from_file(path: Path) -> list[Task]:
    text = _read(path)
    if path.suffix == ".jsonl":
        return [
            _instance(_decode(line, f"{path}:{number}"), path.parent, f"{path}:{number}")
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip()
        ]
    data = _decode(text, str(path))
    items = data if isinstance(data, list) else [data]
    return [
        _instance(item, path.parent, f"{path}[{n}]" if len(items) > 1 else str(path))
        for n, item in enumerate(items)
    ]


def _project(folder: Path) -> list[Task]:
    shared = _decode(_read(folder / PROJECT_FILE), str(folder / PROJECT_FILE))
    if not isinstance(shared, dict):
        raise TaskError(f"{folder / PROJECT_FILE}: must be a JSON object")
    shared = {"repo_path": "repo", "source_state": "fixed", **shared}
    tasks = []
    for task_dir in sorted(d for d in folder.iterdir() if (d / TASK_FILE).is_file()):
        where = str(task_dir / TASK_FILE)
        data = _decode(_read(task_dir / TASK_FILE), where)
        if not isinstance(data, dict):
            raise TaskError(f"{where}: must be a JSON object")
        for field, name in TEXT_FILES.items():
            if field not in data and (task_dir / name).is_file():
                data[field] = _read(task_dir / name)
        data = {"instance_id": f"{folder.name}__{task_dir.name}", **shared, **data}
        data["repo_path"] = str((folder / data["repo_path"]).resolve())
        tasks.append(_instance(data, folder, where))
    return tasks


def _instance(data: Any, base: Path, where: str) -> Task:
    task = parse_task(data, where)
    if task.repo_path and not Path(task.repo_path).is_absolute():
        task = _with(task, repo_path=str((base / task.repo_path).resolve()))
    return task


def _with(task: Task, **changes: Any) -> Task:
    return task.model_copy(update=changes)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TaskError(f"cannot read {path}: {err}") from err


def _decode(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise TaskError(
            f"{where}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from err


def _check_unique(tasks: list[Task]) -> None:
    seen: set[str] = set()
    for task in tasks:
        if task.instance_id in seen:
            raise TaskError(f"instance_id {task.instance_id!r} appears more than once")
        seen.add(task.instance_id)
