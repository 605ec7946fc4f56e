"""``--json`` gets a result object on every exit, usage and configuration errors included, with
the same exit code and the same one line on stderr: the real command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def codeagent(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "CODEAGENT_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "CODEAGENT_BASE_URL": "", "OPENAI_BASE_URL": ""},
    )


def assert_error_object(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "error" and result["exit_code"] == 2
    assert needle in result["message"]
    (line,) = proc.stderr.strip().splitlines()
    assert line == f"codeagent: error: {result['message']}"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["fix", "--json", "--bogus"], "unrecognized arguments: --bogus"),
        (["fix", "--json", "--task", "x", "--max-steps", "many"], "--max-steps"),
        (["fix", "--json", "--task", "x", "--issue", "3"], "not allowed with argument"),
        (["--json"], "unrecognized arguments: --json"),
    ],
)
def test_usage_errors(argv, needle, make_repo):
    assert_error_object(codeagent(*argv, cwd=make_repo()), needle)


def test_configuration_errors(make_repo, tmp_path, write_script, fix_script):
    repo = make_repo()
    config = tmp_path / "config.toml"
    config.write_text("[limits]\nmax_steps = -1\n")
    assert_error_object(
        codeagent("--config", str(config), "fix", "--task", "x", "--json", cwd=repo), "max_steps"
    )
    script = f"scripted:{write_script(fix_script)}"
    missing = str(tmp_path / "gone")
    assert_error_object(
        codeagent("fix", "--task", "x", "--model", script, "-C", missing, "--json", cwd=repo), "gone"
    )
    assert_error_object(codeagent("fix", "--json", "--model", script, cwd=repo), "say what to fix")
    assert_error_object(codeagent("fix", "--json", "--resume", "nope", cwd=repo), "no run 'nope'")


def test_a_model_that_cannot_be_reached(make_repo):
    proc = codeagent("fix", "--task", "x", "--model", "remote:NAME", "--json", cwd=make_repo())
    assert_error_object(proc, "no API key")


def test_without_json_stdout_stays_empty(make_repo):
    proc = codeagent("fix", "--bogus", cwd=make_repo())
    assert proc.returncode == 2 and proc.stdout == ""
