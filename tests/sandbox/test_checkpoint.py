"""Exact undo through the shadow repository, after edits and after shell commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from codeagent.sandbox.checkpoint import Checkpoints


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def make(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("a = 1\n")
    (root / "keep.txt").write_text("keep\n")
    (root / "gone.txt").write_text("will be deleted\n")
    (root / ".gitignore").write_text(".env\n")
    (root / ".env").write_text("TOKEN=1\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"],
        check=True,
    )
    return root


def test_undo_after_shell_commands_is_exact(tmp_path):
    root = make(tmp_path)
    before = tree(root)
    checkpoints = Checkpoints(root, tmp_path / "store.git")
    checkpoints.snapshot("before run")
    script = (
        "echo changed > pkg/a.py; rm gone.txt; mkdir -p new/deep && echo hi > new/deep/b.py; "
        "mv keep.txt kept.txt; echo TOKEN=2 > .env"
    )
    subprocess.run(["bash", "-c", script], cwd=root, check=True)
    undone = checkpoints.undo()
    assert undone is not None and undone.label == "before run"
    after = tree(root)
    assert {k: v for k, v in after.items() if k != ".env"} == {k: v for k, v in before.items() if k != ".env"}
    assert after[".env"] == "TOKEN=2\n"  # ignored files are neither captured nor restored
    assert not (root / "new").exists()
    status = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True
    ).stdout
    assert status == ""  # the user's repository sees the original state, and its history is untouched
    assert checkpoints.undo() is None


def test_undo_steps_back_one_change_at_a_time(tmp_path):
    root = make(tmp_path)
    checkpoints = Checkpoints(root, tmp_path / "store.git")
    checkpoints.snapshot("step 1")
    (root / "pkg" / "a.py").write_text("a = 2\n")
    checkpoints.snapshot("step 2")
    (root / "pkg" / "a.py").write_text("a = 3\n")
    assert checkpoints.undo().label == "step 2" and (root / "pkg" / "a.py").read_text() == "a = 2\n"
    assert checkpoints.undo().label == "step 1" and (root / "pkg" / "a.py").read_text() == "a = 1\n"


def test_the_agent_checkpoints_before_changes_and_codeagent_undo_restores(
    tmp_path, make_repo, write_script, tool_call, isolated_home
):
    root = make_repo()
    plan = tool_call("update_plan", items=[{"step": "break things", "status": "in_progress"}])
    script = write_script(
        [
            plan,
            tool_call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="len(values)"),
            tool_call("run", command="echo junk > junk.txt && rm test_stats.py"),
            tool_call("finish", summary="done"),
        ]
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "codeagent.tui.cli",
            "fix",
            "--task",
            "x",
            "--model",
            f"scripted:{script}",
            "--json",
            "--no-repo-map",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(proc.stdout)["status"] == "unresolved", proc.stderr  # the tests are gone: unresolved
    subprocess.run(["git", "-C", str(root), "reset", "-q", "--soft", "HEAD~1"], check=True)  # keep files
    undo = subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", "undo"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert undo.returncode == 0, undo.stderr
    assert (root / "test_stats.py").exists() and not (root / "junk.txt").exists()
    assert "len(values)" in (root / "stats.py").read_text()  # only the shell command was undone
    listing = subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", "undo", "--list"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "before run" in listing and "before edit_file" in listing
