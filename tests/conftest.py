"""Shared fixtures: an isolated home for codeagent's state, real git repositories, scripts."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from codeagent.sandbox.confine import probe

SANDBOX_MISSING = probe()

# The attack battery: tests marked ``@pytest.mark.attack(CLASS)`` are attacks that must be
# contained; the run ends with a count per class (passed = contained).
ATTACK_CLASSES = {
    "host-git": "host git runs repository-controlled code",
    "protected-paths": "protected paths changed or renamed away",
    "history": "refs and history outside the task",
    "secrets": "secrets read or carried into outputs",
    "terminal": "terminal escape injection",
    "cleanup": "host-side cleanup following planted links",
    "bounds": "tools and budgets unbounded",
    "confinement": "escaping the sandbox (files, network, processes, privileges)",
}
_attacks: dict[str, dict[str, int]] = {}

BUGGY_REPO = {
    "stats.py": "def mean(values):\n    return sum(values) / (len(values) - 1)\n",
    "test_stats.py": (
        "from stats import mean\n\n\n"
        "def test_mean():\n    assert mean([1, 2, 3]) == 2\n\n\n"
        "def test_single():\n    assert mean([5]) == 5\n"
    ),
    "pytest.ini": "[pytest]\n",
}


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    for name in ("XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()))
    for name in (
        "CODEAGENT_MODEL",
        "GITHUB_REPOSITORY",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GITHUB_API_URL",
        "CODEAGENT_SANDBOX",
    ):
        monkeypatch.delenv(name, raising=False)
    if SANDBOX_MISSING:
        monkeypatch.setenv("CODEAGENT_SANDBOX", "off")  # the sandbox's own tests say why they skip
    return home


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    def make(files: dict[str, str] | None = None, name: str = "repo") -> Path:
        root = tmp_path / name
        root.mkdir()
        for rel, text in (files if files is not None else BUGGY_REPO).items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git(root, "init", "-q", "-b", "main")
        git(root, "config", "user.email", "dev@example.com")
        git(root, "config", "user.name", "Dev")
        git(root, "add", "-A")
        git(root, "commit", "-qm", "initial")
        return root

    return make


def call(name: str, call_id: str | None = None, **arguments: Any) -> dict[str, Any]:
    """One assistant reply that calls one tool."""
    return {
        "content": "",
        "tool_calls": [
            {
                "id": call_id or f"call_{name}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ],
    }


@pytest.fixture
def write_script(tmp_path: Path) -> Callable[[list[dict[str, Any]]], Path]:
    def write(replies: list[dict[str, Any]], name: str = "script.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(reply) + "\n" for reply in replies))
        return path

    return write


FIX_STATS = [
    call(
        "update_plan",
        items=[
            {"step": "find the bug in mean", "status": "in_progress"},
            {"step": "fix and run tests", "status": "pending"},
        ],
    ),
    call("read_file", path="stats.py"),
    call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="len(values)"),
    call("run_tests"),
    call(
        "update_plan",
        items=[
            {"step": "find the bug in mean", "status": "completed"},
            {"step": "fix and run tests", "status": "completed"},
        ],
    ),
    call("finish", summary="mean divided by n-1; it now divides by n."),
]


@pytest.fixture
def fix_script() -> list[dict[str, Any]]:
    return [dict(reply) for reply in FIX_STATS]


@pytest.fixture
def tool_call() -> Callable[..., dict[str, Any]]:
    return call


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "attack(kind): an attack of the battery, by class (see conftest)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("attack")
    if marker is None or not (report.when == "call" or report.skipped):
        return
    kind = marker.args[0]
    if kind not in ATTACK_CLASSES:
        raise ValueError(f"unknown attack class {kind!r}; classes: {', '.join(ATTACK_CLASSES)}")
    params = getattr(item, "callspec", None)
    confinement = params.params.get("confinement", "") if params else ""
    counts = _attacks.setdefault(f"{kind} {confinement}".strip(), {"tried": 0, "contained": 0, "skipped": 0})
    if hasattr(report, "wasxfail"):  # a known limit, asserted as such: tried, not contained
        counts["tried"] += 1
        return
    if report.skipped:
        counts["skipped"] += 1
        return
    counts["tried"] += 1
    counts["contained"] += int(report.passed)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _attacks:
        return
    terminalreporter.section("attack battery")
    for kind, description in ATTACK_CLASSES.items():
        for key in sorted(k for k in _attacks if k.split(" ")[0] == kind):
            counts = _attacks[key]
            skipped = f", {counts['skipped']} skipped" if counts["skipped"] else ""
            terminalreporter.line(
                f"{key:28} {counts['contained']:3}/{counts['tried']:<3} contained{skipped}  ({description})"
            )
