"""A repository whose own git configuration tries to run programs: codeagent's git calls run none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def poison(root: Path, marker_dir: Path) -> None:
    hooks = root / "evil-hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "post-commit", "post-checkout", "pre-push", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marker_dir}/{hook}\n")
        (hooks / hook).chmod(0o755)
    with (root / ".git" / "config").open("a") as config:
        config.write(
            f"[core]\n\tfsmonitor = touch {marker_dir}/fsmonitor\n\thooksPath = {hooks}\n"
            f"\tpager = touch {marker_dir}/pager\n"
            f"[user]\n\temail = $(touch {marker_dir}/email)\n"
            f"[diff]\n\texternal = touch {marker_dir}/diff\n"
        )


def test_fix_and_undo_run_nothing_from_a_hostile_git_config(
    make_repo, write_script, fix_script, tmp_path, monkeypatch
):
    # pytest plugins of this machine (pytest-benchmark) run git themselves while the tests run;
    # that is the project's test suite running git, not codeagent, so keep them out.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    root = make_repo()
    markers = tmp_path / "markers"
    markers.mkdir()
    poison(root, markers)
    subprocess.run(
        ["git", "-C", str(root), "add", "-A"],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)},
    )
    if any(markers.iterdir()):  # plain git would have run the monitor: clear it before our run
        for marker in markers.iterdir():
            marker.unlink()
    subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
            "commit",
            "-qm",
            "hooks",
        ],
        check=True,
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "codeagent.tui.cli",
            "fix",
            "--task",
            "fix mean",
            "--model",
            f"scripted:{write_script(fix_script)}",
            "--json",
            "--no-repo-map",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(proc.stdout)["status"] == "resolved", proc.stderr
    subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", "undo", "--list"],
        cwd=root,
        capture_output=True,
        check=True,
    )
    assert sorted(p.name for p in markers.iterdir()) == []
