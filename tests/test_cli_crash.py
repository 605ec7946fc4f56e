"""A bug inside codeagent (here a real one: the state folder is a file, so the checkpoint store
cannot be made) still ends in one result: the traceback on stderr, ``{"status": "error"}`` on
stdout with ``--json``, exit 3, and the user's repository left on its branch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def crashing_fix(repo: Path, script: Path, state: Path, *flags: str) -> subprocess.CompletedProcess:
    state.write_text("")  # XDG_STATE_HOME is a file: codeagent/checkpoints cannot be made in it
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "codeagent.tui.cli",
            "fix",
            "--task",
            "x",
            "--model",
            f"scripted:{script}",
            *flags,
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "XDG_STATE_HOME": str(state)},
    )


def test_an_internal_failure_prints_a_json_error_and_exits_3(make_repo, write_script, fix_script, tmp_path):
    repo = make_repo()
    proc = crashing_fix(repo, write_script(fix_script), tmp_path / "state", "--json")
    assert proc.returncode == 3, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "error" and result["exit_code"] == 3
    assert result["message"].startswith("internal error (a bug in codeagent; traceback above): ")
    assert "NotADirectoryError" in result["message"]
    assert proc.stderr.startswith("Traceback (most recent call last):")
    assert proc.stderr.rstrip().splitlines()[-1] == f"codeagent: {result['message']}"
    branches = ["git", "-C", str(repo), "branch", "--format=%(refname:short)"]
    assert subprocess.run(branches, capture_output=True, text=True, check=True).stdout.split() == ["main"]


def test_without_json_the_traceback_and_the_line_still_say_it(make_repo, write_script, fix_script, tmp_path):
    proc = crashing_fix(make_repo(), write_script(fix_script), tmp_path / "state")
    assert proc.returncode == 3 and proc.stdout == ""
    assert "codeagent: internal error (a bug in codeagent" in proc.stderr
