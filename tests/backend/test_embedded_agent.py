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


def test_follow_up_turns_reuse_the_cache_in_process_and_across_processes(tiny_chat_model):
    messages = [
        {"role": "system", "content": "Be brief. " * 40},
        {"role": "user", "content": "Fix the mean."},
    ]
    client = EmbeddedClient(tiny_chat_model, max_new_tokens=12)
    first = client.complete(messages, [])
    assert first.usage.cached_tokens == 0 and first.message["_raw"]
    first_ids = client.prompt_ids(messages, [])
    follow_up = [*messages, first.message, {"role": "user", "content": "And the median?"}]
    ids = client.prompt_ids(follow_up, [])
    generated = first.usage.completion_tokens
    assert len(ids) > len(first_ids) + generated  # extends the prompt and the reply token for token
    second = client.complete(follow_up, [])
    block = client.engine.block_size
    assert second.usage.cached_tokens == (len(first_ids) + generated - 1) // block * block > 0
    client.engine.flush()
    client.close()

    reopened = EmbeddedClient(tiny_chat_model, max_new_tokens=12)  # a new session: the disk tier
    again = reopened.complete(messages, [])
    assert again.usage.cached_tokens == (len(first_ids) - 1) // block * block > 0
    assert reopened.engine.stats.disk_tokens == again.usage.cached_tokens
    assert again.message["content"] == first.message["content"]
    reopened.close()


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
