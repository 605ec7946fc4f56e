"""The run tool through real subprocesses: exit codes, timeouts, caps, secrets, cwd."""

from __future__ import annotations

import os
import time

import pytest

from codeagent.tools.base import OUT_OF_TIME, ToolEnv, ToolSettings, run_tool
from codeagent.tools.registry import get_tool


def run(env: ToolEnv, **args):
    return run_tool(get_tool("run"), args, env)


def test_run_reports_exit_code_in_the_repository_root(tmp_path):
    result = run(ToolEnv(tmp_path), command="pwd; exit 4")
    assert not result.ok and result.data["exit_code"] == 4 and not result.data["timed_out"]
    assert result.text == f"{tmp_path.resolve()}\nexit code: 4"
    ok = run(ToolEnv(tmp_path), command="true")
    assert ok.ok and ok.text == "exit code: 0"


def test_run_strips_secrets_and_keeps_harmless_variables(tmp_path, monkeypatch):
    fakes = {
        "GITHUB_TOKEN": "ghs_fake_secret_1",
        "OPENAI_API_KEY": "sk-fake-secret-2",
        "AWS_SECRET_ACCESS_KEY": "fake-secret-3",
        "Company_Password": "fake-secret-4",
        "MY_DEPLOY_THING": "fake-secret-5",
        "PLAIN_ALIAS": "ghs_fake_secret_1",
    }
    for name, value in fakes.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HARMLESS_SETTING", "visible")
    env = ToolEnv(tmp_path, settings=ToolSettings(secret_env_names=("my_deploy_thing",)))
    result = run(env, command="env")
    assert result.ok
    for name, value in fakes.items():
        assert name not in result.text and value not in result.text
    assert "HARMLESS_SETTING=visible" in result.text
    assert f"PATH={os.environ['PATH']}\n" in result.text and f"HOME={os.environ['HOME']}\n" in result.text


def test_run_timeout_is_reported_and_bounded_by_settings(tmp_path):
    env = ToolEnv(tmp_path, settings=ToolSettings(command_timeout=1.0))
    started = time.monotonic()
    result = run(env, command="sleep 30 & sleep 30", timeout=100)
    assert time.monotonic() - started < 5
    assert not result.ok and result.data["timed_out"] and result.data["exit_code"] is None
    assert result.text.endswith("timed out after 1s; killed 3 processes")  # bash and both sleeps


def test_run_kills_background_processes_when_the_command_ends(tmp_path):
    result = run(ToolEnv(tmp_path), command="sleep 300 & echo $!")
    pid = int(result.text.split()[0])
    assert result.ok and not os.path.exists(f"/proc/{pid}")


def test_run_caps_output(tmp_path):
    env = ToolEnv(tmp_path, settings=ToolSettings(max_output_chars=1000))
    result = run(env, command="seq 1 100000")
    assert result.ok and result.data["truncated"]
    assert result.text.startswith("1\n2\n") and result.text.endswith("99999\n100000\nexit code: 0")
    assert "characters omitted ...]" in result.text and len(result.text) < 1100


def test_run_rejects_bad_arguments(tmp_path):
    env = ToolEnv(tmp_path)
    assert "non-empty" in run(env, command="  ").text
    assert "positive" in run(env, command="true", timeout=0).text
    assert "number of seconds" in run(env, command="true", timeout="soon").text
    assert not run(env).ok


@pytest.mark.attack("bounds")
@pytest.mark.timeout(60)
def test_the_runs_deadline_caps_a_command_and_says_so(tmp_path):
    env = ToolEnv(tmp_path, deadline=time.monotonic() + 1.0)
    result = run(env, command="sleep 600")  # its own timeout would be command_timeout's 120s
    assert not result.ok and result.data["timed_out"]
    assert result.text.startswith("stopped after ") and "the run's time budget ran out" in result.text
    assert run(env, command="true").text == f"error: {OUT_OF_TIME}"  # nothing starts past it
