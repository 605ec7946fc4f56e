"""One request's text path: a prompt submitted to the engine service, its ids back as reply text.

The one generation object, shared by the in-process client (``client.py``) and the server's
protocol handlers (``server.py`` with each protocol's ``*_api.py`` / ``*_replies.py``): the
callers render and encode (``chat/prompt.py``), ``Generation.start`` submits, and iterating
the generation decodes, watches stop strings, parses reasoning and tool calls, and at the
end remembers the finished turn, so the next prompt extends it token for token.

Iterating yields ``Piece``s: visible content, reasoning, and tool calls as OpenAI delta
entries. ``pieces(every_token=True)`` yields one per generated token that is not an
end-of-sequence id, empty when the token shows nothing yet (an agent may stop at any
token), then the held-back rest; plain iteration yields only pieces with something in them.

A prompt with a grammar (``chat/prompt.py``: tools, ``tool_choice``, ``response_format``) is
decoded under it (``grammar/``), unless the model's ``constrain`` is off.

Tool calls come out when their block closes, since values are typed by the tool's schema:
a first entry with ``id``, ``type`` and ``name`` (arguments ``""``), then one entry holding all
of ``function.arguments``. Clients that join fragments by ``index`` read them as any OpenAI
stream; the arguments simply do not trickle in.

Stop strings (the sampling parameters' ``stop``) are watched on the decoded text
(``chat/stopping.py``); when one appears the engine stream is cancelled, the text is cut
before it and the finish reason is ``stop``. Text that could still be the start of a stop
string is held back until decided. End-of-sequence ids end the stream in the engine and
never reach the text.

Continuity: OpenAI clients send back replies in their parsed form, not the text the model
wrote; the model's ``TurnMemory`` recognises recent replies by content and calls and renders
them as written, and keeps the ids sampled for each reply's text. Only whole replies are
remembered (ended by the model or by the length limit; not cut by a stop string, cancelled
or failed).

Limits: a generation is iterated once, by one thread; closing the iteration early (a client
gone, an agent interrupted) or ``cancel`` frees the engine's sequence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.chat.prompt import Prompt
from codeagent.backend.chat.stopping import StopStrings
from codeagent.backend.chat.toolcalls import Delta, ParsedMessage, make_parser
from codeagent.backend.grammar.matcher import GrammarError
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.sequence import Result


class TokenStream(Protocol):
    """One sequence in the engine service, as ``EngineService.submit`` returns it."""

    result: Result | None  # set when the iteration ends

    def __iter__(self) -> Iterator[int]: ...

    def cancel(self) -> None: ...


class Service(Protocol):
    """What takes requests: ``EngineService``, or a scripted stand-in in tests."""

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> TokenStream: ...


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


def whole_calls(piece: Piece) -> list[dict[str, Any]]:
    """A piece's delta entries joined back into whole calls: ``{"id", "function": {name, arguments}}``."""
    calls: list[dict[str, Any]] = []
    for entry in piece.tool_calls:
        if "id" in entry:
            calls.append({"id": entry["id"], "function": {**entry["function"]}})
        else:
            calls[-1]["function"]["arguments"] += entry["function"]["arguments"]
    return calls


class Generation:
    """One request's engine stream as pieces of a reply. Iterate it once; closing the
    iteration early (a client gone) cancels the stream so the engine frees the sequence."""

    @classmethod
    def start(cls, model: ChatModel, service: Service, prompt: Prompt, params: SamplingParams) -> Generation:
        """Submit ``prompt`` (under its grammar, when the model constrains replies); ValueError when
        the engine could never hold it (its KV pool is too small), GrammarError when its grammar
        (a response format) does not compile. Tools whose grammar does not compile (a schema
        llguidance cannot read) are decoded free, as without constraints."""
        try:
            grammar = model.grammar(prompt.grammar)
        except GrammarError:
            if prompt.format_grammar:
                raise
            grammar = None
        if grammar is not None:
            params = dataclasses.replace(params, grammar=grammar)
        return cls(model, prompt, service.submit(prompt.ids, params), params.stop)

    def __init__(
        self, model: ChatModel, prompt: Prompt, stream: TokenStream, stops: Sequence[str] = ()
    ) -> None:
        self.model, self.prompt = model, prompt
        self.parsed: ParsedMessage | None = None
        self.stream = stream
        self.eos = model.tokenizer.eos_token_ids
        self.parser = (
            None
            if prompt.parse == "none"
            else make_parser(model.family, prompt.tools, prompt.text, calls=prompt.parse == "calls")
        )
        self.watch = StopStrings(model.tokenizer, list(stops), self._take)
        self.pending = Piece()
        self.raw: list[str] = []  # text without call parsing, for completions
        self.completion_tokens = 0
        self.stopped = False  # a stop string ended it
        self.done = False
        if self.parser and prompt.forced:
            self.parser.push(prompt.forced)  # inside a call block now: nothing is released

    def __iter__(self) -> Iterator[Piece]:
        return self.pieces()

    def pieces(self, every_token: bool = False) -> Iterator[Piece]:
        """The reply's pieces as they become certain: those with something in them, or with
        ``every_token`` one per token that is not end-of-sequence and one at the end."""
        try:
            for token in self.stream:
                if self.stopped:
                    continue  # sampled before the cancel took effect
                self.completion_tokens += 1
                if token in self.eos:
                    continue
                if not self.watch.push(token):
                    self.stopped = True
                    self.stream.cancel()
                if self.pending or every_token:
                    yield self._release()
            self.watch.flush()
            if self.parser:
                self._merge(self.parser.flush())
            self.done = True
            self._remember()
            if self.pending or every_token:
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

    def _merge(self, delta: Delta) -> None:
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
        self.model.memory.remember(reply, parsed.raw, list(result.token_ids))

    @property
    def result(self) -> Result:
        """The engine's account of the sequence; there once the iteration has ended."""
        result = self.stream.result
        if result is None:
            raise RuntimeError("the generation has not ended yet")
        return result

    @property
    def error(self) -> str | None:
        if self.result.finish_reason == "error":
            return self.result.error or "the engine failed on this request"
        return None

    @property
    def finish_reason(self) -> str:
        if self.parser and self.parser.calls:
            return "tool_calls"
        return "stop" if self.stopped else self.result.finish_reason

    @property
    def stop_string(self) -> str | None:
        """The stop string that ended the reply, if one did (the earliest in the text)."""
        if not self.stopped:
            return None
        raw = self.watch.raw
        return min((stop for stop in self.watch.stops if stop in raw), key=raw.find, default=None)

    @property
    def prompt_tokens(self) -> int:
        return int(self.result.prompt_tokens)

    @property
    def cached_tokens(self) -> int:
        return int(self.result.cached_tokens or 0)
