"""``codeagent serve`` keeps the KV cache's disk tier: a server restarted on the same model answers
a long prompt it has seen with cached tokens read from disk and the same greedy reply as cold;
``--no-disk-cache`` keeps it in memory only. Real servers in subprocesses, as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest

from codeagent.tui.cli import build_parser
from codeagent.tui.commands import CommandError
from codeagent.tui.serve_command import cache_config

MESSAGES = [
    {"role": "system", "content": " ".join(f"Rule {n}: keep test_{n}.py green." for n in range(30))},
    {"role": "user", "content": "Fix the mean."},
]


@contextmanager
def server(model: Path, *flags: str) -> Iterator[tuple[openai.OpenAI, str]]:
    """``codeagent serve`` on a free port; yields a client and its startup line; stops it with SIGTERM."""
    command = [sys.executable, "-m", "codeagent.tui.cli", "serve", "--model", str(model), "--port", "0"]
    command += ["-q", "--device", "cpu", "--kv-cache-gb", "0.01", *flags]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "serving " in line, line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        yield openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=120), line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def ask(api: openai.OpenAI, model: Path) -> tuple[str | None, int, int, int]:
    """The reply's content, completion tokens, cached prompt tokens and prompt tokens."""
    reply = api.chat.completions.create(model=model.name, messages=MESSAGES, max_tokens=8, temperature=0)
    usage = reply.usage
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    return reply.choices[0].message.content, usage.completion_tokens, cached or 0, usage.prompt_tokens


def test_a_restarted_server_answers_from_the_disk_tier(tiny_chat_model: Path) -> None:
    root = Path(os.environ["XDG_CACHE_HOME"]) / "codeagent" / "kv"  # the embedded agent's folder
    with server(tiny_chat_model) as (api, line):
        assert f"KV disk cache {root}" in line
        cold = ask(api, tiny_chat_model)
    assert cold[2] == 0 and cold[3] > 64 and list(root.rglob("*.kv"))
    with server(tiny_chat_model) as (api, _):
        warm = ask(api, tiny_chat_model)
    assert warm[:2] == cold[:2]  # the same greedy reply
    assert warm[2] == (cold[3] - 1) // 32 * 32  # every full block of the prompt, read back from disk

    with server(tiny_chat_model, "--no-disk-cache") as (api, line):
        assert "KV disk cache off" in line
        assert ask(api, tiny_chat_model) == (*cold[:2], 0, cold[3])


def test_disk_cache_chooses_the_folder(tiny_chat_model: Path, tmp_path: Path) -> None:
    with server(tiny_chat_model, "--disk-cache", str(tmp_path / "kv")) as (api, line):
        assert f"KV disk cache {tmp_path / 'kv'}" in line
        ask(api, tiny_chat_model)
    assert list((tmp_path / "kv").rglob("*.kv"))


def test_a_disk_cache_folder_that_cannot_be_made(tmp_path: Path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    parse = build_parser().parse_args
    with pytest.raises(CommandError, match="--no-disk-cache turns it off"):
        cache_config(parse(["serve", "--model", "m", "--disk-cache", str(blocker / "kv")]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the default folder: a warning, no tier
    assert cache_config(parse(["serve", "--model", "m"])).disk_folder is None
    assert "serving without it" in capsys.readouterr().err
    assert cache_config(parse(["serve", "--model", "m", "--no-disk-cache"])).disk_folder is None
