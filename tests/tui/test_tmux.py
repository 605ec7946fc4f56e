"""The real ``codeagent`` command in tmux, as a user meets it: started with a scripted model in
a fresh repository, a task typed in, an edit approved, the screen read with ``capture-pane``.
A private tmux server (its own socket) keeps the test away from the user's sessions."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codeagent.sandbox.confine import probe

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")

PLAN = [{"step": "fix the divisor", "status": "in_progress"}]
ENV_NAMES = ("XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "HOME", "PATH")


class Terminal:
    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        proc = subprocess.run(
            [str(TMUX), "-S", str(self.socket), *args], capture_output=True, text=True, timeout=10, check=True
        )
        return proc.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "ui")

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear; the screen shows:\n{self.screen()}")


@pytest.fixture
def terminal(tmp_path: Path):
    term = Terminal(tmp_path / "tmux.sock")
    yield term
    subprocess.run([str(TMUX), "-S", str(term.socket), "kill-server"], capture_output=True, check=False)


def test_codeagent_in_tmux(terminal, make_repo, write_script, tool_call):
    root = make_repo()
    script = write_script(
        [
            tool_call("update_plan", items=PLAN),
            tool_call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="len(values)"),
            tool_call("finish", summary="mean now divides by the number of values."),
        ]
    )
    env = " ".join(f"{name}={shlex.quote(os.environ[name])}" for name in ENV_NAMES if name in os.environ)
    sandbox = "on" if probe() is None else "off"
    # -u: pytest's environment has COLUMNS=80 and LINES=24, which would override the pane's size
    command = (
        f"env -u COLUMNS -u LINES {env} {shlex.quote(sys.executable)} -m codeagent.tui.cli --model scripted:{script} "
        f"--sandbox {sandbox}; echo codeagent exited $?; sleep 60"
    )
    terminal.tmux("new-session", "-d", "-s", "ui", "-x", "100", "-y", "30", "-c", str(root), command)
    terminal.wait_for("Describe a task")
    terminal.tmux("send-keys", "-t", "ui", "-l", "fix the mean function")
    terminal.tmux("send-keys", "-t", "ui", "Enter")
    asked = terminal.wait_for("Approve? edit stats.py")
    assert "+    return sum(values) / len(values)" in asked
    terminal.tmux("send-keys", "-t", "ui", "y")
    done = terminal.wait_for("mean now divides by the number of values.")
    assert "› fix the mean function" in done
    assert "-    return sum(values) / (len(values) - 1)" in done
    assert "+    return sum(values) / len(values)" in done
    assert "▶ fix the divisor" in done
    assert "│ 0:00 │ cache" in done  # 100 columns: the status bar has room for the cache
    assert (root / "stats.py").read_text() == "def mean(values):\n    return sum(values) / len(values)\n"
    terminal.tmux("send-keys", "-t", "ui", "C-c")
    terminal.tmux("send-keys", "-t", "ui", "C-c")
    left = terminal.wait_for("codeagent exited 0")
    assert "continue it with: codeagent --resume" in left
