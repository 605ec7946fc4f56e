"""``codeagent serve`` under abuse, one fault at a time, over the scripted service: limits
checked before any tokenizing, clients that half-close or reset, connections over the limit,
idle keep-alive connections, and draining on shutdown. The whole mix at once, on the real
engine in a process of its own, is ``test_soak.py``.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from typing import Any

import httpx
import pytest

from codeagent.backend.serving.peer_watch import peek
from codeagent.backend.serving.server import OpenAIServer

MESSAGES = [{"role": "user", "content": "Fix the mean."}]
CHAT = {"model": "tiny", "messages": MESSAGES}


def post(server: OpenAIServer, path: str, body: Any) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        server.url + path, content=raw, headers={"Content-Type": "application/json"}, timeout=30
    )


def request_bytes(path: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while data := sock.recv(65536):
        out += data
    return out


def wait_until(condition: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_limits_are_checked_before_the_prompt_is_tokenized(scripted):
    server, service = scripted("fine")
    surrogate = b'{"model": "tiny", "messages": [{"role": "user", "content": "a\\ud800b"}]}'
    for path in ("/chat/completions", "/messages"):
        reply = post(server, path, surrogate)
        assert reply.status_code == 400 and "surrogate" in reply.text, reply.text
    for path, name, extra in [
        ("/chat/completions", "max_tokens", {}),
        ("/chat/completions", "max_completion_tokens", {}),
        ("/completions", "max_tokens", {"prompt": "hi"}),
        ("/messages", "max_tokens", {}),
        ("/responses", "max_output_tokens", {"input": "hi"}),
    ]:
        reply = post(server, path, {**CHAT, **extra, name: 10**9})
        assert reply.status_code == 400 and "32768" in reply.text, (path, reply.text)
    started = time.monotonic()
    huge = {**CHAT, "messages": [{"role": "user", "content": "a" * (32768 * 16 + 1)}]}
    reply = post(server, "/chat/completions", huge)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "context_length_exceeded"
    too_big = post(server, "/chat/completions", b"[" + b" " * (9 * 2**20) + b"]")
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "body_too_large"
    deep = post(server, "/chat/completions", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert deep.status_code == 400 and "nested" in deep.text
    assert time.monotonic() - started < 10
    assert service.prompts == []  # none of it was rendered into a prompt
    assert post(server, "/chat/completions", {**CHAT, "max_tokens": 32768}).status_code == 200  # clipped


def test_a_half_closed_client_still_gets_its_whole_answer(scripted):
    server, service = scripted("word " * 8, delay_s=0.02)
    host, port = server.server_address[:2]
    for stream in (False, True):
        with socket.create_connection((host, port)) as sock:
            sock.sendall(request_bytes("/v1/chat/completions", {**CHAT, "stream": stream}))
            sock.shutdown(socket.SHUT_WR)  # sent all it will send; still reading
            raw = read_all(sock).decode()
        final = raw[raw.index("HTTP/1.1 200") :]
        if stream:
            assert final.rstrip().endswith("0") and "data: [DONE]" in final
            assert '"finish_reason": "stop"' in final
        else:
            answer = json.loads(final.split("\r\n\r\n", 1)[1])
            assert answer["choices"][0]["message"]["content"] == "word " * 8
            assert answer["choices"][0]["finish_reason"] == "stop"
    assert not any(s.cancelled.is_set() for s in service.streams)


def test_a_client_that_closes_while_waiting_is_cancelled(scripted):
    server, service = scripted("word " * 400, delay_s=0.02)
    with socket.create_connection(server.server_address[:2]) as sock:
        sock.sendall(request_bytes("/v1/chat/completions", CHAT))
        assert wait_until(lambda: service.live == 1)
    assert wait_until(lambda: service.live == 0, 5)  # end of file, a probe, a reset: gone
    assert service.streams[-1].cancelled.is_set()


def test_connections_over_the_limit_get_a_503_and_idle_ones_are_closed(scripted):
    server, _ = scripted("fine", max_connections=2, idle_timeout_s=0.5)
    host, port = server.server_address[:2]
    idle = [socket.create_connection((host, port)) for _ in range(2)]
    assert wait_until(lambda: server.connections.in_flight() == 0)
    time.sleep(0.1)  # both accepted
    refused = post(server, "/messages", {**CHAT, "max_tokens": 4})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert refused.json()["type"] == "error" and "limit of 2" in refused.text  # Anthropic's shape
    for sock in idle:  # the idle timeout closes them, freeing their slots
        sock.settimeout(5)
        assert sock.recv(1) == b""
        sock.close()
    assert wait_until(lambda: post(server, "/chat/completions", CHAT).status_code == 200)


def test_a_client_reset_is_one_line_at_most(scripted, capfd):
    server, _ = scripted("fine", log_requests=True)
    host, port = server.server_address[:2]
    for send in (
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        request_bytes("/v1/chat/completions", CHAT)[:60],
    ):
        sock = socket.create_connection((host, port))
        sock.sendall(send)
        time.sleep(0.2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset: an idle keep-alive connection, then one in the middle of a body
    time.sleep(0.3)
    assert httpx.get(server.url.removesuffix("/v1") + "/health").status_code == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and err.count("connection ended") <= 2, err


def test_draining_lets_short_requests_finish_and_ends_long_streams_with_an_error(scripted):
    server, service = scripted("word " * 300, delay_s=0.02, grace_s=1.0)
    ends: dict[str, str] = {}

    def whole() -> None:
        ends["whole"] = post(server, "/chat/completions", CHAT).text

    def stream(path: str, body: dict[str, Any], key: str) -> None:
        with httpx.stream("POST", server.url + path, json={**body, "stream": True}, timeout=30) as reply:
            lines = [line for line in reply.iter_lines() if line.startswith(("data:", "event:"))]
        ends[key] = "\n".join(lines[-3:])

    threads = [
        threading.Thread(target=stream, args=("/chat/completions", {**CHAT, "max_tokens": 25}, "short")),
        threading.Thread(target=stream, args=("/chat/completions", CHAT, "openai")),
        threading.Thread(target=stream, args=("/messages", {**CHAT, "max_tokens": 1000}, "anthropic")),
        threading.Thread(target=stream, args=("/responses", {"model": "tiny", "input": "hi"}, "responses")),
        threading.Thread(target=whole),
    ]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: server.connections.in_flight() == 5)
    time.sleep(0.2)
    server.shutdown()
    assert server.drain() == (1, 4)
    for thread in threads:
        thread.join(10)
    assert '"finish_reason": "stop"' in ends["short"] and ends["short"].endswith("[DONE]")
    assert '"code": "shutting_down"' in ends["openai"] and ends["openai"].endswith("[DONE]")
    assert "event: error" in ends["anthropic"] and "shutting down" in ends["anthropic"]
    assert "shutting down" in ends["responses"]
    assert json.loads(ends["whole"])["error"]["code"] == "shutting_down"
    assert wait_until(lambda: service.live == 0)


def test_a_long_text_is_encoded_as_a_short_one_would_be(chat_model):
    text = "def mean(values):\n    return sum(values) / len(values)\n" * 400  # over LONG_TEXT
    assert (
        chat_model.tokenizer.encode(text)
        == chat_model.tokenizer.inner.encode(text, add_special_tokens=False).ids
    )


def test_the_peer_watch_peek_never_waits_on_a_socket_with_a_timeout():
    """The watching thread's peek returns at once where a plain recv with MSG_DONTWAIT on a socket
    with a timeout waits for data (it stalled every client's watch while a keep-alive
    connection's next request was read by its handler)."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.settimeout(5.0)  # as the handler's connection has
        started = time.monotonic()
        with pytest.raises(BlockingIOError):
            peek(ours)
        assert time.monotonic() - started < 0.5
        theirs.sendall(b"x")
        assert peek(ours) == b"x" and ours.recv(1) == b"x"  # left unread by the peek
        theirs.close()
        assert peek(ours) == b""  # end of file
