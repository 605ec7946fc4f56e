"""View folders left by killed processes are removed by the next one, and nothing else is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from codeagent.sandbox.gitview import PREFIX, sweep


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_process_leaves_a_view_folder_the_next_one_removes(tmp_path):
    code = (
        "import os, sys; from pathlib import Path; from codeagent.sandbox.gitview import view; "
        "p = view(Path(sys.argv[1])); print(p.parent, flush=True); os.kill(os.getpid(), 9)"
    )
    config = tmp_path / "config"
    config.write_text('[remote "origin"]\n\turl = https://x:ghs_secret@github.com/o/r\n')
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, env=env)
    assert proc.returncode == -signal.SIGKILL
    left = Path(proc.stdout.strip())
    assert left.is_dir() and left.name.startswith(PREFIX)
    assert "ghs_secret" not in "".join(p.read_text() for p in left.iterdir())  # clutter, not a leak
    assert sweep(tmp_path) == [left] and not left.exists()


def test_only_gone_processes_folders_of_this_user_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    gone = tmp_path / f"{PREFIX}{dead}-abc"
    mine = tmp_path / f"{PREFIX}{alive}-def"
    other = tmp_path / "codeagent-other-1"
    for folder in (gone, mine, other):
        folder.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_text("x")
    (tmp_path / f"{PREFIX}{dead}-link").symlink_to(target)  # a planted link: never followed
    assert sweep(tmp_path) == [gone]
    assert mine.is_dir() and other.is_dir() and (target / "keep").exists()
