"""The run's wall-time budget bounds tool calls in progress, through ``ToolEnv.deadline``.

Real tools, real processes, the scripted client. pytest-timeout is the hang guard: without
the deadline each of these runs would sleep or backtrack for many minutes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from codeagent.agent.clients.scripted import ScriptedClient
from codeagent.agent.loop import Agent, Limits, RunResult
from codeagent.agent.session import SessionSpec, new_agent
from codeagent.tools.base import OUT_OF_TIME, ToolEnv, ToolSettings, run_tool
from codeagent.tools.registry import get_tool

BUDGET_S = 3.0
PLAN = {"items": [{"step": "wait", "status": "in_progress"}]}


def reply(*calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """One assistant reply calling each (tool, arguments) in order."""
    return {
        "content": "",
        "tool_calls": [
            {"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for n, (name, args) in enumerate(calls)
        ],
    }


def run_with_budget(
    root: Path, script: Path, settings: ToolSettings | None = None
) -> tuple[Agent, RunResult]:
    env = ToolEnv(root, settings or ToolSettings())
    agent = new_agent(
        SessionSpec(ScriptedClient(script), env, Limits(max_wall_s=BUDGET_S), None, repo_map=False), "wait"
    )
    return agent, agent.run()


def tool_messages(agent: Agent) -> list[str]:
    return [m["content"] for m in agent.context.turns if m["role"] == "tool"]


@pytest.mark.attack("bounds")
@pytest.mark.timeout(120)
def test_a_command_past_the_budget_is_stopped_and_the_run_ends_budget(make_repo, write_script):
    root = make_repo()
    script = write_script(
        [
            reply(("update_plan", PLAN)),
            reply(("run", {"command": "sleep 600"}), ("run", {"command": "touch after"})),
        ]
    )
    agent, result = run_with_budget(root, script)
    assert result.status == "budget" and result.message == f"time budget of {BUDGET_S:.0f}s reached"
    stopped, skipped = tool_messages(agent)[-2:]
    assert "the run's time budget ran out; killed" in stopped
    assert skipped == f"not run: time budget of {BUDGET_S:.0f}s reached"
    assert not (root / "after").exists()


@pytest.mark.attack("bounds")
@pytest.mark.timeout(120)
def test_run_tests_past_the_budget_is_stopped(make_repo, write_script):
    root = make_repo()
    script = write_script([reply(("update_plan", PLAN)), reply(("run_tests", {}))])
    agent, result = run_with_budget(root, script, ToolSettings(test_command="sleep 600"))
    assert result.status == "budget"
    assert "the run's time budget ran out" in tool_messages(agent)[-1]


@pytest.mark.attack("bounds")
@pytest.mark.timeout(120)
def test_a_python_regex_search_past_the_budget_is_stopped(make_repo, write_script, tmp_path, monkeypatch):
    root = make_repo({"trap.txt": "a" * 40 + "b\n"})
    bin_dir = tmp_path / "bin-without-rg"  # only git: the search has to use Python's engine
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    monkeypatch.setenv("PATH", str(bin_dir))
    script = write_script([reply(("search", {"pattern": "(a+)+$"}))])
    agent, result = run_with_budget(root, script, ToolSettings(search_timeout=600))
    assert result.status == "budget"
    assert tool_messages(agent)[-1] == f"error: {OUT_OF_TIME}"


@pytest.mark.timeout(120)
def test_the_deadline_holds_only_while_the_loop_runs_a_call(make_repo, write_script):
    root = make_repo()
    script = write_script([reply(("update_plan", PLAN)), reply(("run", {"command": "sleep 600"}))])
    agent, result = run_with_budget(root, script)
    assert result.status == "budget" and agent.env.deadline is None
    # What runs after the agent on the same environment (fix's final test run) is not cut.
    assert run_tool(get_tool("run"), {"command": "true"}, agent.env).ok
