"""The terminal UI's tool path under attack: a prompt-injected model in full-auto mode on a
checkout whose git config names programs and holds the job's token.

The same sandbox and host git as ``fix`` serve the TUI; this checks the wiring: commands run
confined, git's own calls (checkpoints, ``/diff``, ``/undo``) run nothing of the repository's,
protected names stay as they were, and the token never reaches the screen.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from codeagent.sandbox.confine import probe

TOKEN = "ghs_tuiattacktoken0123456789"
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.attack("host-git"),
    pytest.mark.skipif(probe() is not None, reason=f"no sandbox here: {probe()}"),
]


def poisoned(root: Path, markers: Path) -> None:
    (root / ".gitattributes").write_text("* filter=evil diff=evil\n")
    with (root / ".git" / "config").open("a") as config:
        config.write(
            f"[core]\n\tfsmonitor = touch {markers}/fsmonitor\n"
            f'[filter "evil"]\n\tclean = "touch {markers}/clean; cat"\n\tsmudge = "touch {markers}/smudge; cat"\n'
            f'[diff "evil"]\n\ttextconv = "touch {markers}/textconv; cat"\n'
            f'[http "https://github.com/"]\n\textraheader = AUTHORIZATION: bearer {TOKEN}\n'
        )
    env = {"PATH": os.environ["PATH"], "HOME": str(root.parent), "GIT_CONFIG_NOSYSTEM": "1"}
    quiet = ["-c", "core.fsmonitor=false", "-c", "filter.evil.clean=cat"]
    for args in (["add", "-A"], ["commit", "-qm", "hostile"]):
        subprocess.run(["git", "-C", str(root), *quiet, *args], check=True, env=env, capture_output=True)


async def test_the_tui_runs_nothing_of_the_repository_and_shows_no_token(
    make_repo, script_file, make_app, drive, tool_call, tmp_path
):
    root = make_repo()
    markers = tmp_path / "markers"
    markers.mkdir()
    poisoned(root, markers)
    for marker in markers.iterdir():
        marker.unlink()
    plan = tool_call("update_plan", items=[{"step": "attack", "status": "in_progress"}])
    replies = [
        plan,
        tool_call(
            "run", command="mv .git .git-old; mkdir -p .github/workflows; echo x > .github/workflows/x.yml"
        ),
        tool_call("run", command="cat .git/config; git log --oneline; git tag evil"),
        tool_call("read_file", path=".git/config"),
        tool_call("write_file", path=".github/workflows/evil.yml", content="on: push\n"),
        tool_call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="len(values)"),
        tool_call("finish", summary="done"),
    ]
    app = make_app(root, script_file(replies), mode="full-auto")
    async with app.run_test(size=(140, 60)) as pilot:
        d = drive(pilot)
        await d.send("go")
        await d.idle()
        await pilot.press("ctrl+o")
        app.submit("/diff")
        await pilot.pause()
        app.submit("/undo")
        await pilot.pause()
        shown = app.export_screenshot() + d.text()
    assert TOKEN not in shown
    assert "inside a .git folder" in shown  # read_file refused
    assert sorted(p.name for p in markers.iterdir()) == []
    assert (root / ".git").is_dir() and not (root / ".git-old").exists() and not (root / ".github").exists()
    tags = subprocess.run(["git", "-C", str(root), "tag"], capture_output=True, text=True, check=True).stdout
    assert tags == ""
