"""Stop strings: end a generation when its text contains one, and cut the text before it.

Token-level stops (end-of-sequence and ``stop_token_ids``) live in the engine; strings need
the tokenizer, so they are watched here, through the streaming decoder: ``generate`` calls
``push`` from the engine's ``on_token`` hook (the sequence ends at the token that completes a
stop string), a ``Generation`` calls it as the service streams tokens and cancels the stream.
The matched stop string is not part of the returned text (as in OpenAI's API).

Limits: each token's check scans the text so far for every stop string (linear in the reply
per token); replies are thousands of tokens and at most 16 stop strings.
"""

from __future__ import annotations

from collections.abc import Callable

from codeagent.backend.chat.tokenizer import IncrementalDecoder, Tokenizer


class StopStrings:
    def __init__(
        self, tokenizer: Tokenizer, stops: list[str], on_text: Callable[[str], None] | None = None
    ) -> None:
        self.decoder = IncrementalDecoder(tokenizer)
        self.stops = [s for s in stops if s]
        self.on_text = on_text
        self.raw = ""
        self.stopped = False
        self.emitted = 0

    @property
    def text(self) -> str:
        return self.raw if not self.stopped else self._cut()

    def _cut(self) -> str:
        return self.raw[: min(i for s in self.stops if (i := self.raw.find(s)) >= 0)]

    def push(self, token_id: int) -> bool:
        """Take one token; False once a stop string has appeared."""
        self.raw += self.decoder.push(token_id)
        if any(s in self.raw for s in self.stops):
            self.stopped = True
        safe = (
            len(self.text)
            if self.stopped
            else len(self.raw) - max((len(s) - 1 for s in self.stops), default=0)
        )
        if self.on_text and safe > self.emitted:
            self.on_text(self.text[self.emitted : safe])
            self.emitted = safe
        return not self.stopped

    def flush(self) -> None:
        if not self.stopped:
            self.raw += self.decoder.finish()
            self.stopped = any(s in self.raw for s in self.stops)
        if self.on_text and len(self.text) > self.emitted:
            self.on_text(self.text[self.emitted :])
            self.emitted = len(self.text)
