"""Progress lines for headless runs: one short line per step, tool call and outcome, on stderr,
so stdout stays free for the machine-readable result. Verbose adds each model call's tokens
(prompt, cached, completion). With several attempts at once, each line starts with ``[N]``.

The model's text, tool output and arguments (file names, commands) are untrusted: each line
goes through ``tui.inert`` on its way out, the one place this printer writes. Shortened text
is folded on spaces, tabs and newlines only, so a CR or another control shows as ``\\uXXXX``
instead of vanishing into a space.
"""

from __future__ import annotations

import json
import re
import sys
from typing import TextIO

from codeagent.agent import events as ev
from codeagent.tui.inert import inert

_SPACES = re.compile(r"[ \t\n]+")


class ProgressPrinter:
    def __init__(self, stream: TextIO = sys.stderr, verbose: bool = False) -> None:
        self.stream = stream
        self.verbose = verbose

    def __call__(self, event: ev.Event) -> None:
        line = self._line(event)
        if line is not None:
            print(inert(line), file=self.stream, flush=True)

    def _line(self, event: ev.Event) -> str | None:
        match event:
            case ev.AttemptEvent(attempt=number, event=inner):  # several at once: each line tagged
                line = self._line(inner)
                return None if line is None else "\n".join(f"[{number}] {part}" for part in line.split("\n"))
            case ev.StepStarted(step=step):
                return f"step {step}"
            case ev.AssistantMessage(content=content, usage=usage):
                lines = (
                    ["  model: " + _short(content, 200 if not self.verbose else 4000)]
                    if content.strip()
                    else []
                )
                if self.verbose:
                    lines.append(_tokens(usage))
                return "\n".join(lines) or None
            case ev.ToolCallStarted(name=name, arguments=arguments):
                return f"  -> {name} {_short(json.dumps(arguments, ensure_ascii=False), 160)}"
            case ev.ToolCallFinished(ok=ok, text=text, elapsed_s=elapsed):
                mark = "ok" if ok else "error"
                return f"     {mark} ({elapsed:.2f}s) {_short(text, 160 if not self.verbose else 4000)}"
            case ev.Compacted(tokens_before=before, tokens_after=after):
                return f"  compacted context: {before} -> {after} tokens"
            case ev.RunFinished(status=status, message=message):
                return f"agent {status}: {message}"
        return None


def _tokens(usage: dict[str, int]) -> str:
    prompt, cached = usage.get("prompt_tokens", 0), usage.get("cached_tokens", 0)
    return f"  tokens: {prompt} prompt ({cached} cached), {usage.get('completion_tokens', 0)} completion"


def _short(text: str, limit: int) -> str:
    flat = _SPACES.sub(" ", text).strip(" ")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
