"""Authoring: task.json's base commit and test lists are computed from the patches."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from codeagent.evals.authoring import author
from codeagent.evals.loader import BUILTIN
from codeagent.evals.task import TaskError


def copy_project(tmp_path, name="tabular"):
    project = tmp_path / name
    shutil.copytree(BUILTIN / name, project)
    return project


def test_authoring_reproduces_a_task(tmp_path):
    task_dir = copy_project(tmp_path) / "median-even-count"
    original = json.loads((task_dir / "task.json").read_text())
    (task_dir / "task.json").write_text(json.dumps({"bug_kind": original["bug_kind"]}))
    proc = subprocess.run(
        [sys.executable, "-m", "codeagent.evals.authoring", str(task_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "1 fail-to-pass, 15 pass-to-pass" in proc.stdout
    assert json.loads((task_dir / "task.json").read_text()) == original


def test_hidden_tests_must_fail_at_the_base(tmp_path):
    task_dir = copy_project(tmp_path) / "median-even-count"
    tests = (task_dir / "tests.patch").read_text()
    weakened = tests.replace("stats.median([4, 1, 3, 2]) == 2.5", "True").replace(
        "median([10, None, 20]) == 15", "mean([1])"
    )
    (task_dir / "tests.patch").write_text(weakened)
    with pytest.raises(TaskError, match="no hidden test fails at the base"):
        author(task_dir)


def test_the_fix_must_pass_every_test(tmp_path):
    task_dir = copy_project(tmp_path) / "median-even-count"
    tests = (task_dir / "tests.patch").read_text()
    (task_dir / "tests.patch").write_text(tests.replace("== 15", "== 16"))
    with pytest.raises(TaskError, match="tests fail with the fix"):
        author(task_dir)
