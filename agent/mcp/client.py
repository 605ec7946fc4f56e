"""Connections to MCP servers, held open on one background event loop.

The agent loop is synchronous and the SDK (``mcp``) is async, so the connections live on one
asyncio loop in a daemon thread, started with the first connection. Each server is held by
one task that enters the SDK's ``Client`` (stdio: the server is a child process; HTTP: a
streamable HTTP session), lists its tools, reports ready and waits for ``close``; calls are
sent from the agent's thread and waited for with a timeout.

Failures: a server that cannot be started, does not answer the handshake within
``connect_timeout`` or fails to list its tools raises ``McpFailure`` with one line saying
why (whatever the SDK or the transport raised, unwrapped from anyio's exception groups: this
is the boundary where another program's failure must not end the run). A call that does not
answer within its timeout is cancelled and raises ``McpFailure`` too.

A stdio server's stderr goes to ``<state>/mcp/NAME.log``, not to the terminal (a full-screen
UI owns it). ``close`` ends every connection (the SDK closes a child's stdin, then
terminates and kills its process tree, each step bounded) and stops the loop; it is also
registered with ``atexit``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx2
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, Tool

from codeagent import xdg
from codeagent.agent.mcp.config import ServerConfig

CLOSE_TIMEOUT = 10.0  # per server: the SDK's own shutdown steps are bounded well below this


class McpFailure(Exception):
    """A server could not be reached or did not answer; the message is one line."""


@dataclass(slots=True)
class Launch:
    """A server as it is started: its config with ``args`` and ``env`` already resolved."""

    name: str
    config: ServerConfig
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


@dataclass(slots=True)
class _Held:
    client: Client
    tools: list[Tool]
    stop: asyncio.Event
    task: concurrent.futures.Future[None]


class Connections:
    """Open MCP connections, by server name."""

    def __init__(self, connect_timeout: float = 30.0, log_dir: Path | None = None) -> None:
        self.connect_timeout = connect_timeout
        self.log_dir = log_dir or xdg.folder("state") / "mcp"
        self._held: dict[str, _Held] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def connect(self, launch: Launch) -> list[Tool]:
        """Start or reach ``launch``'s server and return its tools; McpFailure if it cannot."""
        loop = self._start()
        ready: concurrent.futures.Future[tuple[Client, list[Tool], asyncio.Event]] = (
            concurrent.futures.Future()
        )
        task = asyncio.run_coroutine_threadsafe(self._hold(launch, ready), loop)
        try:
            client, tools, stop = ready.result(timeout=self.connect_timeout)
        except concurrent.futures.TimeoutError:
            task.cancel()
            raise McpFailure(f"no answer within {self.connect_timeout:g}s") from None
        except McpFailure:
            raise
        except Exception as err:  # another program's failure: one line, and the run goes on
            raise McpFailure(describe(err)) from err
        self._held[launch.name] = _Held(client, tools, stop, task)
        return tools

    def call(self, server: str, tool: str, arguments: dict[str, Any], timeout: float) -> CallToolResult:
        held = self._held.get(server)
        if held is None or self._loop is None:
            raise McpFailure(f"server {server!r} is not connected")
        future = asyncio.run_coroutine_threadsafe(held.client.call_tool(tool, arguments), self._loop)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise McpFailure(
                f"{server}: {tool} did not answer within {timeout:g}s; the call was cancelled"
            ) from None
        except Exception as err:  # the server's or the transport's failure, told to the model
            raise McpFailure(f"{server}: {tool} failed: {describe(err)}") from err

    def close(self) -> None:
        """End every connection and stop the loop; safe to call twice."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        for held in self._held.values():
            loop.call_soon_threadsafe(held.stop.set)
        for held in self._held.values():
            try:
                held.task.result(timeout=CLOSE_TIMEOUT)
            except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                held.task.cancel()
            except Exception:  # a server that failed while closing is closed all the same
                pass
        self._held.clear()
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=CLOSE_TIMEOUT)

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="mcp", daemon=True)
            self._thread.start()
            atexit.register(self.close)
        return self._loop

    async def _hold(self, launch: Launch, ready: concurrent.futures.Future[Any]) -> None:
        stop = asyncio.Event()
        try:
            async with self._transport(launch) as transport, Client(transport, mode="legacy") as client:
                tools = await _all_tools(client)
                if not ready.set_running_or_notify_cancel():
                    return
                ready.set_result((client, tools, stop))
                await stop.wait()
        except Exception as err:  # handed to the caller waiting in ``connect``; after that, the task's result
            if ready.done():
                raise
            ready.set_exception(err)

    @asynccontextmanager
    async def _transport(self, launch: Launch) -> AsyncIterator[Any]:
        config = launch.config
        if not config.stdio:
            headers, timeout = dict(config.headers), httpx2.Timeout(30.0, read=300.0)
            async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
                yield streamable_http_client(str(config.url), http_client=http)
            return
        params = StdioServerParameters(
            command=str(config.command), args=launch.args, env=launch.env, cwd=launch.cwd or self._cwd()
        )
        with self._log(launch.name) as errlog:
            yield stdio_client(params, errlog=errlog)

    def _cwd(self) -> Path:
        folder = self.log_dir / "cwd"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _log(self, name: str) -> IO[str]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return (self.log_dir / f"{name}.log").open("a", encoding="utf-8")

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"


async def _all_tools(client: Client) -> list[Tool]:
    tools: list[Tool] = []
    cursor = None
    for _ in range(100):  # a server that pages forever is cut off
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def describe(err: BaseException) -> str:
    """One line for an error, the first real one inside anyio's exception groups."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."
