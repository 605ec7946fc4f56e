"""How the app takes what the worker reports: one ``got_<event>`` method per event type,
mixed into the app. Each mounts or updates one transcript entry or panel, in the order the
events came; times come from the app's ``clock``.
"""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text
from textual.message import Message

from codeagent.agent import events as ev
from codeagent.tui.app import reports as rp
from codeagent.tui.app.entries import (
    AssistantEntry,
    DiffEntry,
    FinalEntry,
    Foldable,
    ReasoningEntry,
    ToolEntry,
)
from codeagent.tui.app.panels import ApprovalPanel, PlanPanel, StatusBar
from codeagent.tui.app.replay import entries
from codeagent.tui.app.status import count

MIN_RATE_WINDOW_S = 0.2  # a reply that took less tells nothing about decode speed (a script, a cache)


class AgentUpdate(Message):
    def __init__(self, item: Any) -> None:
        super().__init__()
        self.item = item


class AgentUpdates:
    """The ``got_*`` handlers, mixed into ``CodeAgentApp``, which provides what they use."""

    conversation: Any
    stats: Any
    tools: dict[str, ToolEntry]
    reply: AssistantEntry | None
    tokens: int  # streamed in the current reply, shown and not

    async def on_agent_update(self, message: AgentUpdate) -> None:
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(message.item).__name__).lower()
        handler = getattr(self, f"got_{name}", None)
        if handler is not None:
            await handler(message.item)

    async def got_step_started(self, event: ev.StepStarted) -> None:
        self.stats.steps = event.step
        self.reply, self.tokens, self.step_at = None, 0, self.clock()
        self.set_phase(f"the model is reading {count(self.stats.context)} tokens")

    async def got_token_streamed(self, event: ev.TokenStreamed) -> None:
        self.tokens += 1
        if self.tokens == 1:
            self.token_at = self.clock()
            self.set_phase("the model is writing")
        if not event.text:
            return  # a token that shows nothing (a tool call, reasoning): counted, not drawn
        if self.reply is None:
            self.reply = AssistantEntry()
            await self.add(self.reply)
        await self.reply.write(event.text)

    async def got_assistant_message(self, event: ev.AssistantMessage) -> None:
        if event.reasoning.strip():
            await self.add(ReasoningEntry(event.reasoning), before=self.reply)
        if self.reply is not None:
            await self.reply.settle(event.content)
        elif event.content.strip():
            await self.add(AssistantEntry(event.content))
        usage = event.usage
        self.stats.prompt, self.stats.cached = usage.get("prompt_tokens", 0), usage.get("cached_tokens", 0)
        self.stats.context = self.stats.prompt + usage.get("completion_tokens", 0)
        took = self.clock() - (self.token_at if self.tokens else self.step_at)
        measured = usage.get("completion_tokens", 0) / took if took >= MIN_RATE_WINDOW_S else None
        self.stats.rate = event.decode_tokens_per_s or measured
        self.reply = None
        self.query_one(StatusBar).show()

    async def got_tool_call_started(self, event: ev.ToolCallStarted) -> None:
        self.tool_at = self.clock()
        self.set_phase(f"running {event.name}")
        if event.name != "finish":
            self.tools[event.call_id] = ToolEntry(event.name, event.arguments)
            await self.add(self.tools[event.call_id])

    async def got_tool_call_finished(self, event: ev.ToolCallFinished) -> None:
        took = self.clock() - self.tool_at
        if event.name == "finish" and event.ok:
            await self.add(FinalEntry(str(event.data.get("summary") or event.text)))
            return
        entry = self.tools.pop(event.call_id, None)
        if entry is None:
            entry = ToolEntry(event.name, {})
            await self.add(entry)
        entry.finish(event.ok, event.text, took if took >= 0.1 else None, self.interrupting and not event.ok)
        if event.ok and event.data.get("diff"):
            await self.add(DiffEntry(str(event.data["diff"])))
        self.set_phase("the model is reading the result")

    async def got_plan_updated(self, event: ev.PlanUpdated) -> None:
        self.query_one(PlanPanel).show(event.plan)

    async def got_compacted(self, event: ev.Compacted) -> None:
        await self.notice(
            f"context compacted: {count(event.tokens_before)} → {count(event.tokens_after)} tokens"
        )

    async def got_run_finished(self, event: ev.RunFinished) -> None:
        if self.reply is not None:  # a reply cut short: what it wrote so far stays
            await self.reply.settle(self.reply.text)
            self.reply = None
        if event.status == "interrupted":
            await self.notice("⏹ interrupted; the conversation is kept: send a message to go on", "warn")
        elif event.status == "budget":
            await self.notice(f"stopped: {event.message}; send a message to go on", "warn")
        elif event.status != "finished":
            await self.notice(f"stopped: {event.message}", "error")

    async def got_context_measured(self, item: rp.ContextMeasured) -> None:
        self.stats.context, self.stats.exact, self.stats.window = item.tokens, item.exact, item.window
        self.query_one(StatusBar).show()

    async def got_approval_needed(self, item: rp.ApprovalNeeded) -> None:
        running = [entry for entry in self.tools.values() if entry.tool == item.request.tool]
        if running:
            running[-1].waiting()
        self.query_one(ApprovalPanel).ask(item.preview, item.request.kind)
        self.set_phase("waiting for your approval")
        self.bell()

    async def got_model_loading(self, item: rp.ModelLoading) -> None:
        self.ready = False
        self.stats.model = item.spec
        self.started_at = self.clock()
        self.set_phase(f"loading {item.spec}")

    async def got_model_ready(self, item: rp.ModelReady) -> None:
        self.ready = True
        self.stats.model, self.stats.window = item.name, item.window
        await self.notice(f"model ready: {item.name} ({count(item.window)} tokens of context)", "ok")

    async def got_model_failed(self, item: rp.ModelFailed) -> None:
        self.stats.model = self.conversation.client.name if self.conversation.client else "no model"
        self.ready = self.conversation.client is not None
        await self.notice(f"model: {item.message}; /model SPEC picks another", "error")

    async def got_resumed(self, item: rp.Resumed) -> None:
        await self.transcript.remove_children()
        await self.transcript.mount_all(entries(item.state.messages[1:]))
        self.query_one(PlanPanel).show(item.state.plan)
        self.stats.steps = item.state.steps
        await self.notice(
            f"resumed session {item.run_id} ({item.state.steps} steps); send a message to go on"
        )

    async def got_worker_crashed(self, item: rp.WorkerCrashed) -> None:
        head = Text("codeagent hit a bug; the session goes on (Enter on this line shows the traceback)")
        await self.add(Foldable(head, item.error, classes="crash"))

    async def got_idle(self, item: rp.Idle) -> None:
        self.set_phase(None)
        self.interrupting = False
        self._files = None  # the agent may have added files: list them again on the next @
        self.query_one(ApprovalPanel).close()
        self.query_one(StatusBar).show()
        if self.queued and (self.ready or self.queued[0].startswith("/")):
            self.submit(self.queued.pop(0))
