"""How the screen adapts: resizing between wide and narrow layouts, and NO_COLOR."""

from __future__ import annotations

import re

import pytest

from codeagent.tui.app.entries import TranscriptView
from codeagent.tui.app.panels import PlanPanel, StatusBar

pytestmark = pytest.mark.anyio


def script(tool_call) -> list[dict]:
    plan = tool_call("update_plan", items=[{"step": "fix the divisor", "status": "in_progress"}])
    edit = tool_call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="len(values)")
    return [plan, edit, tool_call("finish", summary="fixed")]


async def test_resizes_between_wide_and_narrow(make_repo, script_file, make_app, drive, tool_call):
    app = make_app(make_repo(), script_file(script(tool_call)))
    async with app.run_test(size=(120, 40)) as pilot:
        d = drive(pilot)
        await d.send("fix mean")
        await d.idle()
        plan, transcript = app.query_one(PlanPanel).region, app.query_one(TranscriptView).region
        assert app.screen.has_class("-wide") and plan.x >= transcript.right  # beside
        for width, height in ((80, 24), (100, 30), (80, 24)):
            await pilot.resize_terminal(width, height)
            await pilot.pause()
        plan, transcript = app.query_one(PlanPanel).region, app.query_one(TranscriptView).region
        assert app.screen.has_class("-narrow") and plan.y >= transcript.bottom and plan.width > 70  # below
        status = app.query_one(StatusBar)
        assert status.content.cell_len <= status.content_region.width == 78


SVG_FOREGROUND = "#c5c8c6"  # the export's default text colour, not one the app chose


def colours(svg: str) -> set[str]:
    return set(re.findall(r"fill: (#[0-9a-f]{6})", svg)) - {SVG_FOREGROUND}


def grey(colour: str) -> bool:
    return colour[1:3] == colour[3:5] == colour[5:7]


@pytest.mark.parametrize("no_color", [False, True])
async def test_no_color_leaves_only_greys(
    no_color, monkeypatch, make_repo, script_file, make_app, drive, tool_call
):
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    app = make_app(make_repo(), script_file(script(tool_call)))
    async with app.run_test(size=(80, 24)) as pilot:
        d = drive(pilot)
        await d.send("fix mean")
        await d.idle()
        shown = colours(app.export_screenshot())
    assert all(grey(c) for c in shown) == no_color
