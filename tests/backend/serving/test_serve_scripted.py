"""``codeagent serve --model scripted:FILE`` in a subprocess, as a user runs it, against the
official SDKs and the real Claude Code and Codex CLIs.

The script answers the first request with a tool call and the next with text, so each client
does one real tool round trip: the SDKs see the protocol's own ``tool_calls`` / ``tool_use``,
and the CLIs run their tools (Claude Code's Write, Codex's shell in its own workspace-write
sandbox), which write a file in the client's temporary working directory. The CLIs come from
npm into the user's cache folder once (``bench.agent_clients``); without node, npm or a
registry the CLI tests skip with the reason. Each CLI runs in a temporary home, with a made-up
key and only 127.0.0.1 to talk to.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from codeagent.backend.scripted_service import read_script
from codeagent.bench.agent_clients import KEY, Claude, ClientsMissing, Codex, install

FINAL = "Wrote out.txt. SCRIPT-DONE-4217"
WRITE_FILE = {
    "type": "function",
    "function": {
        "name": "write_file",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "content": {"type": "string"},
                "mode": {"type": "integer"},
            },
            "required": ["path", "content"],
        },
    },
}
ARGUMENTS = {"path": "out.txt", "content": "hello\nworld", "mode": 420}


def write_script(folder: Path, name: str, *replies: dict[str, Any]) -> Path:
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(reply) + "\n" for reply in replies))
    return path


@contextmanager
def serving(script: Path, *flags: str) -> Iterator[str]:
    """``codeagent serve --model scripted:SCRIPT`` on a free port; yields its ``/v1`` URL."""
    command = [sys.executable, "-m", "codeagent.tui.cli", "serve", "--model", f"scripted:{script}"]
    command += ["--port", "0", "--api-key", KEY, "-q", *flags]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "serving " in line, line + proc.stderr.read()
        yield line.split(" at ")[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_openai_sdk_gets_the_scripted_tool_call_then_text_then_an_error(tmp_path):
    script = write_script(
        tmp_path,
        "demo",
        {
            "reasoning": "A file it is.",
            "text": "Writing it.",
            "tool_call": {"name": "write_file", "arguments": ARGUMENTS},
        },
        {"text": FINAL},
    )
    written = read_script(script)[0].markup()
    with serving(script) as url:
        api = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=60)
        assert [card.id for card in api.models.list().data] == ["demo"]  # the file's stem
        messages: list[Any] = [{"role": "user", "content": "Write out.txt."}]
        first = api.chat.completions.create(model="demo", messages=messages, tools=[WRITE_FILE])
        reply = first.choices[0]
        assert reply.finish_reason == "tool_calls" and reply.message.content == "Writing it."
        assert (reply.message.model_extra or {})["reasoning_content"] == "A file it is."
        call = reply.message.tool_calls[0]
        assert call.function.name == "write_file" and json.loads(call.function.arguments) == ARGUMENTS
        assert first.usage.completion_tokens == len(written.encode()) + 1  # a byte each, then <|im_end|>
        messages += [reply.message, {"role": "tool", "tool_call_id": call.id, "content": "written"}]
        second = api.chat.completions.create(model="demo", messages=messages, tools=[WRITE_FILE])
        assert second.choices[0].message.content == FINAL and second.choices[0].finish_reason == "stop"
        assert second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens
        with pytest.raises(openai.InternalServerError, match="has no reply 3: it holds 2"):
            api.chat.completions.create(model="demo", messages=messages)


def test_anthropic_sdk_gets_the_scripted_tool_use_then_text(tmp_path):
    script = write_script(
        tmp_path,
        "demo",
        {"tool_call": {"name": "write_file", "arguments": ARGUMENTS}},
        {"text": FINAL},
    )
    tools: Any = [{"name": "write_file", "input_schema": WRITE_FILE["function"]["parameters"]}]
    with serving(script, "--served-model-name", "scripted-model") as url:
        api = anthropic.Anthropic(base_url=url.removesuffix("/v1"), api_key=KEY, max_retries=0, timeout=60)
        messages: list[Any] = [{"role": "user", "content": "Write out.txt."}]
        first = api.messages.create(model="scripted-model", max_tokens=512, messages=messages, tools=tools)
        assert first.stop_reason == "tool_use" and first.model == "scripted-model"
        use = next(block for block in first.content if block.type == "tool_use")
        assert use.name == "write_file" and use.input == ARGUMENTS
        result = {"type": "tool_result", "tool_use_id": use.id, "content": "written"}
        messages += [{"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}]
        with api.messages.stream(
            model="scripted-model", max_tokens=512, messages=messages, tools=tools
        ) as stream:
            second = stream.get_final_message()
        assert [block.text for block in second.content if block.type == "text"] == [FINAL]
        assert second.stop_reason == "end_turn" and second.usage.output_tokens == len(FINAL) + 1
        with pytest.raises(anthropic.InternalServerError, match="has no reply 3"):
            api.messages.create(model="scripted-model", max_tokens=16, messages=messages)


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (None, "does not exist"),
        ('{"text": "fine"}\n{"text": "cut\n', ":2: not JSON"),
        ('{"tool_call": {"name": "Write", "arguments": ["x"]}}\n', ':1: "tool_call" must be'),
        ('{"text": "a", "tools": []}\n', ":1: unknown keys ['tools']"),
    ],
)
def test_a_bad_script_is_one_error_line_and_exit_2(tmp_path, lines, error):
    script = tmp_path / "script.jsonl"
    if lines is not None:
        script.write_text(lines)
    command = [
        sys.executable,
        "-m",
        "codeagent.tui.cli",
        "serve",
        "--model",
        f"scripted:{script}",
        "--port",
        "0",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("codeagent: error: "), done.stderr
    assert error in done.stderr


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    """The CLIs in the user's cache folder (module fixtures run before ``tests/conftest.py``'s
    per-test home isolation moves ``$XDG_CACHE_HOME``), as ``test_real_clients.py`` has them."""
    try:
        return install()
    except ClientsMissing as err:
        pytest.skip(str(err))


def test_claude_code_writes_the_scripted_file_with_its_write_tool(bin_dir, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    arguments = {"file_path": str(work / "out.txt"), "content": "hello from the script\n"}
    script = write_script(
        tmp_path,
        "claude-script",
        {
            "reasoning": "Write it.",
            "text": "Writing out.txt.",
            "tool_call": {"name": "Write", "arguments": arguments},
        },
        {"text": FINAL},
    )
    with serving(script) as url:
        root = url.removesuffix("/v1")
        claude = Claude(
            bin_dir, tmp_path / "home", work, root, "claude-script", timeout_s=180, allowed_tools="Write"
        )
        turn = claude.turn("Write out.txt.")
    assert turn.returncode == 0, turn.stdout + turn.stderr
    assert (work / "out.txt").read_text() == "hello from the script\n"
    assert FINAL in turn.answer, turn.stdout


def test_codex_writes_the_scripted_file_with_its_shell_in_its_sandbox(bin_dir, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    command = {"cmd": "printf 'hello from codex' > out.txt"}  # run by Codex, in its own sandbox
    script = write_script(
        tmp_path,
        "codex-script",
        {
            "reasoning": "A shell command will do.",
            "tool_call": {"name": "exec_command", "arguments": command},
        },
        {"text": FINAL},
    )
    with serving(script) as url:
        home = tmp_path / "home"
        codex = Codex(bin_dir, home, work, url, "codex-script", timeout_s=180, sandbox="workspace-write")
        turn = codex.turn("Write out.txt.")
    assert turn.returncode == 0, turn.stdout + turn.stderr
    assert (work / "out.txt").read_text() == "hello from codex"
    assert FINAL in turn.answer, turn.stderr
