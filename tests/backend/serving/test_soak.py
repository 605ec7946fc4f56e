"""A soak of ``codeagent serve``'s server: the real engine over a tiny checkpoint in a process of
its own (``soak_server.py``), ``REQUESTS`` requests from ``CLIENTS`` clients at once, every kind
mixed: whole and streamed answers of each protocol, clients that leave mid-stream, malformed
bodies, bodies too large, a client that half-closes; then SIGTERM with streams in flight.

Asserted: every request answered whole or refused with a clear 4xx; no connection reset;
the server's RSS back near its baseline; every KV block free and no request left (``/health``);
on SIGTERM every stream ends with its final event or its protocol's error event, and the
process exits 0. The counts are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

REQUESTS = 400
CLIENTS = 32
MESSAGES = [{"role": "user", "content": "Fix the mean of the values in stats.py, please."}]
CHAT = {"model": "tiny", "messages": MESSAGES, "max_tokens": 8}


class Soak:
    def __init__(self, url: str, proc: subprocess.Popen[str]) -> None:
        self.url, self.proc = url, proc
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.local = threading.local()

    def client(self) -> httpx.Client:
        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(base_url=self.url, timeout=60)  # keep-alive, per thread
        return self.local.client

    def post(self, path: str, body: Any) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client().post(path, content=raw, headers={"Content-Type": "application/json"})

    def stream_end(self, path: str, body: dict[str, Any], started: threading.Semaphore | None = None) -> str:
        """The last lines of an event stream read to its end; ``started`` released at its first."""
        lines: list[str] = []
        with self.client().stream("POST", path, json={**body, "stream": True}) as reply:
            assert reply.status_code == 200, reply.read()
            for line in reply.iter_lines():
                if line.startswith(("data:", "event:")):
                    lines.append(line)
                    if started is not None and len(lines) == 1:
                        started.release()
        return "\n".join(lines[-3:])

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(self.url.removesuffix("/v1") + "/health", timeout=30).json())

    def status(self, field: str) -> int:
        """A number from the server's /proc status (``VmRSS`` in KiB, ``Threads``)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith(field + ":")).split()[1])

    def rss_mb(self) -> float:
        return self.status("VmRSS") / 1024

    def count_threads(self, stop: threading.Event, most: list[int]) -> None:
        while not stop.wait(0.01):
            most[0] = max(most[0], self.status("Threads"))

    def raw(self, path: str, body: dict[str, Any], then: Callable[[socket.socket], str]) -> str:
        data = json.dumps(body).encode()
        head = f"POST /v1{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        with socket.create_connection(self.address, timeout=60) as sock:
            sock.sendall(head.encode() + data)
            return then(sock)


def leave_mid_stream(sock: socket.socket) -> str:
    while b"data:" not in sock.recv(4096):
        pass
    return "left"


def half_close(sock: socket.socket) -> str:
    sock.shutdown(socket.SHUT_WR)
    raw = b""
    while data := sock.recv(65536):
        raw += data
    final = raw.decode()[raw.decode().index("HTTP/1.1 200") :]
    assert json.loads(final.split("\r\n\r\n", 1)[1])["usage"]["completion_tokens"] >= 1
    return "answered"


def refused(reply: httpx.Response, status: int) -> str:
    assert reply.status_code == status and reply.json()["error"]["message"], reply.text
    return f"refused {status}"


MALFORMED = [
    b"{not json",
    b'{"model": "tiny", "messages": [{"role": "user", "content": "\\udc00"}]}',
    json.dumps({**CHAT, "max_tokens": 10**9}).encode(),
    json.dumps({"model": "tiny"}).encode(),
]


def one_request(soak: Soak, i: int) -> str:
    if i in (REQUESTS // 3, 2 * REQUESTS // 3):  # a large body: refused before it is parsed
        return refused(soak.post("/chat/completions", b'"' + b"a" * (31 * 2**20) + b'"'), 413)
    if i == REQUESTS // 2:  # text no tokenizer fits in the window: refused before it is tokenized
        huge = {**CHAT, "messages": [{"role": "user", "content": "ab" * 300_000}]}
        return refused(soak.post("/chat/completions", huge), 400)
    kind = i % 10
    if kind == 0:
        return "answered" if soak.post("/chat/completions", CHAT).json()["choices"] else "?"
    if kind == 1:
        end = soak.stream_end("/chat/completions", CHAT)
        assert '"finish_reason": "' in end and end.endswith("[DONE]"), end
        return "answered"
    if kind == 2:
        assert "message_stop" in soak.stream_end("/messages", CHAT)
        return "answered"
    if kind == 3:
        reply = soak.post("/responses", {"model": "tiny", "input": "hi", "max_output_tokens": 8}).json()
        return "answered" if reply["status"] in ("completed", "incomplete") else "?"
    if kind == 4:
        reply = soak.post("/completions", {"model": "tiny", "prompt": "def mean(", "max_tokens": 8})
        return "answered" if reply.json()["choices"] else "?"
    if kind == 5:
        return soak.raw("/chat/completions", {**CHAT, "max_tokens": 200, "stream": True}, leave_mid_stream)
    if kind == 6:
        return refused(soak.post("/chat/completions", MALFORMED[i // 10 % len(MALFORMED)]), 400)
    if kind == 7:
        return soak.raw("/chat/completions", CHAT, half_close)
    if kind == 8:
        return "answered" if soak.health()["status"] == "ok" else "?"
    return "answered" if soak.post("/messages", CHAT).json()["content"] is not None else "?"


def attempt(soak: Soak, i: int) -> str:
    try:
        return one_request(soak, i)
    except (httpx.HTTPError, OSError) as err:  # a reset, a refused connection, a timeout
        return f"failed: {type(err).__name__}: {err}"


def connect_at_once(soak: Soak, barrier: threading.Barrier) -> float:
    """Connect when every client does, ask for /health: the seconds the connection took."""
    barrier.wait(timeout=30)
    started = time.monotonic()
    with socket.create_connection(soak.address, timeout=30) as sock:
        took = time.monotonic() - started
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(12) == b"HTTP/1.1 200"
    return took


@pytest.fixture
def soak(tiny_chat_model: Path) -> Iterator[Soak]:
    script = Path(__file__).with_name("soak_server.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tiny_chat_model), "1.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = proc.stdout.readline().strip() if proc.stdout else ""
        assert url.startswith("http://"), proc.stderr.read() if proc.stderr else url
        yield Soak(url, proc)
    finally:
        proc.kill()
        proc.wait()


def drain_on_sigterm(soak: Soak) -> tuple[Counter[str], str]:
    """Streams in flight, then SIGTERM: how each ended, and the server's last words."""
    ends: Counter[str] = Counter()
    long = {"max_tokens": 3000, "temperature": 0}
    streams = [
        ("/chat/completions", {**CHAT, **long}),
        ("/chat/completions", {**CHAT, **long}),
        ("/messages", {**CHAT, **long}),
        ("/responses", {"model": "tiny", "input": "hi", "max_output_tokens": 3000, "temperature": 0}),
        ("/chat/completions", {**CHAT, "max_tokens": 30}),
    ]

    started = threading.Semaphore(0)

    def follow(path: str, body: dict[str, Any]) -> None:
        try:
            end = soak.stream_end(path, body, started)
        except httpx.HTTPError as err:  # counted, so a failure says which stream and how
            ends[f"{path} raised {type(err).__name__}: {err}"] += 1
            return
        if "shutting down" in end:
            ends["error event"] += 1
        elif end.endswith("[DONE]") or "message_stop" in end or "response.completed" in end:
            ends["final event"] += 1
        else:
            ends[f"cut: {end}"] += 1

    threads = [threading.Thread(target=follow, args=stream) for stream in streams]
    for thread in threads:
        thread.start()
    for _ in streams:
        assert started.acquire(timeout=30)
    soak.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(30)
    assert soak.proc.wait(timeout=30) == 0
    return ends, soak.proc.stderr.read() if soak.proc.stderr else ""


def test_the_server_holds_under_a_soak_and_drains_on_sigterm(soak):
    started = time.monotonic()
    for i in range(20):  # warm up every path once before the baseline
        assert not attempt(soak, i).startswith("failed")
    baseline = soak.rss_mb()
    barrier, stop, idle = threading.Barrier(CLIENTS), threading.Event(), soak.status("Threads")
    threads = [idle]
    counter = threading.Thread(target=soak.count_threads, args=(stop, threads))
    counter.start()
    with ThreadPoolExecutor(CLIENTS) as pool:
        slowest_connect = max(pool.map(lambda _: connect_at_once(soak, barrier), range(CLIENTS)))
        outcomes = Counter(pool.map(lambda i: attempt(soak, i), range(REQUESTS)))
    stop.set()
    counter.join()
    deadline = time.monotonic() + 10
    while (health := soak.health())["requests"] and time.monotonic() < deadline:
        time.sleep(0.05)
    after = soak.rss_mb()
    print(f"\nsoak: {dict(outcomes)}; slowest of {CLIENTS} connects at once {slowest_connect:.3f} s")
    print(f"RSS {baseline:.0f} -> {after:.0f} MiB; threads {idle} -> at most {threads[0]}; health {health}")
    assert not [o for o in outcomes if o.startswith("failed") or o == "?"], outcomes
    assert sum(outcomes.values()) == REQUESTS
    assert slowest_connect < 0.5  # queued by the listen backlog, not dropped and sent again a second later
    assert health["requests"] == 0 and health["kv_blocks_free"] == health["kv_blocks"]
    assert after < baseline + 150, (baseline, after)
    assert threads[0] <= idle + 2 * CLIENTS + 2  # one per connection (each client holds two at most)
    ends, last_words = drain_on_sigterm(soak)
    print(f"drain: {dict(ends)}; {last_words.strip().splitlines()[-1:]}; {time.monotonic() - started:.1f} s")
    assert set(ends) <= {"final event", "error event"} and sum(ends.values()) == 5, ends
    assert "Traceback" not in last_words
