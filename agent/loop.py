"""The plan-act loop.

One step = one model call plus the tool calls it asked for. The model explores, writes a
plan with ``update_plan``, acts, and ends with ``finish``; a tool that changes files is not
run before a plan exists. Budgets (steps, tokens, wall time) and interruption are checked
between steps and between tool calls; the wall-time budget also bounds each tool call while
it runs: ``_run_tool`` sets ``ToolEnv.deadline`` to the moment the budget runs out (see
``tools/base.py``), so a long command or search is stopped there, and the run then ends with
``budget``; calls of the same reply still waiting are answered "not run". Special exits
are exceptions carrying a message; ``run`` turns each into a ``RunResult`` status:

- ``finished``: the model called ``finish``;
- ``budget``: a limit was reached (``LimitsExceeded``);
- ``format``: the model kept answering without usable tool calls (``FormatError``);
- ``error``: the model client failed (``ModelError``), e.g. a scripted run out of replies;
- ``interrupted``: the caller set the cancel event;
- ``refused``: a command replaced a protected path (``ProtectedPathChanged``: put back by the
  sandbox, and the run stops rather than go on in a workspace it tampered with).

Interruption is checked between steps, between tool calls and at every streamed token, so a
reply being written stops at its next token. Tool calls an interruption kept from running
are answered "not run", so the conversation stays well-formed and an interactive session can
go on after it. ``run`` may be called again on the same agent (the TUI does, once per user
message): it starts a fresh count of replies without tool calls.

Malformed tool calls (unknown tool, arguments that are not a JSON object, missing
arguments) are answered with a corrective tool message, never a crash. When the pinned prefix
holds the codebase, a tool that can change files has its result followed by the diff of any
change it did not show itself, so the model's picture is the snapshot plus the turns. The first
call that touches a subfolder with its own ``AGENTS.md`` has that file appended to its result
(``memory.FolderMemory``, once per session).

Every tool result passes through the run's known secrets (``secrets``) in ``_call`` before
the model, the events or the transcript see it: a secret a command printed reaches them as
``[secret:NAME]``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from codeagent.agent import events as ev
from codeagent.agent.codebase import shown_paths
from codeagent.agent.context import Context
from codeagent.agent.prompts import render
from codeagent.agent.protocol import Message, ModelClient, ModelError, Usage
from codeagent.agent.transcript import Transcript
from codeagent.sandbox.policy import Policy
from codeagent.sandbox.protect import ProtectedPathChanged
from codeagent.sandbox.secrets import KnownSecrets
from codeagent.tools.base import Observation, Tool, ToolEnv, run_tool
from codeagent.tools.plan import render_plan


class LimitsExceeded(Exception):
    pass


class FormatError(Exception):
    pass


class Interrupted(Exception):
    pass


@dataclass(slots=True)
class Limits:
    max_steps: int = 60
    max_tokens: int = 3_000_000  # prompt + completion over the whole run
    max_wall_s: float = 3600.0
    max_format_errors: int = 3  # consecutive replies without a usable tool call


@dataclass(slots=True)
class RunResult:
    status: str
    message: str
    steps: int
    usage: Usage
    elapsed_s: float
    summary: str | None = None
    turns: list[Usage] = field(default_factory=list)  # usage of each model call, in order


@dataclass
class Agent:
    client: ModelClient
    env: ToolEnv
    tools: list[Tool]
    context: Context
    limits: Limits = field(default_factory=Limits)
    transcript: Transcript | None = None
    sink: ev.EventSink = ev.ignore
    cancel: threading.Event = field(default_factory=threading.Event)
    policy: Policy = field(default_factory=Policy)
    secrets: KnownSecrets = field(default_factory=KnownSecrets)  # redacted from every tool result
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    turn_usage: list[Usage] = field(default_factory=list)  # one entry per model call
    elapsed_before_s: float = 0.0  # time spent in earlier sessions of a resumed run
    _format_errors: int = 0
    _started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return self.elapsed_before_s + time.monotonic() - self._started

    def add_message(self, message: Message, usage: Usage | None = None) -> None:
        self.context.append(message)
        if self.transcript:
            extra = {"usage": usage.as_dict()} if usage is not None else {}
            self.transcript.write("message", step=self.steps, message=message, **extra)

    def run(self) -> RunResult:
        self._format_errors = 0
        try:
            while True:
                self._check_limits()
                self.step()
        except _Finished as done:
            return self._result("finished", "the model called finish", summary=str(done))
        except LimitsExceeded as err:
            return self._result("budget", str(err))
        except FormatError as err:
            return self._result("format", str(err))
        except ModelError as err:
            return self._result("error", str(err))
        except Interrupted as err:
            return self._result("interrupted", str(err))
        except ProtectedPathChanged as err:
            return self._result("refused", str(err))

    def step(self) -> None:
        self.steps += 1
        self.sink(ev.StepStarted(self.steps))
        self._maybe_compact()
        started = time.monotonic()
        completion = self.client.complete(self.context.messages, self.context.tools, on_token=self._stream)
        usage = Usage.of(completion.usage)
        self.usage.add(usage)
        self.turn_usage.append(usage)
        message = _clean_assistant(completion.message)
        self.add_message(message, usage)
        self.sink(
            ev.AssistantMessage(
                message.get("content") or "",
                message.get("reasoning_content") or "",
                usage.as_dict(),
                time.monotonic() - started,
                getattr(completion, "decode_tokens_per_s", None) or None,
            )
        )
        calls = message.get("tool_calls") or []
        if not calls:
            self._no_tool_call()
        else:
            self._format_errors = 0
            for index, call in enumerate(calls):
                if self.cancel.is_set():
                    self._skip(calls[index:])
                if self.elapsed_s >= self.limits.max_wall_s:
                    self._skip(calls[index:], self._time_spent())
                self.add_message(self._call(call))
        self._end_step()

    def _stream(self, text: str) -> None:
        self._check_cancel()  # raised inside the client's stream, which then stops generating
        self.sink(ev.TokenStreamed(text))

    def _skip(self, calls: list[dict[str, Any]], stop: Exception | None = None) -> None:
        """Answer the calls an interruption (or ``stop``: the time budget) kept from running, then stop."""
        stop = stop or Interrupted("interrupted by the user")
        for call in calls:
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            self.add_message(
                {
                    "role": "tool",
                    "tool_call_id": str(call.get("id") or f"call_{self.steps}"),
                    "name": str(function.get("name") or "?"),
                    "content": f"not run: {stop}",
                }
            )
        raise stop

    def _end_step(self) -> None:
        if self.transcript:
            self.transcript.write(
                "step",
                step=self.steps,
                plan=self.env.plan,
                usage=self.usage.as_dict(),
                elapsed_s=round(self.elapsed_s, 3),
            )
        if self.env.finished is not None:
            raise _Finished(self.env.finished)

    def _no_tool_call(self) -> None:
        self._format_errors += 1
        if self._format_errors >= self.limits.max_format_errors:
            raise FormatError(f"{self._format_errors} replies in a row called no tool")
        self.add_message({"role": "user", "content": render("no_tool_call")})

    def _call(self, call: dict[str, Any]) -> Message:
        call_id = str(call.get("id") or f"call_{self.steps}")
        name, args, problem = _parse_call(call, {t.name for t in self.tools})
        self.sink(ev.ToolCallStarted(call_id, name, args or {}))
        started = time.monotonic()
        if problem is not None:
            observation = Observation(f"error: {problem}", ok=False)
        else:
            observation = self._run_tool(name, args or {})
        observation.text = self.secrets.redact(observation.text)
        observation.data = self.secrets.redact_data(observation.data)
        self.sink(
            ev.ToolCallFinished(
                call_id, name, observation.ok, observation.text, observation.data, time.monotonic() - started
            )
        )
        return {"role": "tool", "tool_call_id": call_id, "name": name, "content": observation.text}

    def _run_tool(self, name: str, args: dict[str, Any]) -> Observation:
        tool = next(t for t in self.tools if t.name == name)
        if tool.mutates and not self.env.plan:
            return Observation(render("plan_first", tool=name), ok=False)
        decision = self.policy.check(name, args, tool.mutates, getattr(tool, "approval", None))
        if not decision.allowed:
            return Observation(f"not run: {decision.reason}", ok=False)
        if tool.mutates and self.env.checkpoints is not None:
            self.env.checkpoints.snapshot(f"step {self.steps}: before {name}")
        outer = self.env.deadline  # the budget bounds the call itself, and only while it runs
        self.env.deadline = time.monotonic() + self.limits.max_wall_s - self.elapsed_s
        try:
            observation = run_tool(tool, args, self.env)
        finally:
            self.env.deadline = outer
        if tool.mutates and self.context.tracker is not None:
            note = self.context.tracker.changes(self.env.root, shown_paths(observation.data))
            observation.text = f"{observation.text}\n\n{note}" if note else observation.text
        if observation.ok and self.context.folders is not None:  # a subfolder's AGENTS.md, once
            note = self.context.folders.note(name, args)
            observation.text = f"{observation.text}\n\n{note}" if note else observation.text
        if name == "update_plan" and observation.ok:
            self.sink(ev.PlanUpdated(list(self.env.plan)))
        return observation

    def _maybe_compact(self) -> None:
        if self.context.needs_compaction():
            self.compact(self.steps - 1)

    def compact(self, step: int | None = None) -> bool:
        """Compact the turns now (``step``: the last completed one, by default ``steps``);
        False when there is nothing to drop."""
        step = self.steps if step is None else step
        before = self.context.tokens()[0]
        if not self.context.compact(self.env.root, step, render_plan(self.env.plan)):
            return False
        after = self.context.tokens()[0]
        if self.transcript:
            self.transcript.write("compaction", step=step, messages=self.context.messages)
        self.sink(ev.Compacted(before, after))
        return True

    def _check_limits(self) -> None:
        self._check_cancel()
        if self.steps >= self.limits.max_steps:
            raise LimitsExceeded(f"step budget of {self.limits.max_steps} reached")
        spent = self.usage.prompt_tokens + self.usage.completion_tokens
        if spent >= self.limits.max_tokens:
            raise LimitsExceeded(f"token budget of {self.limits.max_tokens} reached ({spent} used)")
        if self.elapsed_s >= self.limits.max_wall_s:
            raise self._time_spent()

    def _time_spent(self) -> LimitsExceeded:
        return LimitsExceeded(f"time budget of {self.limits.max_wall_s:.0f}s reached")

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Interrupted("interrupted by the user")

    def _result(self, status: str, message: str, summary: str | None = None) -> RunResult:
        result = RunResult(
            status, message, self.steps, self.usage, self.elapsed_s, summary, list(self.turn_usage)
        )
        if self.transcript:
            self.transcript.write("end", status=status, message=message, summary=summary)
        self.sink(ev.RunFinished(status, message))
        return result


class _Finished(Exception):
    pass


def _clean_assistant(message: Message) -> Message:
    """Keep the OpenAI assistant fields the conversation needs, in a stable order, ``_raw``
    (the reply exactly as generated, which chat templates render instead of re-serialising it)
    and ``_replay`` (what a provider needs back verbatim: signed thinking, encrypted reasoning)."""
    clean: Message = {"role": "assistant", "content": message.get("content") or ""}
    if message.get("reasoning_content"):
        clean["reasoning_content"] = message["reasoning_content"]
    if message.get("tool_calls"):
        clean["tool_calls"] = message["tool_calls"]
    if isinstance(message.get("_raw"), str):
        clean["_raw"] = message["_raw"]
    if isinstance(message.get("_replay"), dict):
        clean["_replay"] = message["_replay"]
    return clean


def _parse_call(call: dict[str, Any], known: set[str]) -> tuple[str, dict[str, Any] | None, str | None]:
    """(name, arguments, problem): problem is a corrective message when the call is malformed."""
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    name = str(function.get("name") or "")
    if name not in known:
        return name or "?", None, f"unknown tool {name!r}; available tools: {', '.join(sorted(known))}"
    raw = function.get("arguments")
    if isinstance(raw, dict):
        return name, raw, None
    try:
        args = json.loads(raw or "{}")
    except (json.JSONDecodeError, TypeError) as err:
        return name, None, f"arguments of {name} are not valid JSON ({err}); send a JSON object"
    if not isinstance(args, dict):
        return name, None, f"arguments of {name} must be a JSON object, not {type(args).__name__}"
    return name, args, None
