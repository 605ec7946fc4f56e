"""The settings in effect in the terminal UI: ``/help`` lists them with their sources, the welcome
shows what a project file asked for and did not get, and a project's setup command runs with
the first message, in the sandbox. Textual's pilot, a real repository, the scripted model."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from codeagent.agent.config import Config
from codeagent.agent.loop import Limits
from codeagent.agent.run import RunConfig
from codeagent.agent.settings import CommandLine, Settings, resolve
from codeagent.tools.base import ToolSettings
from codeagent.tui.app.application import CodeAgentApp
from codeagent.tui.app.entries import ToolEntry
from codeagent.tui.app.history import History
from codeagent.tui.app.setup import Setup

from .conftest import SANDBOX, steady

pytestmark = pytest.mark.anyio


def app_for(root: Path, script: Path, settings: Settings, tmp_path: Path) -> CodeAgentApp:
    config = settings.config
    run = RunConfig(
        ToolSettings(test_command=config.tools.test_command, command_timeout=60),
        Limits(max_steps=20),
        settings.mode,
        SANDBOX,
        repo_map=False,
        setup_command=settings.setup_command,
    )
    setup = Setup(root, f"scripted:{script}", lambda s, n: steady(script, n), run, steady(script), settings)
    return CodeAgentApp(setup, clock=lambda: 1000.0, history=History(tmp_path / "history.jsonl"))


def settle_project(root: Path, text: str) -> None:
    (root / ".codeagent").mkdir()
    (root / ".codeagent" / "config.toml").write_text(text)


async def test_help_lists_the_settings_and_where_each_came_from(make_repo, script_file, drive, tmp_path):
    root = make_repo()
    settle_project(
        root, "mode = 'read-only'\n[tools]\ntest_command = 'pytest -q'\n[limits]\nmax_steps = 9999\n"
    )
    user = Config.model_validate(tomllib.loads("[limits]\nmax_steps = 30\n"))
    settings = resolve(user, root, "tui", CommandLine(network=True))
    app = app_for(root, script_file([]), settings, tmp_path)
    async with app.run_test(size=(140, 60)) as pilot:
        d = drive(pilot)
        await d.settle(lambda: "max steps 9999 set aside" in d.text())  # the welcome's notice
        await d.send("/help")
        await d.settle(lambda: "settings in effect" in d.text())
        lines = {
            line.split()[0] + " " + line.split()[1]: line for line in d.text().splitlines() if "[" in line
        }
        assert "read-only" in lines["mode read-only"] and "[project config]" in lines["mode read-only"]
        assert "pytest -q" in lines["test command"] and "[project config]" in lines["test command"]
        assert "30" in lines["max steps"] and "[user config]" in lines["max steps"]
        assert "[command line]" in lines["network on"]
        assert "[default]" in lines["repo map"]
        assert f"project file: {root}/.codeagent/config.toml" in d.text()
        assert app.session.policy.mode == "read-only"
        await d.send("/mode ask")
        await d.send("/help")
        await d.settle(lambda: "mode               ask  [/mode]" in d.text())


@pytest.mark.skipif(not SANDBOX, reason="a project's setup command runs only in the sandbox")
async def test_the_setup_command_runs_in_the_sandbox_with_the_first_message(
    make_repo, script_file, drive, tool_call, tmp_path
):
    root = make_repo()
    settle_project(root, "[tools]\nsetup_command = 'echo ready > .setup-ran'\n")
    user = Config.model_validate({"mode": "full-auto"})
    settings = resolve(user, root, "tui", CommandLine())
    assert settings.mode == "full-auto" and settings.setup_command == "echo ready > .setup-ran"
    app = app_for(root, script_file([tool_call("finish", summary="ok")]), settings, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        d = drive(pilot)
        await d.send("hello")
        await d.idle()
        assert (root / ".setup-ran").read_text() == "ready\n"
        assert any(entry.tool == "run" for entry in app.query(ToolEntry))
        task = app.session.agent.context.turns[0]["content"]
        assert "setup command `echo ready > .setup-ran` ran in the sandbox" in task
