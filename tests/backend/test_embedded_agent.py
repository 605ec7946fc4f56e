"""The embedded runtime driving the agent: a tiny random model ends a real run cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from codeagent.backend.client import EmbeddedClient


def test_client_counts_tokens_exactly_and_replies_in_openai_shape(tiny_chat_model):
    client = EmbeddedClient(tiny_chat_model, max_new_tokens=8)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Fix the mean."}]
    count, exact = client.count_tokens(messages, [])
    assert exact and count == len(client.prompt_ids(messages, []))
    streamed: list[str] = []
    reply = client.complete(messages, [], on_token=streamed.append)
    assert reply.message["role"] == "assistant"
    assert reply.usage.prompt_tokens == count and 1 <= reply.usage.completion_tokens <= 8
    assert "".join(streamed) == reply.message["content"] or reply.message.get("tool_calls")


def test_fix_with_a_tiny_embedded_model_ends_cleanly(tiny_chat_model, make_repo):
    root = make_repo()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "codeagent.tui.cli",
            "fix",
            "--task",
            "mean() is wrong",
            "--model",
            str(tiny_chat_model),
            "--max-steps",
            "2",
            "--max-output-tokens",
            "16",
            "--no-repo-map",
            "--json",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (1, 3), proc.stderr  # nonsense output: never resolved, never a crash
    assert "Traceback" not in proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] in ("unresolved", "error")
    assert result["tokens"]["prompt"] > 0 and result["steps"] >= 1
    records = [json.loads(line) for line in Path(result["transcript"]).read_text().splitlines()]
    assert records[0]["type"] == "meta" and records[-1]["type"] == "result"
