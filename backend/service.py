"""The engine on a background thread, shared by many callers (the server, parallel agents).

``submit`` hands a request to the engine's thread and returns an ``EngineStream`` (the
``TokenStream`` that ``generation.py`` reads) that yields the sampled token ids as they come;
``cancel`` (any thread) aborts it, and the engine frees its sequence at the next step. The
thread admits new requests between steps, so submissions join the running batch
(continuous batching) rather than waiting for it.
A request the engine can never serve is refused in ``submit`` with ValueError; if a step
fails (a bug, out of device memory), every request in flight ends with
``finish_reason="error"`` and the message, and the service keeps serving; but if a rank of
a split engine is gone (``GroupFailed``) nothing more can be computed: what is in flight
fails, ``broken`` says why, new submissions are refused and ``on_broken`` is told (the
server stops and exits non-zero).
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable, Iterator

from codeagent.backend.distributed.runner import GroupFailed
from codeagent.backend.engine import Engine, Request, Result, Sequence
from codeagent.backend.layers.sampler import SamplingParams

_END = -1


class EngineStream:
    def __init__(self, service: EngineService) -> None:
        self._service = service
        self._tokens: queue.Queue[int] = queue.Queue()
        self._cancelled = threading.Event()
        self.seq: Sequence | None = None
        self.result: Result | None = None
        self._drained = False

    def __iter__(self) -> Iterator[int]:
        """The tokens as they come; iterate once (a second pass finds the stream already drained)."""
        if self._drained:
            return
        while (token := self._tokens.get()) != _END:
            yield token
        self._drained = True

    def cancel(self) -> None:
        if not self._cancelled.is_set():
            self._cancelled.set()
            self._service._cancel(self)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def wait(self) -> Result:
        """Drain the stream and return its result."""
        for _ in self:
            pass
        assert self.result is not None
        return self.result

    def _push(self, token: int) -> bool:
        self._tokens.put(token)
        return not self._cancelled.is_set()

    def _end(self, result: Result) -> None:
        if self.cancelled and result.finish_reason == "stop":  # the hook's refusal ended it
            result.finish_reason = "cancelled"
        self.result = result
        self._tokens.put(_END)


class EngineService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Condition()
        self._inbox: list[tuple[EngineStream, Request]] = []
        self._cancels: list[EngineStream] = []
        self._live: dict[int, EngineStream] = {}
        self._closed = False
        self.errors: list[str] = []
        self.broken: str | None = None  # why the engine can compute nothing more (a rank died)
        self.on_broken: Callable[[str], None] | None = None  # told once, from the engine's thread
        self._thread = threading.Thread(target=self._run, name="codeagent-engine", daemon=True)
        self._thread.start()

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> EngineStream:
        stream = EngineStream(self)
        request = Request(list(prompt_ids), params, stream._push)
        self.engine.check(request)  # ValueError for the caller, before anything is queued
        with self._lock:
            if self.broken:
                raise RuntimeError(f"the engine is down: {self.broken}")
            if self._closed:
                raise RuntimeError("the engine service is closed")
            self._inbox.append((stream, request))
            self._lock.notify()
        return stream

    def active(self) -> int:
        """Requests submitted and not yet finished."""
        with self._lock:
            return len(self._inbox) + len(self._live)

    def health(self) -> dict[str, int]:
        """What ``/health`` reports: requests in flight and the KV blocks a request may take."""
        blocks = self.engine.blocks
        return {"requests": self.active(), "kv_blocks": blocks.num_blocks, "kv_blocks_free": blocks.free}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join()
        self.engine.close()

    def _cancel(self, stream: EngineStream) -> None:
        with self._lock:
            self._cancels.append(stream)
            self._lock.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not (self._inbox or self._cancels or self._closed or self.engine.has_work()):
                    self._lock.wait()
                if self._closed:
                    break
                inbox, self._inbox = self._inbox, []
                cancels, self._cancels = self._cancels, []
                for stream, request in inbox:
                    if stream.cancelled:
                        stream._end(Result([], "cancelled", len(request.prompt_ids)))
                        continue
                    try:
                        stream.seq = self.engine.add_request(request)
                    except Exception as err:  # checked in submit; anything else is refused here, not fatal
                        stream._end(Result([], "error", len(request.prompt_ids), error=str(err)))
                        continue
                    self._live[stream.seq.id] = stream
                for stream in cancels:
                    if stream.seq is not None:
                        self.engine.abort(stream.seq.id)
            try:
                finished = self.engine.step()
            except GroupFailed as err:  # a rank is gone: fail what is in flight, serve nothing more
                self.errors.append(traceback.format_exc())
                finished = self.engine.fail_all(f"the engine failed: {err}")
                with self._lock:
                    self.broken, self._closed = str(err), True
            except Exception as err:  # one bad step must not take the service down
                self.errors.append(traceback.format_exc())
                finished = self.engine.fail_all(f"the engine failed: {type(err).__name__}: {err}")
            with self._lock:
                ended = [(self._live.pop(seq.id), seq) for seq in finished if seq.id in self._live]
            for stream, seq in ended:
                stream._end(seq.result())
        with self._lock:  # closing: whatever is still in flight ends as cancelled
            pending = list(self._live.values())
            self._live.clear()
        for stream in pending:
            seq = stream.seq
            stream._end(seq.result() if seq is not None and seq.finish else Result([], "cancelled", 0))
        for stream, request in self._inbox:
            stream._end(Result([], "cancelled", len(request.prompt_ids)))
        if self.broken and self.on_broken is not None:
            self.on_broken(self.broken)
