"""Noticing clients that leave while their answer is being generated, on one thread for all.

A request being answered registers its socket (``PeerWatch.watch``) with two callbacks:
``cancel`` (end its generation) and ``probe`` (write a few bytes its protocol lets a reader
ignore). One daemon thread polls every registered socket; nothing is spent per request but
a dict entry.

The rule (a half-closed peer can still read, so end of file alone is not "gone"):
- an error or a reset on the socket (``POLLERR``/``POLLHUP``, or ``ECONNRESET`` on a peek):
  gone, cancel;
- end of file: probe. A peer that has really closed answers the probe with a reset, which
  the next poll reports; a peer that only shut down its sending side reads the probe and
  then its answer. A probe that cannot be written (the answer is being written, or the
  protocol has no place for one) is tried again on the next round;
- data (a pipelined request): the peer is there; only errors are watched from then on.

The probes (``http_handler``): an interim ``HTTP/1.1 100 Continue`` before the answer has
begun, an SSE comment line (``: probe``) inside an event stream.

Limits: a half-closed HTTP/1.0 client waiting for a whole answer cannot be probed (1.0 has
no interim responses), so its request runs to the end and the final write tells; a peer
that half-closes, reads the probe and closes later is noticed by its stream's next writes,
or for a whole answer only when it is sent. Polling runs every ``INTERVAL_S`` while
anything is watched, so a registration or a reset is seen within that long.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

INTERVAL_S = 0.1
_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL


@dataclass(eq=False, slots=True)
class Watched:
    sock: socket.socket
    probe: Callable[[], bool | None]  # True: written, False: the write failed, None: not now
    cancel: Callable[[], None]
    fd: int = -1
    eof: bool = False  # the peer's end of file was seen; a probe is due
    probed: bool = False


class PeerWatch:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._added: list[Watched] = []
        self._removed: list[Watched] = []
        self._watched: dict[int, Watched] = {}
        self._count = 0  # registered and not yet removed, for the thread's sleep
        self._thread: threading.Thread | None = None

    def watch(
        self, sock: socket.socket, probe: Callable[[], bool | None], cancel: Callable[[], None]
    ) -> Watched:
        watched = Watched(sock, probe, cancel)
        with self._lock:
            self._added.append(watched)
            self._count += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="codeagent-peer-watch", daemon=True)
                self._thread.start()
            self._lock.notify()
        return watched

    def unwatch(self, watched: Watched) -> None:
        with self._lock:
            self._removed.append(watched)
            self._count -= 1

    def _run(self) -> None:
        poller = select.poll()  # not select(): it fails on descriptors above 1023
        while True:
            with self._lock:
                while self._count == 0 and not self._removed:
                    self._lock.wait()
                added, self._added = self._added, []
                removed, self._removed = self._removed, []
            self._apply(poller, added, removed)
            for fd, events in poller.poll(INTERVAL_S * 1000):
                watched = self._watched.get(fd)
                if watched is not None:
                    self._event(poller, watched, events)
            for watched in [w for w in self._watched.values() if w.eof and not w.probed]:
                self._probe(poller, watched)

    def _apply(self, poller: select.poll, added: list[Watched], removed: list[Watched]) -> None:
        gone = set(removed)
        for watched in added:
            if watched in gone:
                continue  # over before it was ever polled
            try:
                watched.fd = watched.sock.fileno()
                poller.register(watched.fd, select.POLLIN)
            except (OSError, ValueError):
                continue  # already closed: the request is over
            self._watched[watched.fd] = watched
        for watched in removed:
            if self._watched.get(watched.fd) is watched:
                del self._watched[watched.fd]
                poller.unregister(watched.fd)

    def _event(self, poller: select.poll, watched: Watched, events: int) -> None:
        if events & _GONE:
            self._gone(poller, watched)
            return
        try:
            data = peek(watched.sock)
        except BlockingIOError:
            return
        except (OSError, ValueError):  # reset, or closed under us
            self._gone(poller, watched)
            return
        poller.modify(watched.fd, 0)  # from now on only errors and resets wake us
        if not data:
            watched.eof = True
            self._probe(poller, watched)

    def _probe(self, poller: select.poll, watched: Watched) -> None:
        written = watched.probe()
        if written is False:
            self._gone(poller, watched)
        elif written:
            watched.probed = True

    def _gone(self, poller: select.poll, watched: Watched) -> None:
        del self._watched[watched.fd]
        poller.unregister(watched.fd)
        watched.cancel()


def peek(sock: socket.socket) -> bytes:
    """The next byte the peer sent, left unread (b"" at its end of file), never waiting:
    BlockingIOError when there is none. Through a duplicate descriptor, because a socket with a
    timeout (the handler's) first waits up to that timeout for data, MSG_DONTWAIT or not: the
    one watching thread would then stall while the handler read what the poll had reported."""
    duplicate = socket.socket(fileno=os.dup(sock.fileno()))
    try:
        duplicate.setblocking(False)
        return duplicate.recv(1, socket.MSG_PEEK)
    finally:
        duplicate.close()


def send_probe(sock: socket.socket, data: bytes) -> bool | None:
    """Write ``data`` if the socket has room now: True when written, False when the peer is
    gone, None when its buffer is full (a peer not reading: try later, never wait here)."""
    room = select.poll()
    try:
        room.register(sock, select.POLLOUT)
        if not room.poll(0):
            return None
        sock.sendall(data)  # writable means a third of the buffer is free: a probe fits at once
    except (OSError, ValueError):
        return False
    return True
