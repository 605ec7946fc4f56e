"""Keeping each turn's prompt an exact token extension of the last, so the prefix cache hits.

The engine's cache is keyed by token ids. Turn N+1 hits turn N's blocks (its prompt and
the reply the model generated) only if its ids start with exactly those ids. Two things
break that, and ``TurnMemory`` repairs both:

- The reply comes back re-rendered. An OpenAI client sends the parsed reply (content,
  tool calls with re-serialised arguments), not the text the model wrote. ``restore`` finds
  a recent reply by what is sent back (content and calls, arguments compared as JSON) and
  puts the generated text on it as ``_raw``, which the template renders verbatim
  (``template.py``). Replies that carry ``_raw`` already (the embedded client's) are kept.
- Re-tokenizing changes the ids. Encoding the whole conversation again need not give the
  ids the model sampled (a merge across the reply's end, another split of the same text).
  ``encode`` keeps a recent turn's ids when the new prompt's text starts with that turn's
  text (its prompt plus the decoded reply) and encodes only the rest.

Bounded: the most recent ``size`` turns and replies; lookups are linear in that. Thread-safe.
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
        self._turns: OrderedDict[str, list[int]] = OrderedDict()  # text -> its ids, newest last
        self._replies: OrderedDict[str, str] = OrderedDict()  # reply key -> generated text
        self._lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        with self._lock:
            best = max((t for t in self._turns if text.startswith(t)), key=len, default=None)
            ids = list(self._turns[best]) if best is not None else None
        if best is None or ids is None:
            return self.tokenizer.encode(text)
        return ids + self.tokenizer.encode(text[len(best) :])

    def remember(
        self, prompt_text: str, prompt_ids: list[int], generated: list[int], reply: dict[str, Any], raw: str
    ) -> None:
        """A finished turn: the prompt, the ids sampled after it, and the reply as parsed and as written."""
        text = prompt_text + self.tokenizer.decode(generated)
        with self._lock:
            self._turns.pop(text, None)
            self._turns[text] = prompt_ids + generated
            key = reply_key(reply)
            self._replies.pop(key, None)
            self._replies[key] = raw
            for table in (self._turns, self._replies):
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
