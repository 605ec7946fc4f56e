"""Fixtures for the terminal UI: a real repository, a scripted model, the app under Textual's
pilot with a frozen clock (so the screen does not depend on timing), and a way to wait for
the agent's worker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Markdown, Static

from codeagent.agent.clients.scripted import ScriptedClient
from codeagent.agent.loop import Limits
from codeagent.agent.protocol import Message, ToolSchema
from codeagent.agent.run import RunConfig
from codeagent.sandbox.confine import probe
from codeagent.tools.base import ToolSettings
from codeagent.tui.app.application import CodeAgentApp
from codeagent.tui.app.history import History
from codeagent.tui.app.setup import Setup

SANDBOX = probe() is None  # confine the model's commands wherever bubblewrap works


class SteadyClient(ScriptedClient):
    """The scripted model with a token count that ignores the repository's path (100 tokens a
    message), so the status bar reads the same wherever pytest puts its temporary folders."""

    def count_tokens(self, messages: list[Message], tools: list[ToolSchema]) -> tuple[int, bool]:
        return 100 * len(messages), True


def steady(path: Path, consumed: int = 0) -> SteadyClient:
    return SteadyClient(path, start=consumed)


@pytest.fixture
def steady_client() -> type[SteadyClient]:
    return SteadyClient


@pytest.fixture
def scripted() -> Callable[..., SteadyClient]:
    return steady


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio; anyio's pytest plugin runs the async tests


@pytest.fixture
def script_file(tmp_path: Path) -> Callable[[list[dict[str, Any]]], Path]:
    def write(replies: list[dict[str, Any]], name: str = "script.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(reply) + "\n" for reply in replies))
        return path

    return write


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., CodeAgentApp]:
    def make(
        root: Path, script: Path, mode: str = "auto-edit", resume: str | None = None, sandbox: bool = SANDBOX
    ) -> CodeAgentApp:
        setup = Setup(
            root,
            f"scripted:{script}",
            lambda spec, consumed: steady(Path(spec.partition(":")[2]), consumed),
            RunConfig(ToolSettings(command_timeout=60), Limits(max_steps=20), mode, sandbox, repo_map=False),
            client=steady(script),
        )
        history = History(tmp_path / "history.jsonl")
        return CodeAgentApp(setup, resume=resume, clock=lambda: 1000.0, history=history)

    return make


class Driver:
    """Pilot helpers: type, wait for a condition, wait for the agent to be done."""

    def __init__(self, pilot: Any) -> None:
        self.pilot = pilot
        self.app = pilot.app

    async def settle(self, until: Callable[[], bool], timeout: float = 20.0) -> None:
        """Let the app and the agent's worker run until ``until()`` holds."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the app")
            await self.pilot.pause(0.02)
        await self.pilot.pause()

    async def idle(self) -> None:
        """Wait until the worker is done and the app has taken everything it reported."""
        await self.settle(lambda: not self.app.busy and self.app.chat.phase is None)
        await self.pilot.pause()

    async def send(self, text: str) -> None:
        """Type ``text`` into the prompt and press Enter."""
        self.app.query_one("#prompt").insert(text)
        await self.pilot.press("enter")

    def text(self, selector: str = "#transcript") -> str:
        """The plain text of everything under ``selector``, in order (folded bodies included)."""
        parts = []
        root = self.app.query_one(selector)
        for widget in [root, *root.query("*")]:
            if any(isinstance(ancestor, Markdown) for ancestor in widget.ancestors):
                continue
            if isinstance(widget, Markdown):
                parts.append(widget.source)
            elif isinstance(widget, Static):
                parts.append(str(widget.content))
        return "\n".join(parts)


@pytest.fixture
def drive() -> type[Driver]:
    return Driver
