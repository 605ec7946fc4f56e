"""``codeagent`` with no command, as the shell runs it: every mistake found before the screen
opens is one ``codeagent: error:`` line and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from codeagent.agent.transcript import TRANSCRIPT


def codeagent(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if "warning: the sandbox is off" not in line]
    assert len(lines) == 1 and lines[0].startswith("codeagent: error: "), proc.stderr
    return lines[0]


def test_mistakes_are_one_line_before_the_screen_opens(tmp_path, make_repo, write_script, isolated_home):
    root = make_repo()
    script = write_script([])
    assert "is not inside a git repository" in error(codeagent(f"--model=scripted:{script}", cwd=tmp_path))
    assert "script /nowhere.jsonl does not exist" in error(
        codeagent("--model", "scripted:/nowhere.jsonl", cwd=root)
    )
    assert "no saved sessions for" in error(codeagent("--resume", cwd=root))
    assert "needs a terminal" in error(codeagent("--model", f"scripted:{script}", cwd=root))
    run = isolated_home / "xdg_state_home" / "codeagent" / "runs" / "20260101-000000-abcdef"
    run.mkdir(parents=True)
    meta = {"type": "meta", "kind": "interactive", "root": str(root), "model": f"scripted:{script}"}
    (run / TRANSCRIPT).write_text(json.dumps(meta) + "\n")
    assert "recent ones: 20260101-000000-abcdef" in error(codeagent("--resume", "nope", cwd=root))
    fix = error(codeagent("fix", "--resume", "20260101-000000-abcdef", "--sandbox", "off", cwd=root))
    assert "is a terminal UI session; continue it with: codeagent --resume 20260101-000000-abcdef" in fix
