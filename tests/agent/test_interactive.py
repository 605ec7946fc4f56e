"""The interactive session with no screen at all: budgets per message, and which saved
sessions it can resume."""

from __future__ import annotations

import json

import pytest

from codeagent.agent import events as ev
from codeagent.agent.clients.scripted import ScriptedClient
from codeagent.agent.interactive import Session, SessionError
from codeagent.agent.loop import Limits
from codeagent.agent.run import RunConfig
from codeagent.agent.transcript import TRANSCRIPT
from codeagent.tools.base import ToolSettings


def test_the_session_without_a_screen_budgets_each_message(make_repo, write_script, tool_call):
    plan = tool_call("update_plan", items=[{"step": "read", "status": "in_progress"}])
    script = write_script([plan] + [tool_call("read_file", f"c{n}", path="stats.py") for n in range(6)])
    config = RunConfig(ToolSettings(), Limits(max_steps=2), "ask", sandbox=False)
    seen: list[ev.Event] = []
    session = Session(make_repo(), config, "scripted", ScriptedClient(script), seen.append)

    def run(text: str) -> list[ev.Event]:
        seen.clear()
        session.send(text)
        return list(seen)

    first = run("read stats.py")
    assert [e.status for e in first if isinstance(e, ev.RunFinished)] == ["budget"]
    second = run("go on")
    assert [e.step for e in second if isinstance(e, ev.StepStarted)] == [3, 4]
    assert session.agent is not None
    assert [m["content"] for m in session.agent.context.turns if m["role"] == "user"][-1] == "go on"
    assert session.usage()["calls"] == 4


def test_only_a_saved_session_of_this_repository_resumes(make_repo, write_script, tool_call, isolated_home):
    root, other = make_repo(name="one"), make_repo(name="other")
    script = write_script([tool_call("finish", summary="done")])
    config = RunConfig(ToolSettings(), Limits(), "full-auto", sandbox=False)
    first = Session(root, config, "scripted", ScriptedClient(script))
    first.send("hello")
    run_id = first.run_id
    assert run_id is not None
    again = Session(root, config, "scripted", ScriptedClient(script))
    assert again.resumable(run_id).steps == 1
    with pytest.raises(SessionError, match="is not a session of this repository"):
        Session(other, config, "scripted").resumable(run_id)
    with pytest.raises(SessionError, match="no session 'nope'"):
        again.resumable("nope")
    fix = isolated_home / "xdg_state_home" / "codeagent" / "runs" / "20260101-000000-abcdef"
    fix.mkdir(parents=True)
    (fix / TRANSCRIPT).write_text(json.dumps({"type": "meta", "run_id": fix.name}) + "\n")
    with pytest.raises(SessionError, match="cannot be read"):
        again.resumable(fix.name)
