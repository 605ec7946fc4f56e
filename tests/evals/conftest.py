"""Helpers for the eval tests: the real `codeagent eval` in a subprocess, run folders, a
SWE-bench-style repository with history, and the backend tests' tiny random model."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from codeagent.evals.loader import BUILTIN, load_tasks

BACKEND_CONFTEST = Path(__file__).resolve().parents[1] / "backend" / "conftest.py"


class Runs:
    """The command and what a run leaves in its output folder."""

    @staticmethod
    def codeagent(
        *args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "codeagent.tui.cli", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )

    @staticmethod
    def reports(output: Path) -> dict[str, dict[str, Any]]:
        found = (json.loads(p.read_text()) for p in (output / "tasks").glob("*.json"))
        return {report["instance_id"]: report for report in found}

    @staticmethod
    def summary(output: Path) -> dict[str, Any]:
        return json.loads((output / "summary.json").read_text())

    @staticmethod
    def git(root: Path, *args: str) -> str:
        return git(root, *args)


@pytest.fixture
def runs() -> type[Runs]:
    return Runs


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def builtin_tasks():
    return load_tasks(BUILTIN)


CALC_BUGGY = (
    "def add(a, b):\n    return a + b\n\n\ndef mean(values):\n    return sum(values) / (len(values) - 1)\n"
)
CALC_FIXED = CALC_BUGGY.replace("(len(values) - 1)", "len(values)")
VISIBLE_TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
HIDDEN_TEST = (
    VISIBLE_TEST + "\n\ndef test_mean():\n    from calc import mean\n\n    assert mean([1, 2, 3]) == 2\n"
)


@pytest.fixture
def swebench_repo(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """A repository with a base commit and a later fix commit, and the SWE-bench instance of it."""

    def make(name: str = "calc") -> dict[str, Any]:
        root = tmp_path / "repos" / name
        (root / "tests").mkdir(parents=True)
        git(root.parent, "init", "-q", "-b", "main", name)
        git(root, "config", "user.email", "dev@example.com")
        git(root, "config", "user.name", "Dev")
        (root / "calc.py").write_text(CALC_BUGGY)
        (root / "tests" / "test_calc.py").write_text(VISIBLE_TEST)
        git(root, "add", "-A")
        git(root, "commit", "-qm", "calc with add and mean")
        base = git(root, "rev-parse", "HEAD")
        (root / "calc.py").write_text(CALC_FIXED)
        gold = git(root, "diff") + "\n"
        git(root, "commit", "-qam", "Fix mean: divide by n")
        (root / "tests" / "test_calc.py").write_text(HIDDEN_TEST)
        test_patch = git(root, "diff") + "\n"
        git(root, "commit", "-qam", "Test mean")
        return {
            "instance_id": f"local__{name}-1",
            "repo": f"local/{name}",
            "base_commit": base,
            "problem_statement": "mean() is wrong\n\nmean([1, 2, 3]) returns 3 instead of 2.",
            "patch": gold,
            "test_patch": test_patch,
            "FAIL_TO_PASS": json.dumps(["tests/test_calc.py::test_mean"]),
            "PASS_TO_PASS": json.dumps(["tests/test_calc.py::test_add"]),
            "version": "1.0",
            "created_at": "2024-01-01T00:00:00Z",
            "hints_text": "",
            "environment_setup_commit": base,
        }

    return make


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The backend tests' tiny random Qwen3-MoE with a trained byte-level tokenizer
    (their ``tiny_chat_model``, built with the same helpers)."""
    spec = importlib.util.spec_from_file_location("backend_test_fixtures", BACKEND_CONFTEST)
    assert spec and spec.loader
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    folder = tmp_path_factory.mktemp("tiny-model")
    fixtures.qwen3_moe_reference(max_position_embeddings=32768).save_pretrained(folder)
    fixtures.write_tokenizer(folder)
    return folder
