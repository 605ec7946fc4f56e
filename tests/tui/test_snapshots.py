"""The main screens pinned as SVG snapshots at 80x24 and 120x40 (``pytest-textual-snapshot``;
refresh with ``pytest tests/tui --snapshot-update`` after a deliberate change, and look at
the report it writes). The clock is frozen, token counts ignore the temporary path, and the
sandbox is on whether or not bubblewrap works here (these scripts run no command), so a
screen is the same on every run and machine."""

from __future__ import annotations

import pytest

pytest.importorskip("pytest_textual_snapshot", reason="the test extra brings pytest-textual-snapshot")

from codeagent.tui.app.panels import ApprovalPanel
from codeagent.tui.app.prompt import PromptInput

SIZES = [(80, 24), (120, 40)]


def replies(tool_call) -> list[dict]:
    plan = tool_call(
        "update_plan",
        items=[
            {"step": "find the bug in mean", "status": "in_progress"},
            {"step": "fix the divisor", "status": "pending"},
        ],
    )
    plan["reasoning_content"] = (
        "mean divides by n - 1.\nThat is the sample variance's divisor, not the mean's."
    )
    edit = tool_call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="len(values)")
    edit["content"] = (
        "The divisor is `n - 1`:\n\n```python\nreturn sum(values) / (len(values) - 1)\n```\n\n"
        "It should be `len(values)`."
    )
    done = tool_call(
        "update_plan",
        items=[
            {"step": "find the bug in mean", "status": "completed"},
            {"step": "fix the divisor", "status": "completed"},
        ],
    )
    finish = tool_call("finish", summary="`mean` divided by n-1; it now divides by **n**.")
    return [plan, tool_call("read_file", path="stats.py"), edit, done, finish]


def run_task(until: str):
    async def run_before(pilot) -> None:
        app = pilot.app
        app.query_one(PromptInput).cursor_blink = False
        app.query_one(PromptInput).insert("fix the mean function")
        await pilot.press("enter")
        for _ in range(500):
            await pilot.pause(0.02)
            waiting = not app.query_one(ApprovalPanel).has_class("-idle")
            if (until == "approval" and waiting) or (until == "done" and not app.busy):
                break
        await pilot.pause(0.1)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_finished_task(size, snap_compare, make_repo, script_file, make_app, tool_call):
    app = make_app(make_repo(), script_file(replies(tool_call)), mode="full-auto", sandbox=True)
    assert snap_compare(app, terminal_size=size, run_before=run_task("done"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_approval(size, snap_compare, make_repo, script_file, make_app, tool_call):
    app = make_app(make_repo(), script_file(replies(tool_call)), mode="ask", sandbox=True)
    assert snap_compare(app, terminal_size=size, run_before=run_task("approval"))
