"""``codeagent serve``: the OpenAI-compatible server on 127.0.0.1, used through the official
``openai`` client, raw HTTP and the agent's own remote client.

The servers behind them are this folder's fixtures (``conftest.py``): the real engine over a
tiny random Qwen3-MoE, and ``ScriptedService``, which plays back exact text a random model
would never write.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from codeagent.agent.clients.remote import RemoteClient, RemoteSettings
from codeagent.backend.chat.prompt import chat_prompt
from codeagent.backend.serving.server import OpenAIServer, exposure_warning, serve

KEY = "sk-serve-test-1234"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "start_line": {"type": "integer"}},
                "required": ["path"],
            },
        },
    }
]
SYSTEM = "You are a careful software engineer. Read the file, fix the bug, run the tests. " * 3
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Fix the mean."}]
CALL_TEXT = (
    "Let me look.\n<tool_call>\n<function=read_file>\n<parameter=path>\nstats.py\n</parameter>\n"
    "<parameter=start_line>\n3\n</parameter>\n</function>\n</tool_call>"
)


def wait_until(condition: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def client(server: OpenAIServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=60)


def live_sequences(server: OpenAIServer) -> int:
    return server.service.active()


# the real engine


def test_chat_completion_with_usage_and_prefix_cache(engine_server, chat_model):
    server, _ = engine_server
    api = client(server)
    first = api.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0)
    again = api.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0)
    expected = len(chat_prompt(chat_model, MESSAGES, []).ids)
    assert first.object == "chat.completion" and first.model == "tiny"
    assert first.choices[0].message.role == "assistant" and isinstance(first.choices[0].message.content, str)
    assert first.choices[0].finish_reason in ("stop", "length")
    assert first.usage.prompt_tokens == expected and 1 <= first.usage.completion_tokens <= 4
    assert first.usage.total_tokens == expected + first.usage.completion_tokens
    assert first.usage.prompt_tokens_details.cached_tokens >= 0
    assert again.usage.prompt_tokens_details.cached_tokens > 0  # the same prompt: its blocks are cached
    assert again.choices[0].message.content == first.choices[0].message.content  # greedy


def test_a_follow_up_turn_hits_the_cache_through_the_reply_sent_back(engine_server, chat_model):
    server, engine = engine_server
    api = client(server)
    long_system = [{"role": "system", "content": "Answer in one word. " * 30}, *MESSAGES[1:]]
    first = api.chat.completions.create(model="tiny", messages=long_system, max_tokens=12, temperature=0)
    reply = first.choices[0].message
    sent_back = {"role": "assistant", "content": reply.content}  # as an OpenAI client keeps it
    follow_up = [*long_system, sent_back, {"role": "user", "content": "And then?"}]
    second = api.chat.completions.create(model="tiny", messages=follow_up, max_tokens=4, temperature=0)
    generated_until = first.usage.prompt_tokens + first.usage.completion_tokens
    block = engine.block_size
    # the prompt and the reply as generated, full blocks of both, come from the cache
    assert second.usage.prompt_tokens_details.cached_tokens == (generated_until - 1) // block * block
    assert second.usage.prompt_tokens > generated_until


def test_streaming_chat_matches_the_whole_answer(engine_server):
    server, _ = engine_server
    api = client(server)
    whole = api.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0)
    chunks = list(
        api.chat.completions.create(
            model="tiny",
            messages=MESSAGES,
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens is not None


def test_seeded_sampling_repeats(engine_server):
    api = client(engine_server[0])

    def sample(seed: int) -> str:
        reply = api.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=8, temperature=1.0, top_p=0.95, seed=seed
        )
        return reply.choices[0].message.content

    assert sample(7) == sample(7)


def test_completions_take_text_or_token_ids_and_stream(engine_server, chat_model):
    api = client(engine_server[0])
    ids = chat_model.tokenizer.encode("def mean(values):")
    by_text = api.completions.create(model="tiny", prompt="def mean(values):", max_tokens=5, temperature=0)
    by_ids = api.completions.create(model="tiny", prompt=ids, max_tokens=5, temperature=0)
    assert by_text.object == "text_completion" and by_text.choices[0].text == by_ids.choices[0].text
    assert by_text.usage.prompt_tokens == len(ids)
    streamed = list(
        api.completions.create(
            model="tiny",
            prompt=ids,
            max_tokens=5,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == by_ids.choices[0].text
    assert streamed[-1].usage.completion_tokens == by_ids.usage.completion_tokens


def test_models_and_health(engine_server):
    server, _ = engine_server
    assert [m.id for m in client(server).models.list().data] == ["tiny"]
    health = httpx.get(server.url.removesuffix("/v1") + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    reachable = httpx.head(server.url.removesuffix("/v1") + "/")  # what Claude Code asks first
    assert reachable.status_code == 200 and reachable.content == b""


def test_sixteen_clients_at_once_share_the_engine(engine_server):
    server, engine = engine_server
    api = client(server)
    steps_before = engine.stats.steps

    def ask(i: int) -> Any:
        return api.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": f"question {i}: what does mean() return?"}],
            max_tokens=4,
            temperature=0,
        )

    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(ask, range(16)))
    assert all(r.choices[0].finish_reason in ("stop", "length") for r in replies)
    assert all(1 <= r.usage.completion_tokens <= 4 for r in replies)
    assert engine.stats.steps - steps_before < 16 * 4  # batched: fewer steps than tokens
    assert wait_until(lambda: live_sequences(server) == 0)


def test_disconnecting_clients_free_their_sequences(engine_server):
    server, engine = engine_server
    api = client(server)
    decoded = engine.stats.decode_tokens
    stream = api.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=4000, temperature=0, stream=True
    )
    next(iter(stream))
    assert live_sequences(server) == 1
    stream.close()
    assert wait_until(lambda: live_sequences(server) == 0)
    # a non-streaming client that hangs up while its answer is being generated
    # greedy, as the stream above: sampled at temperature 1 the tiny model sometimes ended its
    # answer before the sequence could be seen live (a flaky failure in a full run)
    body = json.dumps({"model": "tiny", "messages": MESSAGES, "max_tokens": 4000, "temperature": 0}).encode()
    host, port = server.server_address[:2]
    with socket.create_connection((host, port)) as raw:
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        raw.sendall(head.encode() + body)
        assert wait_until(lambda: live_sequences(server) == 1)
    assert wait_until(lambda: live_sequences(server) == 0)
    assert wait_until(lambda: not engine.has_work())  # the engine itself holds no sequence either
    assert engine.stats.decode_tokens - decoded < 4000  # neither ran to its max_tokens


def test_the_tiny_models_greedy_answer_runs_long(engine_server):
    """What the disconnect test relies on: greedy, its answer does not end on its own soon."""
    server, _ = engine_server
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 200, "temperature": 0}
    assert post(server, "/chat/completions", body).json()["choices"][0]["finish_reason"] == "length"


def test_a_request_the_kv_pool_cannot_hold_is_a_400(engine_server):
    server, _ = engine_server
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 9000}  # the test pool holds 8192 tokens
    error = post(server, "/chat/completions", body).json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "max_tokens"


def test_the_agents_remote_client_works_against_serve(engine_server):
    server, _ = engine_server
    remote = RemoteClient(RemoteSettings(server.url, None, "tiny", max_tokens=6, max_retries=0))
    streamed: list[str] = []
    completion = remote.complete(MESSAGES, TOOLS, on_token=streamed.append)
    remote.close()
    assert completion.message["role"] == "assistant"
    assert "".join(streamed) == completion.message["content"]
    assert remote.last_usage_exact and completion.usage.prompt_tokens > 0
    assert 1 <= completion.usage.completion_tokens <= 6


# the scripted service: exact text


def test_tool_calls_stream_as_openai_argument_deltas(scripted):
    server, _ = scripted(CALL_TEXT)
    chunks = list(
        client(server).chat.completions.create(model="tiny", messages=MESSAGES, tools=TOOLS, stream=True)
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    calls = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    assert content == "Let me look."
    assert calls[0].id.startswith("call_") and calls[0].type == "function"
    assert calls[0].function.name == "read_file" and calls[0].function.arguments == ""
    assert all(call.index == 0 and call.id is None for call in calls[1:])
    arguments = "".join(call.function.arguments for call in calls)
    assert json.loads(arguments) == {"path": "stats.py", "start_line": 3}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_calls_in_a_whole_reply(scripted):
    server, _ = scripted(CALL_TEXT)
    reply = client(server).chat.completions.create(model="tiny", messages=MESSAGES, tools=TOOLS)
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls" and message.content == "Let me look."
    assert message.tool_calls[0].function.name == "read_file"
    assert json.loads(message.tool_calls[0].function.arguments) == {"path": "stats.py", "start_line": 3}


def test_tool_choice_none_renders_without_tools_and_parses_no_calls(scripted, chat_model):
    server, service = scripted(CALL_TEXT)
    reply = client(server).chat.completions.create(
        model="tiny", messages=MESSAGES, tools=TOOLS, tool_choice="none"
    )
    assert reply.choices[0].message.tool_calls is None
    assert "<tool_call>" in reply.choices[0].message.content
    assert "read_file" not in chat_model.tokenizer.decode(service.prompts[-1])


def test_a_named_tool_choice_is_forced_by_prefill(scripted, chat_model):
    rest = "<parameter=path>\nstats.py\n</parameter>\n</function>\n</tool_call>"
    server, service = scripted(rest)
    choice = {"type": "function", "function": {"name": "read_file"}}
    reply = client(server).chat.completions.create(
        model="tiny", messages=MESSAGES, tools=TOOLS, tool_choice=choice
    )
    prompt = chat_model.tokenizer.decode(service.prompts[-1])
    assert prompt.endswith("<|im_start|>assistant\n<tool_call>\n<function=read_file>\n")
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "read_file" and json.loads(call.function.arguments) == {"path": "stats.py"}


def test_stop_strings_cut_the_text_and_cancel_the_sequence(scripted):
    server, service = scripted("Hello world. STOP and more text that is never sent " * 3, delay_s=0.01)
    api = client(server)
    reply = api.chat.completions.create(model="tiny", messages=MESSAGES, stop=["STOP"])
    assert reply.choices[0].message.content == "Hello world. " and reply.choices[0].finish_reason == "stop"
    assert service.streams[-1].cancelled.is_set()
    chunks = list(api.chat.completions.create(model="tiny", messages=MESSAGES, stop="STOP", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello world. "
    assert wait_until(lambda: service.live == 0)


def test_a_slow_stream_is_cancelled_when_its_client_leaves(scripted):
    server, service = scripted("word " * 400, delay_s=0.02)
    stream = client(server).chat.completions.create(model="tiny", messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    assert wait_until(lambda: service.live == 0)
    assert service.streams[-1].cancelled.is_set()


# errors and keys


def post(server: OpenAIServer, path: str, body: Any, key: str | None = None) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    return httpx.post(server.url + path, content=raw, headers=headers, timeout=30)


def test_malformed_requests_get_openai_shaped_4xx(scripted):
    server, service = scripted("fine")
    chat = {"model": "tiny", "messages": MESSAGES}
    cases = [
        ("/chat/completions", b"{not json", 400, None),
        ("/chat/completions", [1, 2], 400, None),
        ("/chat/completions", {"model": "tiny"}, 400, "messages"),
        ("/chat/completions", {**chat, "messages": "hi"}, 400, "messages"),
        (
            "/chat/completions",
            {**chat, "messages": [{"role": "wizard", "content": "x"}]},
            400,
            "messages[0].role",
        ),
        ("/chat/completions", {**chat, "model": "gpt-9"}, 404, "model"),
        ("/chat/completions", {**chat, "n": 2}, 400, "n"),
        ("/chat/completions", {**chat, "temperature": "hot"}, 400, "temperature"),
        ("/chat/completions", {**chat, "temperature": 3}, 400, "temperature"),
        ("/chat/completions", {**chat, "max_tokens": 0}, 400, "max_tokens"),
        ("/chat/completions", {**chat, "seed": 2**64}, 400, "seed"),
        ("/chat/completions", {**chat, "stream": "yes"}, 400, "stream"),
        ("/chat/completions", {**chat, "stop": [1]}, 400, "stop"),
        ("/chat/completions", {**chat, "tools": [{"type": "function"}]}, 400, "tools[0]"),
        ("/chat/completions", {**chat, "tool_choice": "required"}, 400, "tool_choice"),
        (
            "/chat/completions",
            {**chat, "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "x"}}},
            400,
            "tool_choice",
        ),
        ("/completions", {"model": "tiny", "prompt": [5] * 40000}, 400, "prompt"),
        ("/completions", {"model": "tiny", "prompt": [10**9]}, 400, "prompt"),
        ("/completions", {"model": "tiny", "prompt": {"a": 1}}, 400, "prompt"),
        ("/nowhere", {}, 404, None),
    ]
    for path, body, status, param in cases:
        response = post(server, path, body)
        assert response.status_code == status, (path, body, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        assert error["param"] == param, (body, error)
    too_long = post(server, "/completions", {"model": "tiny", "prompt": [5] * 40000}).json()["error"]
    assert too_long["code"] == "context_length_exceeded"
    assert httpx.get(server.url + "/chat/completions").status_code == 405
    assert service.prompts == []  # nothing malformed reached the engine
    assert post(server, "/chat/completions", chat).status_code == 200


def test_the_api_key_is_enforced(scripted):
    server, _ = scripted("fine", api_key=KEY)
    with pytest.raises(openai.AuthenticationError):
        client(server, "wrong").chat.completions.create(model="tiny", messages=MESSAGES)
    missing = post(server, "/chat/completions", {"model": "tiny", "messages": MESSAGES})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    reply = client(server, KEY).chat.completions.create(model="tiny", messages=MESSAGES)
    assert reply.choices[0].message.content == "fine"
    assert httpx.get(server.url.removesuffix("/v1") + "/health").status_code == 200


def test_engine_failures_are_a_500_or_an_error_event(scripted):
    server, _ = scripted("half an answer", error="the engine failed: RuntimeError: out of memory")
    whole = post(server, "/chat/completions", {"model": "tiny", "messages": MESSAGES})
    assert whole.status_code == 500 and whole.json()["error"]["code"] == "engine_error"
    assert "out of memory" in whole.json()["error"]["message"]
    body = {"model": "tiny", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", server.url + "/chat/completions", json=body, timeout=30) as response:
        events = [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]
    assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["code"] == "engine_error"
    assert "half an answer" in "".join(
        (json.loads(e)["choices"] or [{}])[0].get("delta", {}).get("content") or "" for e in events[:-2]
    )


class BrokenService:
    """A service with a bug in it."""

    def submit(self, prompt_ids: list[int], params: Any) -> Any:
        raise KeyError("a bug")


def test_a_bug_is_a_500_with_its_traceback_only_on_the_server(chat_model, capfd):
    server = OpenAIServer(("127.0.0.1", 0), chat_model, BrokenService())
    serve(server)
    try:
        response = post(server, "/chat/completions", {"model": "tiny", "messages": MESSAGES})
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert "Traceback" not in response.text and "a bug" not in response.text
    assert "Traceback" in capfd.readouterr().err


def test_exposure_warning_only_for_open_addresses_without_a_key():
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("localhost", None) is None and exposure_warning("0.0.0.0", KEY) is None
    assert "WARNING" in (exposure_warning("0.0.0.0", None) or "")


# the command


def codeagent(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_serve_errors_are_one_line(tmp_path, qwen3_moe_dir):
    for argv, needle in [
        (["--model", str(tmp_path / "none")], "no checkpoint folder"),
        (["--model", str(qwen3_moe_dir)], "no tokenizer.json"),
        (["--model", str(qwen3_moe_dir), "--port", "70000"], "--port"),
    ]:
        proc = codeagent("serve", *argv)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("codeagent: error:") and needle in lines[0]


def test_serve_command_answers_and_stops_on_sigint(tiny_chat_model):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "codeagent.tui.cli",
            "serve",
            "--model",
            str(tiny_chat_model),
            "--port",
            "0",
            "-q",
            "--kv-cache-gb",
            "0.01",
            "--grace",
            "1",
            "--max-connections",
            "8",
            "--idle-timeout",
            "5",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert "serving qwen3chat" in line, line
        url = line.split(" at ")[1].split()[0]
        reply = openai.OpenAI(base_url=url, api_key="x", max_retries=0).chat.completions.create(
            model=Path(tiny_chat_model).name, messages=MESSAGES, max_tokens=2
        )
        assert reply.usage.completion_tokens >= 1
        proc.send_signal(2)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
