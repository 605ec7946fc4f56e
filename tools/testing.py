"""``run_tests(paths?)``: detect the project's test command, run it, report test names.

Detection, first match wins: the configured ``test_command``; pytest (pytest config in
``pyproject.toml``/``pytest.ini``/``setup.cfg``/``tox.ini``, a ``conftest.py``, or Python test
files); ``npm test`` / ``pnpm test`` (a ``test`` script in ``package.json``); ``go test``
(``go.mod``); ``cargo test`` (``Cargo.toml``). Python runs with the repository's virtual
environment when it has one (``.venv``, ``venv``), else ``python3`` from ``PATH``. When
pytest is not installed there, unittest discovery runs instead. The command goes through
the same process layer as ``run`` (timeout, output cap, scrubbed environment).
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from codeagent.tools.base import Observation, ToolEnv, ToolError, schema
from codeagent.tools.ignore import iter_files
from codeagent.tools.shell import describe, run_in_repo
from codeagent.tools.test_results import PARSERS, TestReport, parse_any

NPM_PLACEHOLDER = "no test specified"
MAX_NAMES_SHOWN = 30


@dataclass(slots=True)
class TestCommand:
    runner: str  # a key of PARSERS, or "custom"
    argv: list[str] | str  # a str runs through bash


def python_for(root: Path) -> str:
    for venv in (".venv", "venv"):
        candidate = root / venv / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    return shutil.which("python3") or shutil.which("python") or sys.executable


def _has_pytest_config(root: Path) -> bool:
    checks = {"pyproject.toml": "[tool.pytest", "setup.cfg": "[tool:pytest]", "tox.ini": "[pytest]"}
    if (root / "pytest.ini").exists() or (root / "conftest.py").exists():
        return True
    return any(
        (root / name).exists() and marker in (root / name).read_text(errors="replace")
        for name, marker in checks.items()
    )


def _has_python_tests(root: Path) -> bool:
    return any(
        name.endswith(".py") and (name.rsplit("/", 1)[-1].startswith("test_") or name.endswith("_test.py"))
        for name in iter_files(root)
    )


def _npm_command(root: Path) -> TestCommand | None:
    try:
        scripts = json.loads((root / "package.json").read_text()).get("scripts") or {}
    except (OSError, json.JSONDecodeError):
        return None
    test = scripts.get("test")
    if not isinstance(test, str) or NPM_PLACEHOLDER in test:
        return None
    tool = "pnpm" if (root / "pnpm-lock.yaml").exists() and shutil.which("pnpm") else "npm"
    return TestCommand("node", [tool, "test", "--"])


def detect(root: Path, configured: str | None) -> TestCommand | None:
    if configured:
        return TestCommand("custom", configured)
    if _has_pytest_config(root) or ((root / "pyproject.toml").exists() and _has_python_tests(root)):
        return _pytest(root)
    if (root / "package.json").exists() and (command := _npm_command(root)):
        return command
    if (root / "go.mod").exists():
        return TestCommand("go", ["go", "test", "-v"])
    if (root / "Cargo.toml").exists():
        return TestCommand("cargo", ["cargo", "test"])
    if _has_python_tests(root):
        return _pytest(root)
    return None


def _pytest(root: Path) -> TestCommand:
    return TestCommand(
        "pytest", [python_for(root), "-m", "pytest", "-rA", "-q", "--color=no", "-p", "no:cacheprovider"]
    )


def with_paths(command: TestCommand, paths: list[str]) -> TestCommand:
    if command.runner == "go":
        targets = [f"./{p}/..." if not p.endswith(".go") else f"./{p.rsplit('/', 1)[0]}" for p in paths]
        return TestCommand("go", [*command.argv, *(targets or ["./..."])])
    if not paths:
        return command
    if isinstance(command.argv, str):
        return TestCommand(command.runner, command.argv + " " + " ".join(map(shlex.quote, paths)))
    return TestCommand(command.runner, [*command.argv, *paths])


class RunTests:
    name: ClassVar[str] = "run_tests"
    description: ClassVar[str] = (
        "Run the project's tests (command detected: pytest, unittest, npm/pnpm, go, cargo, or configured) "
        "and report passed, failed and errored tests. Pass paths to run only some tests."
    )
    parameters: ClassVar[dict[str, Any]] = schema(
        {"paths": {"type": "array", "items": {"type": "string"}, "description": "test files or folders"}}, []
    )
    mutates: ClassVar[bool] = True

    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        paths = args.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ToolError("paths must be a list of strings")
        rel_paths = [env.rel(env.resolve(p, must_exist=True)) for p in paths]
        command = detect(env.root, env.settings.test_command)
        if command is None:
            raise ToolError(
                "no test command detected (no pytest, package.json test script, go.mod or Cargo.toml); "
                "set tools.test_command in the config or pass --test-command"
            )
        command = with_paths(command, rel_paths)
        result = run_in_repo(env, command.argv, env.settings.command_timeout)
        if command.runner == "pytest" and "No module named pytest" in result.output:
            command = TestCommand("unittest", [command.argv[0], "-m", "unittest", "discover", "-v"])
            result = run_in_repo(env, command.argv, env.settings.command_timeout)
        report = (
            PARSERS[command.runner](result.output) if command.runner in PARSERS else parse_any(result.output)
        )
        return _observation(command, result, report)


def _observation(command: TestCommand, result: Any, report: TestReport) -> Observation:
    shown = command.argv if isinstance(command.argv, str) else shlex.join(command.argv)
    summary = f"{len(report.passed)} passed, {len(report.failed)} failed, {len(report.errors)} errors ({shown}; {describe(result)})"
    lines = [summary]
    for label, names in (("failed", report.failed), ("errors", report.errors)):
        if names:
            lines.append(
                f"{label}: "
                + ", ".join(names[:MAX_NAMES_SHOWN])
                + (" ..." if len(names) > MAX_NAMES_SHOWN else "")
            )
    if result.exit_code != 0 or not report:
        lines.append("output:\n" + result.output.rstrip())
    data = {
        "command": shown,
        "runner": command.runner,
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "passed": report.passed,
        "failed": report.failed,
        "errors": report.errors,
    }
    return Observation("\n".join(lines), ok=result.exit_code == 0, data=data)
