"""``codeagent serve --tp 2`` as a user runs it: it answers, and when a rank is killed the request
in flight fails with the reason and the server exits 1 instead of hanging."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

MESSAGES = [{"role": "user", "content": "Say hello."}]


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_serve_split_answers_then_exits_1_when_a_rank_dies(tiny_chat_model: Path) -> None:
    env = {**os.environ, "CODEAGENT_DIST_TIMEOUT": "60"}
    command = [sys.executable, "-m", "codeagent.tui.cli", "serve", "--model", str(tiny_chat_model)]
    command += ["--port", "0", "-q", "--kv-cache-gb", "0.01", "--tp", "2"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "serving qwen3chat" in line, line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        api = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=90)
        reply = api.chat.completions.create(model=tiny_chat_model.name, messages=MESSAGES, max_tokens=3)
        assert reply.usage.completion_tokens >= 1

        ranks = [
            pid
            for pid in children(proc.pid)
            if b"distributed.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(ranks) == 1
        os.kill(ranks[0], signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(openai.APIError) as failure:
            api.chat.completions.create(model=tiny_chat_model.name, messages=MESSAGES, max_tokens=3)
        assert "rank" in str(failure.value)
        assert proc.wait(timeout=90) == 1
        assert time.monotonic() - started < 90
        assert "the engine is down" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
