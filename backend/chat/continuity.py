"""Keeping each turn's prompt an exact token extension of the last, so the prefix cache hits.

The engine's cache is keyed by token ids. Turn N+1 hits turn N's blocks (its prompt and
the reply the model generated) only if its ids start with exactly those ids. Two things
break that, and ``TurnMemory`` repairs both:

- The reply comes back re-rendered. An OpenAI client sends the parsed reply (content,
  tool calls with re-serialised arguments), not the text the model wrote. ``restore`` finds
  a recent reply by what is sent back (content and calls, arguments compared as JSON) and
  puts the generated text on it as ``_raw``, which the template renders verbatim
  (``template.py``). Replies that carry ``_raw`` already (the embedded client's) are kept.
- Re-tokenizing changes the ids. Encoding the reply's text again need not give the ids the
  model sampled (a random or sampling model writes splits the tokenizer would not make: 141
  ids where encoding the text gives 140). ``encode`` takes the prompt in the template's
  pieces (``ChatTemplate.spans``: template text, then each ``_raw`` reply and the text after
  it) and gives each raw reply this memory knows the ids the model sampled for it (without
  the end-of-turn id, which the template writes after it); all other text, the template's
  and any reply it does not know, is encoded as text, piece by piece between known replies.

So the ids of a request are a function of the request and of one thing more: which
assistant texts this process generated and still remembers. Keyed by the exact raw text
of a reply, not by the conversation around it: the same reply text gets the same ids in
every request that carries it (a conversation the client rewrote before it, another
client's), and the first ids remembered for a text stay until it is forgotten (a second
generation of the same text with other splits does not replace them). What is not
remembered encodes as text: a reply this process never generated, one forgotten (only the
most recent ``size`` are kept, least recently used first; each use refreshes one), and
every reply after a restart (the memory is in memory only). Such a request can have other
ids than the same request sent while the reply was remembered, and its prefix-cache hit,
from memory or disk, stops at the first block where they differ. The trade-off is chosen
for multi-turn clients: their follow-ups hit the cache through the model's own replies.
Bounded: ``size`` replies; lookups are by key. Thread-safe.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import OrderedDict
from typing import Any

from codeagent.backend.chat.template import RAW
from codeagent.backend.chat.tokenizer import Tokenizer


def reply_key(message: dict[str, Any]) -> str:
    """What identifies a reply as a client sends it back: its text and its calls."""
    content = message.get("content") or ""
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):
                arguments = json.loads(arguments)
        calls.append([function.get("name"), arguments])
    return json.dumps([str(content).strip(), calls], sort_keys=True, ensure_ascii=False, default=str)


class TurnMemory:
    def __init__(self, tokenizer: Tokenizer, size: int = 64) -> None:
        self.tokenizer, self.size = tokenizer, size
        # raw reply -> (the part of it the model sampled, those ids); the rest of a raw reply is
        # call markup the prompt forced (``prompt.py``), encoded with the prompt before it
        self._sampled: OrderedDict[str, tuple[str, list[int]]] = OrderedDict()
        self._replies: OrderedDict[str, str] = OrderedDict()  # reply key -> generated text
        self._lock = threading.Lock()

    def encode(self, spans: list[str]) -> list[int]:
        """The ids of a prompt given as ``ChatTemplate.spans`` (raw replies at odd indices)."""
        ids: list[int] = []
        text = spans[0]
        for raw, after in zip(spans[1::2], spans[2::2], strict=True):
            with self._lock:
                known = self._sampled.get(raw)
                if known is not None:
                    self._sampled.move_to_end(raw)
            if known is None:
                text += raw + after
                continue
            tail, sampled = known
            ids += self.tokenizer.encode(text + raw[: len(raw) - len(tail)])
            ids += sampled
            text = after
        return ids + self.tokenizer.encode(text)

    def remember(self, reply: dict[str, Any], raw: str, generated: list[int]) -> None:
        """A finished reply: as parsed, as written (``raw``) and the ids sampled for it."""
        sampled = list(generated)
        if sampled and sampled[-1] in self.tokenizer.eos_token_ids:
            sampled.pop()  # the end of the turn: the template writes its own marker after the reply
        tail = self.tokenizer.decode(sampled)
        with self._lock:
            key = reply_key(reply)
            self._replies.pop(key, None)
            self._replies[key] = raw
            if raw in self._sampled:
                self._sampled.move_to_end(raw)  # the first ids stay: one text, one tokenization
            elif sampled and raw.endswith(tail):
                self._sampled[raw] = (tail, sampled)
            for table in (self._sampled, self._replies):
                while len(table) > self.size:
                    table.popitem(last=False)

    def restore(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The conversation with ``_raw`` put back on assistant replies this memory generated."""
        out = []
        for message in messages:
            if message.get("role") == "assistant" and RAW not in message:
                with self._lock:
                    raw = self._replies.get(reply_key(message))
                if raw is not None:
                    message = {**message, RAW: raw}
            out.append(message)
        return out
