"""The split engine as a user starts it: ``codeagent serve --tp 2`` answers, and when a rank is
killed the request in flight fails with the reason and the server exits 1 instead of hanging;
under ``torchrun`` the same command line on every rank gives the single process's tokens."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
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


def test_torchrun_ranks_run_the_same_command_line(split_cli_dir: Path) -> None:
    """Under torchrun every rank runs the user's command; ranks above 0 follow rank 0."""
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH (it comes with torch)")
    argv = [
        "generate",
        "--model",
        str(split_cli_dir),
        "--prompt-ids",
        "5,17,42,99,300,7",
        "--max-tokens",
        "8",
    ]
    argv += ["--json"]
    single = subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *argv], capture_output=True, text=True
    )
    assert single.returncode == 0, single.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    split = subprocess.run(
        [
            torchrun,
            "--nproc-per-node",
            "2",
            "--master-port",
            str(port),
            "-m",
            "codeagent.tui.cli",
            *argv,
            "--tp",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert split.returncode == 0, split.stderr[-2000:]
    outputs = [json.loads(line) for line in split.stdout.splitlines() if line.startswith("{")]
    assert len(outputs) == 1  # rank 0 answers; rank 1 only follows
    assert outputs[0]["token_ids"] == json.loads(single.stdout)["token_ids"]


@pytest.fixture(scope="module")
def split_cli_dir(tmp_path_factory: pytest.TempPathFactory, qwen3_moe_factory) -> Path:
    folder = tmp_path_factory.mktemp("torchrun")
    qwen3_moe_factory(vocab_size=301, num_attention_heads=8, num_key_value_heads=2).save_pretrained(folder)
    return folder
