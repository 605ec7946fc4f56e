"""``wire``: a real HTTP server on 127.0.0.1 that plays back queued replies the way a model
provider sends them (JSON bodies, server-sent events with event names, errors with headers)
and records every request, for the provider clients' tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Played:
    status: int = 200
    body: Any = None  # a JSON value, sent as application/json
    events: list[tuple[str, dict[str, Any]]] | None = None  # (event name or "", payload): an SSE stream
    headers: dict[str, str] = field(default_factory=dict)
    split: bool = False  # send every event in two writes, cut mid-line


class WireServer:
    """Replies are played in the order queued; each request is kept as path, headers, body."""

    def __init__(self) -> None:
        self.url = ""
        self.played: list[Played] = []
        self.requests: list[dict[str, Any]] = []

    def json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.played.append(Played(status, body, headers=headers or {}))

    def sse(self, events: list[tuple[str, dict[str, Any]]], split: bool = False) -> None:
        self.played.append(Played(events=events, split=split))

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [request["body"] for request in self.requests]


def _handler(server: WireServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._record(None)

        def do_POST(self) -> None:
            self._record(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

        def _record(self, body: Any) -> None:
            server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            played = server.played.pop(0) if server.played else Played(500, {"error": "no reply left"})
            self.send_response(played.status)
            for name, value in played.headers.items():
                self.send_header(name, value)
            if played.events is None:
                raw = json.dumps(played.body).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                return
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.end_headers()
            for name, payload in played.events:
                text = (f"event: {name}\n" if name else "") + f"data: {json.dumps(payload)}\n\n"
                cut = len(text) // 2 if played.split else len(text)
                for part in (text[:cut], text[cut:]):
                    self.wfile.write(part.encode())
                    self.wfile.flush()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def wire() -> Iterator[WireServer]:
    state = WireServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
