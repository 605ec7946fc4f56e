"""``run_tests(paths?)``: detect the project's test command, run it, report test names.

Detection, first match wins:

1. ``settings.test_command`` (a shell command; paths are appended, quoted);
2. pytest, when it is configured: ``[tool.pytest...]`` in ``pyproject.toml``, ``pytest.ini``,
   ``[tool:pytest]`` in ``setup.cfg``, ``[pytest]`` in ``tox.ini``, or a ``conftest.py``;
3. Python tests next to a ``pyproject.toml`` (``test*.py``, ``*_test.py``, files under ``tests/``);
4. ``npm test`` / ``pnpm test`` (a real ``test`` script in ``package.json``; pnpm when
   ``pnpm-lock.yaml`` is there and pnpm is installed);
5. ``go test -v ./...`` (``go.mod``); 6. ``cargo test --no-fail-fast`` (``Cargo.toml``);
7. Python tests without any of the above.

Python tests run as ``python -m pytest -rA -q`` when pytest is configured or importable by
the repository's Python, else as ``python -m unittest -v``. The repository's Python is its
virtual environment's (``.venv``, ``venv``) when it has one, else ``python3``/``python`` from
``PATH`` (an activated virtual environment comes first there); ``test_command`` overrides
all of it. The command runs through the same process layer as ``run`` (timeout from
``settings.command_timeout`` or the run's remaining time budget if sooner, scrubbed
environment). Output is captured with a larger cap
than ``run``'s so the names survive a long run; the model sees a summary, the failing names
and the failure part of the output clipped to ``settings.max_output_chars``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from codeagent.sandbox.process import CommandResult, clip_middle
from codeagent.tools.base import Observation, ToolEnv, ToolError
from codeagent.tools.ignore import iter_files
from codeagent.tools.shell import describe, run_in_repo
from codeagent.tools.spec import Specified
from codeagent.tools.test_results import PARSERS, TestReport, failure_text, parse_any

NPM_PLACEHOLDER = "no test specified"
MAX_NAMES_SHOWN = 30
PARSE_BUDGET = 2_000_000  # characters kept for parsing: -rA lists every passing test
PROBE_TIMEOUT_S = 30.0
HAS_PYTEST = "import importlib.util, sys; sys.exit(importlib.util.find_spec('pytest') is None)"


@dataclass(slots=True)
class TestCommand:
    runner: str  # a key of PARSERS, or "custom"
    argv: list[str] | str  # a str runs through bash

    def shown(self) -> str:
        return self.argv if isinstance(self.argv, str) else shlex.join(self.argv)


def python_for(root: Path) -> str:
    for venv in (".venv", "venv"):
        candidate = root / venv / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    return shutil.which("python3") or shutil.which("python") or sys.executable


def _has_pytest_config(root: Path) -> bool:
    if (root / "pytest.ini").is_file() or (root / "conftest.py").is_file():
        return True
    markers = {"pyproject.toml": "[tool.pytest", "setup.cfg": "[tool:pytest]", "tox.ini": "[pytest]"}
    return any(
        (root / name).is_file() and marker in (root / name).read_text(errors="replace")
        for name, marker in markers.items()
    )


def _is_python_test(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    if not name.endswith(".py"):
        return False
    return name.startswith("test") or name.endswith("_test.py") or rel.startswith("tests/")


def _is_unittest_file(rel: str) -> bool:
    name = PurePosixPath(rel).name
    return name.startswith("test") and name.endswith(".py")  # unittest's default pattern


def _has_python_tests(root: Path) -> bool:
    return any(_is_python_test(rel) for rel in iter_files(root))


def _npm_command(root: Path) -> TestCommand | None:
    try:
        scripts = json.loads((root / "package.json").read_text()).get("scripts") or {}
    except (OSError, ValueError, AttributeError):
        return None  # unreadable, not JSON, or not an object: no usable test script
    test = scripts.get("test") if isinstance(scripts, dict) else None
    if not isinstance(test, str) or NPM_PLACEHOLDER in test:
        return None
    tool = "pnpm" if (root / "pnpm-lock.yaml").exists() and shutil.which("pnpm") else "npm"
    return TestCommand("node", [tool, "test"])


def _python_command(env: ToolEnv, configured: bool) -> TestCommand:
    python = python_for(env.root)
    if configured or _pytest_importable(env, python):
        return TestCommand(
            "pytest", [python, "-m", "pytest", "-rA", "-q", "--color=no", "-p", "no:cacheprovider"]
        )
    return TestCommand("unittest", [python, "-m", "unittest", "-v"])


def _pytest_importable(env: ToolEnv, python: str) -> bool:
    # Asked of the repository's Python, through the sandbox: its site-packages may run code.
    return run_in_repo(env, [python, "-c", HAS_PYTEST], PROBE_TIMEOUT_S).exit_code == 0


def detect(env: ToolEnv) -> TestCommand | None:
    root = env.root
    if env.settings.test_command:
        return TestCommand("custom", env.settings.test_command)
    if _has_pytest_config(root):
        return _python_command(env, configured=True)
    if (root / "pyproject.toml").is_file() and _has_python_tests(root):
        return _python_command(env, configured=False)
    if (root / "package.json").is_file() and (command := _npm_command(root)):
        return command
    if (root / "go.mod").is_file():
        return TestCommand("go", ["go", "test", "-v"])
    if (root / "Cargo.toml").is_file():
        return TestCommand("cargo", ["cargo", "test", "--no-fail-fast"])
    if _has_python_tests(root):
        return _python_command(env, configured=False)
    return None


def _unittest_default(root: Path, argv: list[str]) -> list[str]:
    # Discovery from the root skips folders that are not packages (Python 3.11+), so a
    # plain tests/ folder is discovered from inside.
    tests = root / "tests"
    if tests.is_dir() and not (tests / "__init__.py").exists():
        return [*argv[:3], "discover", "-v", "-s", "tests"]
    return argv


def with_paths(command: TestCommand, paths: list[str], root: Path) -> TestCommand:
    """``command`` narrowed to ``paths`` (repository-relative, pytest ``::`` ids allowed)."""
    if isinstance(command.argv, str):
        return TestCommand(command.runner, " ".join([command.argv, *map(shlex.quote, paths)]))
    if command.runner == "go":
        return TestCommand("go", [*command.argv, *([_go_target(root, p) for p in paths] or ["./..."])])
    if command.runner == "unittest":
        if not paths:
            return TestCommand("unittest", _unittest_default(root, command.argv))
        return TestCommand("unittest", [*command.argv, *_unittest_targets(root, paths)])
    if command.runner == "cargo":
        return TestCommand("cargo", [*command.argv, *_cargo_targets(paths)])
    if command.argv[0] == "npm" and paths:
        return TestCommand("node", [*command.argv, "--", *paths])  # npm passes on only what follows --
    return TestCommand(command.runner, [*command.argv, *paths])


def _go_target(root: Path, path: str) -> str:
    if (root / path).is_file():
        return "./" + str(PurePosixPath(path).parent)  # go tests a file's whole package
    return "./..." if path == "." else f"./{path}/..."


def _unittest_targets(root: Path, paths: list[str]) -> list[str]:
    targets: list[str] = []
    for path in paths:
        file_part, _, test_id = path.partition("::")
        if (root / file_part).is_dir():
            found = [f for f in iter_files(root, root / file_part) if _is_unittest_file(f)]
            if not found:
                raise ToolError(f"no Python test files under {file_part}")
            targets += found
        elif test_id:  # tests/test_x.py::Class::test -> tests.test_x.Class.test
            targets.append(".".join([file_part.removesuffix(".py").replace("/", "."), *test_id.split("::")]))
        else:
            targets.append(file_part)
    return targets


def _cargo_targets(paths: list[str]) -> list[str]:
    # cargo selects integration tests by target name, not by file.
    targets: list[str] = []
    for path in paths:
        if not (path.startswith("tests/") and path.endswith(".rs") and path.count("/") == 1):
            raise ToolError(f"cargo runs tests by target: pass files like tests/NAME.rs, not {path}")
        targets += ["--test", path[len("tests/") : -len(".rs")]]
    return targets


def _confined_paths(args: dict[str, Any], env: ToolEnv) -> list[str]:
    paths = args.get("paths") or []
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ToolError("paths must be a list of strings")
    confined = []
    for path in paths:
        file_part, sep, test_id = path.partition("::")  # pytest node ids: file.py::Class::test
        confined.append(env.rel(env.resolve(file_part, must_exist=True)) + sep + test_id)
    return confined


class RunTests(Specified, spec="run_tests"):
    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        paths = _confined_paths(args, env)
        command = detect(env)
        if command is None:
            raise ToolError(
                "no test command detected (looked for pytest or unittest files, a package.json test "
                "script, go.mod, Cargo.toml); set test_command under [tools] in config.toml "
                '(e.g. test_command = "make test") or pass --test-command'
            )
        command = with_paths(command, paths, env.root)
        timeout = env.settings.command_timeout
        budget = max(PARSE_BUDGET, env.settings.max_output_chars)
        result = run_in_repo(env, command.argv, timeout, max_output_chars=budget)
        parse = PARSERS.get(command.runner, parse_any)
        return _observation(command, result, parse(result.output), env, timeout)


def _observation(
    command: TestCommand, result: CommandResult, report: TestReport, env: ToolEnv, timeout: float
) -> Observation:
    counts = f"{len(report.passed)} passed, {len(report.failed)} failed, {len(report.errors)} errors"
    lines = [f"{counts} ({command.shown()}; {describe(result, timeout, env)})"]
    for label, names in (("failed", report.failed), ("errors", report.errors)):
        if names:
            more = f" ... and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else ""
            lines.append(f"{label}: {', '.join(names[:MAX_NAMES_SHOWN])}{more}")
    if result.exit_code != 0 or not report:
        shown = failure_text(command.runner, result.output).strip("\n")
        lines.append("output:\n" + clip_middle(shown, env.settings.max_output_chars))
    data = {
        "command": command.shown(),
        "runner": command.runner,
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "passed": report.passed,
        "failed": report.failed,
        "errors": report.errors,
    }
    return Observation("\n".join(lines), ok=result.exit_code == 0, data=data)
