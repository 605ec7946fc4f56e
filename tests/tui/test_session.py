"""The session behind the screen: a model loading inside the app, picking another model,
/compact and /clear. (The session driven with no screen at all is in
tests/agent/test_interactive.py.)"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from codeagent.agent.loop import Limits
from codeagent.agent.protocol import ModelError
from codeagent.agent.run import RunConfig
from codeagent.tools.base import ToolSettings
from codeagent.tui.app.application import CodeAgentApp
from codeagent.tui.app.entries import FinalEntry, UserEntry
from codeagent.tui.app.history import History
from codeagent.tui.app.panels import ActivityLine
from codeagent.tui.app.setup import Setup

pytestmark = pytest.mark.anyio


def app_for(setup: Setup, tmp_path: Path) -> CodeAgentApp:
    return CodeAgentApp(setup, clock=lambda: 1000.0, history=History(tmp_path / "history.jsonl"))


async def test_a_slow_model_loads_in_the_app_and_a_message_waits_for_it(
    make_repo, script_file, scripted, drive, tool_call, tmp_path
):
    script = script_file([tool_call("finish", summary="loaded and answered")])
    release = threading.Event()

    def build(spec: str, consumed: int):
        release.wait(10)
        return scripted(script, consumed)

    setup = Setup(
        make_repo(), "big-model", build, RunConfig(ToolSettings(), Limits(), "auto-edit", sandbox=False)
    )
    app = app_for(setup, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        await d.settle(lambda: "loading big-model" in d.text("#activity"))
        await d.send("hello")
        assert "queued until the model is ready" in d.text()
        release.set()
        await d.settle(lambda: bool(app.query(FinalEntry)))
        await d.idle()
        assert "model ready: scripted:script.jsonl" in d.text()
        assert [str(e.content) for e in app.query(UserEntry)] == ["› hello"]
        assert app.query_one(ActivityLine).has_class("-idle")


async def test_a_model_that_cannot_load_says_so_and_another_can_be_picked(
    make_repo, script_file, scripted, drive, tool_call, tmp_path
):
    script = script_file([tool_call("finish", summary="the second model answered")])

    def build(spec: str, consumed: int):
        if not spec.startswith("scripted:"):
            raise ModelError(f"no checkpoint named {spec}")
        return scripted(Path(spec.partition(":")[2]), consumed)

    setup = Setup(
        make_repo(), "missing", build, RunConfig(ToolSettings(), Limits(), "auto-edit", sandbox=False)
    )
    app = app_for(setup, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        await d.idle()
        assert "model: no checkpoint named missing; /model SPEC picks another" in d.text()
        await d.send(f"/model scripted:{script}")
        await d.idle()
        await d.send("hello")
        await d.idle()
        assert app.query_one(FinalEntry).source == "the second model answered"


async def test_compact_and_clear(make_repo, script_file, make_app, drive, tool_call):
    plan = tool_call("update_plan", items=[{"step": "read", "status": "in_progress"}])
    reads = [tool_call("read_file", f"call_{n}", path="stats.py") for n in range(5)]
    script = script_file(
        [plan, *reads, tool_call("finish", summary="read"), tool_call("finish", summary="new")]
    )
    app = make_app(make_repo(), script)
    async with app.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        await d.send("/compact")
        assert "nothing to compact yet" in d.text()
        await d.send("read it")
        await d.idle()
        before = len(app.session.agent.context.turns)
        first_run = app.session.run_id
        await d.send("/compact")
        await pilot.pause()
        assert "context compacted" in d.text()
        assert len(app.session.agent.context.turns) < before
        await d.send("/clear")
        await pilot.pause()
        assert app.session.agent is None and not app.query(UserEntry)
        assert "new conversation" in d.text()
        await d.send("again")
        await d.idle()
        assert app.session.run_id != first_run
        assert app.query_one(FinalEntry).source == "new"
