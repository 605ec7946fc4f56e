"""One eval task: a SWE-bench instance plus what it takes to run it offline.

SWE-bench's fields, spelled as SWE-bench spells them: ``instance_id``, ``repo``,
``base_commit``, ``problem_statement``, ``patch`` (the gold fix), ``test_patch`` (the hidden
tests), ``FAIL_TO_PASS`` and ``PASS_TO_PASS`` (lists, or JSON strings of lists as in
SWE-bench's published files). Every other field of a SWE-bench file is kept and ignored.

codeagent's extensions, all optional:

- ``repo_path``: where the repository is on disk: a git repository, a git bundle, or a plain
  source tree (relative paths are taken from the file that names them). Without it the
  loader looks under ``--repos DIR``.
- ``source_state``: for a plain tree, ``base`` (the tree is the base commit's) or ``fixed``
  (the tree has the fix: the base is the tree with ``patch`` reversed).
- ``environment_setup``: a shell command run in each fresh copy before anything else (``""``
  when nothing needs installing). SWE-bench files lack it; ``--setup CMD`` gives one to all
  such tasks, and without either a task is skipped, with the reason.
- ``test_command``: how to run the tests, a shell command; ``{test_files}`` becomes the files
  the test patch touches and ``{python}`` the Python running codeagent. The default runs
  pytest on the test files. ``test_runner`` names the parser of its output (``pytest``,
  ``unittest``, ``go``, ``node``, ``cargo``; default ``pytest``).
- ``requires``: toolchains the task needs (see ``toolchains.py``); a missing one skips it.

What the agent may see is only ``problem_statement`` and the repository at ``base_commit``;
the runner keeps ``patch``, ``test_patch`` and the test lists to itself.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_TEST_COMMAND = "{python} -m pytest -rA -q -p no:cacheprovider {test_files}"


class TaskError(Exception):
    """A task file or instance that cannot be used (a user mistake: exit code 2)."""


class Task(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    instance_id: str = Field(min_length=1)
    repo: str = ""
    base_commit: str = Field(min_length=1)
    problem_statement: str = Field(min_length=1)
    patch: str
    test_patch: str
    FAIL_TO_PASS: list[str]
    PASS_TO_PASS: list[str] = Field(default_factory=list)
    environment_setup: str | None = None
    repo_path: str | None = None
    source_state: Literal["base", "fixed"] = "base"
    test_command: str = DEFAULT_TEST_COMMAND
    test_runner: Literal["pytest", "unittest", "go", "node", "cargo", "any"] = "pytest"
    requires: list[str] = Field(default_factory=list)

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        # SWE-bench's published files hold these lists as JSON-encoded strings.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as err:
                raise ValueError(f"not a JSON list: {err.msg}") from err
        return value

    @field_validator("instance_id")
    @classmethod
    def _no_path_separators(cls, value: str) -> str:
        if "/" in value or "\\" in value or value in (".", ".."):
            raise ValueError("must not contain path separators")
        return value


def parse_task(data: Any, where: str) -> Task:
    """A validated ``Task`` from one decoded instance; ``TaskError`` naming ``where`` otherwise."""
    if not isinstance(data, dict):
        raise TaskError(f"{where}: an instance must be a JSON object, not {type(data).__name__}")
    try:
        return Task.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'instance'}: {e['msg']}" for e in err.errors()
        )
        raise TaskError(f"{where}: {problems}") from err


def touched_test_files(task: Task) -> list[str]:
    """Files the test patch touches (their new names), in patch order."""
    files: list[str] = []
    for line in task.test_patch.splitlines():
        if line.startswith("diff --git "):
            name = line.rsplit(" b/", 1)[-1]
            if name not in files:
                files.append(name)
    return files
