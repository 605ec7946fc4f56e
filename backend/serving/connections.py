"""The server's connections: a bounded number of them, refusals, closing, draining.

``Connections`` counts what the server holds. Each accepted connection takes a slot and its
own thread (``ThreadingHTTPServer``); over ``limit`` a connection is refused on a short-lived
thread of its own (at most ``MAX_REFUSING`` at once; past that it is simply closed) with a
503 and ``Retry-After``: its request head is read first, so the client reads the answer
instead of a reset. Idle keep-alive connections are dropped after the server's idle timeout
(``http_handler``), so slots come back.

Closing is lingering (``linger_close``): shut down the sending side, then read and discard
what the peer still sends (an unread body, say) until it closes or ``LINGER_S`` pass. A
socket closed with unread data in it sends a reset, and the client would see that instead of
the answer it was sent (a 413, a 503).

Draining (``drain``, on SIGTERM): new requests are refused with a 503 while those in flight
finish; after the grace period the rest are aborted (``Abortable.abort``: a stream ends with
its protocol's error event, a whole answer is a 503) and given a moment to say so.

Limits: the slot limit counts connections, idle ones included; a request's own duration is
bounded only by its ``max_tokens``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

LINGER_S = 2.0
MAX_REFUSING = 32
HEAD_BYTES = 65536  # the most of a refused request's head that is read


class Abortable(Protocol):
    """A request in flight (``http_handler.Handler``)."""

    def abort(self) -> None: ...


class Connections:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.draining = False
        self._lock = threading.Condition()
        self._open = 0
        self._refusing = 0
        self._busy: set[Abortable] = set()

    def take(self) -> bool:
        """A slot for a new connection, if one is free."""
        with self._lock:
            if self._open >= self.limit:
                return False
            self._open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._open -= 1

    def take_refusal(self) -> bool:
        with self._lock:
            if self._refusing >= MAX_REFUSING:
                return False
            self._refusing += 1
            return True

    def refused(self) -> None:
        with self._lock:
            self._refusing -= 1

    def begin(self, request: Abortable) -> bool:
        """Count ``request`` as in flight; False while draining (it is to be refused)."""
        with self._lock:
            if self.draining:
                return False
            self._busy.add(request)
            return True

    def end(self, request: Abortable) -> None:
        with self._lock:
            self._busy.discard(request)
            self._lock.notify_all()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._busy)

    def drain(self, grace_s: float, settle_s: float = 5.0) -> tuple[int, int]:
        """Let requests in flight finish for ``grace_s``, then abort the rest and wait up to
        ``settle_s`` for them to end. Returns (finished, aborted); an interrupt ends the grace."""
        with self._lock:
            self.draining = True
            started = len(self._busy)
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C or SIGTERM: no more grace
            self._wait_idle(grace_s)
        with self._lock:
            left = list(self._busy)
        for request in left:
            request.abort()
        self._wait_idle(settle_s)
        return started - len(left), len(left)

    def _wait_idle(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._busy and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)


def read_head(sock: socket.socket, timeout_s: float = LINGER_S) -> bytes:
    """A request's head (up to its blank line), or what came of it within ``timeout_s``."""
    sock.settimeout(timeout_s)
    head = b""
    while b"\r\n\r\n" not in head and len(head) < HEAD_BYTES:
        data = sock.recv(4096)
        if not data:
            break
        head += data
    return head


def refuse(sock: socket.socket, answer: Callable[[bytes], bytes], done: Callable[[], None]) -> None:
    """Answer a connection over the limit: its head read, ``answer(head)`` sent, closed lingering."""
    try:
        sock.sendall(answer(read_head(sock)))
    except OSError:
        pass  # gone already
    finally:
        linger_close(sock)
        done()


def linger_close(sock: socket.socket, linger_s: float = LINGER_S) -> None:
    """Close without a reset: stop sending, discard what still comes until end of file."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + linger_s
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65536):
                break
    except OSError:
        pass  # reset, timed out or never connected: nothing more to do
    finally:
        sock.close()
