"""Serving text: OpenAI-shaped requests to prompt ids, and sampled ids back to OpenAI deltas.

The part of ``codeagent serve`` that knows text but not HTTP. ``ChatModel`` holds what a
checkpoint needs for that (tokenizer, chat template, family, window); ``chat_prompt``
renders a conversation with the checkpoint's template, ``text_prompt`` takes a raw
completion prompt (text or ids). ``Generation`` wraps one engine stream and turns its ids
into ``Piece``s: visible content, reasoning, and tool calls as OpenAI delta entries.

``tool_choice``:
- ``auto`` (the default with tools): tools rendered, calls parsed as the model writes them.
- ``none`` (and any request without tools): rendered without tools and no call blocks are
  parsed (call markup the model writes anyway stays content); reasoning is still split off.
- ``required`` and a named function: enforced by prefill. The family's call opener (with the
  function's name when one is named) is appended to the prompt, so the reply starts inside a
  call block and the model can only fill in the rest. A model that still writes no valid block
  (it never closes it, or writes garbage) gets its text back as content; there is no retry.

Tool calls come out when their block closes, since values are typed by the tool's schema:
a first entry with ``id``, ``type`` and ``name`` (arguments ``""``), then one entry holding all
of ``function.arguments``. Clients that join fragments by ``index`` read them as any OpenAI
stream; the arguments simply do not trickle in.

Stop strings are watched on the decoded text (``stopping.StopStrings``); when one appears
the engine stream is cancelled, the text is cut before it and the finish reason is
``stop``. Text that could still be the start of a stop string is held back until decided.
End-of-sequence ids end the stream in the engine and never reach the text.

OpenAI clients send back replies in their parsed form, not the text the model wrote; the
model's ``TurnMemory`` (``continuity.py``) recognises recent replies by content and calls and
renders them as written, and keeps recent turns' token ids, so a follow-up turn extends
the last token for token and hits the prefix cache. A reply it no longer remembers (or one
the client edited) is re-rendered, and the cache stops matching there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from codeagent.backend.chat.continuity import TurnMemory
from codeagent.backend.chat.families import family_of, get_family
from codeagent.backend.chat.template import ChatTemplate
from codeagent.backend.chat.tokenizer import Tokenizer
from codeagent.backend.chat.toolcalls import ParsedMessage, ToolCallParser, opens_reasoning
from codeagent.backend.stopping import StopStrings

# The family's markup that opens a call block, then the part naming the function.
FORCED_CALL = {
    "qwen3": ("<tool_call>\n<function=", "{name}>\n"),
    "deepseek_v4": ('<｜DSML｜tool_calls>\n<｜DSML｜invoke name="', '{name}">\n'),
}


class Stream(Protocol):
    """One sequence in the engine service, as ``EngineService.submit`` returns it."""

    result: Any  # after iteration: token_ids, finish_reason, prompt_tokens, cached_tokens, error

    def __iter__(self) -> Iterator[int]: ...

    def cancel(self) -> None: ...


@dataclass(slots=True)
class ChatModel:
    name: str
    tokenizer: Tokenizer
    template: ChatTemplate
    family: str
    context_window: int
    memory: TurnMemory = field(init=False)

    def __post_init__(self) -> None:
        self.memory = TurnMemory(self.tokenizer, 256)

    @classmethod
    def from_dir(cls, folder: Path, config: dict[str, Any], name: str | None = None) -> ChatModel:
        """From a checkpoint folder with ``tokenizer.json`` and its ``config.json`` contents."""
        tokenizer = Tokenizer.from_dir(folder)
        family = family_of(config)
        window = int(config.get("max_position_embeddings") or 32768)
        return cls(
            name or folder.name, tokenizer, ChatTemplate.from_tokenizer(tokenizer, family), family, window
        )


@dataclass(slots=True)
class Prompt:
    ids: list[int]
    text: str = ""
    forced: str = ""  # call markup appended to the prompt: the reply begins with it
    tools: list[dict[str, Any]] | None = None  # what the parser types arguments with
    parse: str = "none"  # "calls": reasoning and call blocks, "reasoning": reasoning only, "none": raw text
    chat: bool = False  # a rendered conversation: its finished turn is remembered for the next


def chat_prompt(
    model: ChatModel,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    tool_choice: str = "auto",
    function: str | None = None,
) -> Prompt:
    """``tool_choice`` is "auto", "none", "required" or "function" (then ``function`` names it)."""
    messages = model.memory.restore(messages)  # replies we generated get their exact text back
    if tool_choice == "none" or not tools:
        text = model.template.render(messages, None)
        return Prompt(model.memory.encode(text), text, parse="reasoning", chat=True)
    text = model.template.render(messages, tools)
    forced = ""
    if tool_choice in ("required", "function"):
        family = get_family(model.family)
        opener, named = FORCED_CALL[model.family]
        close_reasoning = family.think_close + "\n\n" if opens_reasoning(text, family) else ""
        forced = close_reasoning + opener + (named.format(name=function) if function else "")
    return Prompt(model.memory.encode(text + forced), text + forced, forced, tools, "calls", chat=True)


def text_prompt(model: ChatModel, prompt: str | list[int]) -> Prompt:
    if isinstance(prompt, str):
        return Prompt(model.tokenizer.encode(prompt), prompt)
    return Prompt(list(prompt))


@dataclass(slots=True)
class Piece:
    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # OpenAI delta entries

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning or self.tool_calls)


def call_deltas(call: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole parsed call as OpenAI streams one: name first, then the arguments."""
    function = call["function"]
    head = {
        "index": call["index"],
        "id": call["id"],
        "type": "function",
        "function": {"name": function["name"], "arguments": ""},
    }
    return [head, {"index": call["index"], "function": {"arguments": function["arguments"]}}]


class Generation:
    """One request's engine stream as pieces of an OpenAI reply. Iterate it once; closing the
    iteration early (a client gone) cancels the stream so the engine frees the sequence."""

    def __init__(self, model: ChatModel, prompt: Prompt, stream: Stream, stops: list[str]) -> None:
        self.model, self.prompt = model, prompt
        self.parsed: ParsedMessage | None = None
        self.stream = stream
        self.eos = model.tokenizer.eos_token_ids
        self.parser = _parser(model, prompt)
        self.watch = StopStrings(model.tokenizer, stops, self._take)
        self.pending = Piece()
        self.raw: list[str] = []  # text without call parsing, for completions
        self.completion_tokens = 0
        self.stopped = False  # a stop string ended it
        self.done = False
        if self.parser and prompt.forced:
            self.parser.push(prompt.forced)  # inside a call block now: nothing is released

    def __iter__(self) -> Iterator[Piece]:
        try:
            for token in self.stream:
                if self.stopped:
                    continue  # sampled before the cancel took effect
                self.completion_tokens += 1
                if token not in self.eos and not self.watch.push(token):
                    self.stopped = True
                    self.stream.cancel()
                if self.pending:
                    yield self._release()
            self.watch.flush()
            if self.parser:
                self._merge(self.parser.flush())
            self.done = True
            self._remember()
            if self.pending:
                yield self._release()
        finally:
            if not self.done:
                self.stream.cancel()

    def cancel(self) -> None:
        if not self.done:
            self.stream.cancel()

    def _take(self, text: str) -> None:
        self.raw.append(text)
        if self.parser:
            self._merge(self.parser.push(text))
        else:
            self.pending.content += text

    def _merge(self, delta: Any) -> None:
        self.pending.content += delta.content
        self.pending.reasoning += delta.reasoning
        for call in delta.tool_calls:
            self.pending.tool_calls += call_deltas(call)

    def _release(self) -> Piece:
        piece, self.pending = self.pending, Piece()
        return piece

    @property
    def text(self) -> str:
        return "".join(self.raw)

    def message(self) -> ParsedMessage:
        if self.parsed is None:
            self.parsed = (
                self.parser.finish() if self.parser else ParsedMessage(self.text, "", [], raw=self.text)
            )
        return self.parsed

    def _remember(self) -> None:
        """A whole reply (not cut by a stop string): remember its exact text and ids for the next turn."""
        result = self.stream.result
        if (
            not self.prompt.chat
            or self.stopped
            or result is None
            or result.finish_reason not in ("stop", "length")
        ):
            return
        parsed = self.message()
        reply = {"content": parsed.content, "tool_calls": parsed.tool_calls}
        self.model.memory.remember(
            self.prompt.text, self.prompt.ids, list(result.token_ids), reply, parsed.raw
        )

    @property
    def error(self) -> str | None:
        result = self.stream.result
        if result.finish_reason == "error":
            return result.error or "the engine failed on this request"
        return None

    @property
    def finish_reason(self) -> str:
        if self.parser and self.parser.calls:
            return "tool_calls"
        return "stop" if self.stopped else self.stream.result.finish_reason

    @property
    def prompt_tokens(self) -> int:
        return int(self.stream.result.prompt_tokens)

    @property
    def cached_tokens(self) -> int:
        return int(self.stream.result.cached_tokens or 0)


def _parser(model: ChatModel, prompt: Prompt) -> ToolCallParser | None:
    if prompt.parse == "none":
        return None
    family = get_family(model.family)
    if prompt.parse == "reasoning":
        family = dataclasses.replace(family, call_blocks=())
    return ToolCallParser(family, prompt.tools, opens_reasoning(prompt.text, family))
