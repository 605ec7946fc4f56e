"""The MCP client end to end: ``codeagent fix`` in a subprocess with a scripted model, real
MCP servers (one written with the SDK in ``mcp_calc_server.py``, the npm
``@modelcontextprotocol/server-filesystem``), the user's config and a repository's
``.mcp.json``; plus the policy and the HTTP transport directly."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codeagent import xdg
from codeagent.agent.mcp.config import McpConfig
from codeagent.agent.mcp.hub import open_servers
from codeagent.sandbox.policy import Policy
from codeagent.tools.base import ToolEnv, run_tool

SERVER = Path(__file__).with_name("mcp_calc_server.py")
FS_PACKAGE = "@modelcontextprotocol/server-filesystem"
REPO = {"notes.txt": "the answer is 42\n", "README.md": "a repository\n"}


def codeagent(config: Path, script: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    argv = [
        "--config",
        str(config),
        "fix",
        "--task",
        "use the tools",
        "--model",
        f"scripted:{script}",
        "--json",
    ]
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


def tool_replies(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """The tool messages of the run's transcript, by call id."""
    result = json.loads(proc.stdout)
    records = [json.loads(line) for line in Path(result["transcript"]).read_text().splitlines()]
    messages = [r["message"] for r in records if r["type"] == "message"]
    return {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}


def write_config(path: Path, mcp: dict[str, Any]) -> Path:
    """``mcp`` as the ``[mcp]`` part of a TOML config (JSON values are TOML values here)."""
    lines = []
    for key in ("allowed_tools", "connect_timeout"):
        if key in mcp:
            lines.append(f"{key} = {json.dumps(mcp[key])}")
    text = "[mcp]\n" + "".join(line + "\n" for line in lines)
    for name, server in mcp.get("servers", {}).items():
        text += f"\n[mcp.servers.{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in server.items())
    for trusted in mcp.get("trusted", []):
        text += "\n[[mcp.trusted_project_servers]]\n" + "".join(
            f"{k} = {_toml(v)}\n" for k, v in trusted.items()
        )
    path.write_text(text)
    return path


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def calc_server(marker: Path, **extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(SERVER), str(marker)], **extra}


def plan(call: Any) -> dict[str, Any]:
    return call("update_plan", items=[{"step": "use the MCP tools", "status": "in_progress"}])


def test_a_user_server_is_called_and_bad_arguments_are_refused(make_repo, write_script, tool_call, tmp_path):
    root = make_repo(REPO)
    marker = tmp_path / "started"
    server = calc_server(marker, env={"GREETING": "hi", "SERVICE_KEY": "k3y-0123456789abcdef"})
    config = write_config(
        tmp_path / "config.toml", {"servers": {"calc": server}, "allowed_tools": ["calc__*"]}
    )
    script = write_script(
        [
            plan(tool_call),
            tool_call("calc__add", "sum", a=2, b=40),
            tool_call("calc__add", "bad", a="two", b=3),
            tool_call("calc__getenv", "greeting", variable="GREETING"),
            tool_call("calc__getenv", "secret", variable="MY_SECRET_TOKEN"),
            tool_call("calc__getenv", "key", variable="SERVICE_KEY"),
            tool_call("finish", summary="done"),
        ]
    )
    proc = codeagent(config, script, root, MY_SECRET_TOKEN="s3cr3t-value")
    replies = tool_replies(proc)
    assert marker.exists(), proc.stderr
    assert replies["sum"] == "42"
    assert "do not match its schema" in replies["bad"] and "'two' is not of type 'integer'" in replies["bad"]
    assert "nothing was sent" in replies["bad"]
    assert replies["greeting"] == "hi"
    assert replies["secret"] == "(unset)"  # the server gets only what its config names
    assert replies["key"] == "[secret:calc.SERVICE_KEY]"  # configured values are redacted from results


def test_c_headless_calls_are_refused_unless_allowed(make_repo, write_script, tool_call, tmp_path):
    root = make_repo(REPO)
    config = write_config(tmp_path / "config.toml", {"servers": {"calc": calc_server(tmp_path / "started")}})
    script = write_script(
        [plan(tool_call), tool_call("calc__add", "sum", a=2, b=3), tool_call("finish", summary="x")]
    )
    replies = tool_replies(codeagent(config, script, root))
    assert (
        replies["sum"].startswith("not run: calc__add needs approval")
        and "nobody can approve" in replies["sum"]
    )


def test_d_a_repository_mcp_json_alone_starts_nothing_headless(make_repo, write_script, tool_call, tmp_path):
    marker = tmp_path / "started"
    project = {"mcpServers": {"calc": calc_server(marker)}}
    root = make_repo({**REPO, ".mcp.json": json.dumps(project)})
    config = write_config(tmp_path / "config.toml", {"allowed_tools": ["calc__*"]})
    script = write_script(
        [plan(tool_call), tool_call("calc__add", "sum", a=2, b=3), tool_call("finish", summary="x")]
    )
    proc = codeagent(config, script, root)
    assert not marker.exists()
    assert "server 'calc' from the repository's .mcp.json not started" in proc.stderr
    assert "[[mcp.trusted_project_servers]]" in proc.stderr
    assert tool_replies(proc)["sum"].startswith("error: unknown tool 'calc__add'")

    trusted = {"command": sys.executable, "args": [str(SERVER), str(marker)]}
    config = write_config(tmp_path / "trusting.toml", {"allowed_tools": ["calc__*"], "trusted": [trusted]})
    again = write_script([plan(tool_call), tool_call("calc__add", "sum", a=2, b=3)], "again.jsonl")
    proc = codeagent(config, again, root)
    assert marker.exists(), proc.stderr
    assert tool_replies(proc)["sum"] == "5"


@pytest.fixture(scope="module")
def fs_server() -> Path:
    """``mcp-server-filesystem`` from npm in the user's cache folder (module fixtures run before
    the per-test home isolation, so runs share one install)."""
    folder = xdg.folder("cache") / "mcp-servers"
    command = folder / "node_modules" / ".bin" / "mcp-server-filesystem"
    if command.exists():
        return command
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are needed for the npm MCP filesystem server")
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "npm_config_cache": str(folder / "npm-cache"), "npm_config_update_notifier": "false"}
    install = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder), FS_PACKAGE]
    try:
        proc = subprocess.run(install, capture_output=True, text=True, timeout=300, env=env, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm install {FS_PACKAGE} took over 300 s (offline, no mirror?)")
    if proc.returncode != 0 or not command.exists():
        pytest.skip(f"npm install {FS_PACKAGE} failed (offline, no mirror?): {proc.stderr.strip()[-300:]}")
    return command


def test_b_the_npm_filesystem_server_reads_a_file(make_repo, write_script, tool_call, tmp_path, fs_server):
    root = make_repo(REPO)
    server = {"command": str(fs_server), "args": ["${REPO}"]}
    config = write_config(
        tmp_path / "config.toml", {"servers": {"fs": server}, "allowed_tools": ["fs__read_*"]}
    )
    script = write_script(
        [
            tool_call("fs__read_text_file", "read", path=str(root / "notes.txt")),
            tool_call("fs__read_text_file", "outside", path="/etc/hostname"),
            tool_call("finish", summary="read it"),
        ]
    )
    proc = codeagent(config, script, root)
    replies = tool_replies(proc)
    assert replies["read"] == "the answer is 42\n", proc.stderr
    assert "denied" in replies["outside"].lower() or "outside" in replies["outside"].lower()


def test_a_server_that_fails_to_start_is_one_line_and_the_rest_go_on(tmp_path):
    config = McpConfig.model_validate(
        {"servers": {"gone": {"command": str(tmp_path / "missing")}, "calc": calc_server(tmp_path / "m")}}
    )
    said: list[str] = []
    with open_servers(config, tmp_path, said.append, log_dir=tmp_path / "logs") as servers:
        assert [tool.name for tool in servers.tools] == ["calc__add", "calc__getenv"]
        assert servers.started == ["calc"]
    assert len(said) == 1 and said[0].startswith("mcp: server 'gone' not started: ")


def test_every_mcp_call_asks_unless_allowed():
    asked: list[str] = []
    policy = Policy("auto-edit", approver=lambda request: asked.append(request.tool) or "deny")
    assert not policy.check("calc__add", {}, False, "ask").allowed and asked == ["calc__add"]
    assert policy.check("calc__add", {}, False, "allowed").allowed
    assert not Policy("full-auto").check("calc__add", {}, False, "ask").allowed  # headless: nobody to ask
    assert not Policy("read-only", approver=lambda r: "allow").check("calc__add", {}, False, "ask").allowed
    always = Policy("ask", approver=lambda request: "always")
    assert always.check("calc__add", {}, True, "ask").allowed and "calc__add" in always.always_commands


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(SERVER), "--http", str(port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_streamable_http_server(http_server, tmp_path):
    config = McpConfig.model_validate({"servers": {"web": {"type": "http", "url": http_server}}})
    with open_servers(config, tmp_path, pytest.fail) as servers:
        add = next(tool for tool in servers.tools if tool.name == "web__add")
        assert add.run({"a": 1, "b": 2}, ToolEnv(tmp_path)).text == "3"
        # its schema does not forbid other properties, so the tools' own check lets them through
        assert run_tool(add, {"a": 1, "b": 2, "note": "x"}, ToolEnv(tmp_path)).text == "3"


def test_an_untrusted_project_server_starts_only_when_the_front_end_approves_it(tmp_path):
    marker = tmp_path / "started"
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": {"calc": calc_server(marker)}}))
    asked: list[str] = []

    def refuse(server: Any) -> bool:
        asked.append(server.config.shown())
        return False

    said: list[str] = []
    with open_servers(McpConfig(), tmp_path, said.append, approve=refuse) as servers:
        assert servers.tools == [] and not marker.exists()
    assert asked == [f"{sys.executable} {SERVER} {marker}"] and "not started" in said[0]
    with open_servers(McpConfig(), tmp_path, pytest.fail, approve=lambda server: True) as servers:
        assert marker.exists() and [tool.name for tool in servers.tools] == ["calc__add", "calc__getenv"]
