"""Progress lines for headless runs: one short line per step, tool call and outcome, on stderr,
so stdout stays free for the machine-readable result."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from codeagent.agent import events as ev


class ProgressPrinter:
    def __init__(self, stream: TextIO = sys.stderr, verbose: bool = False) -> None:
        self.stream = stream
        self.verbose = verbose

    def __call__(self, event: ev.Event) -> None:
        line = self._line(event)
        if line is not None:
            print(line, file=self.stream, flush=True)

    def _line(self, event: ev.Event) -> str | None:
        match event:
            case ev.StepStarted(step=step):
                return f"step {step}"
            case ev.AssistantMessage(content=content) if content.strip():
                return "  model: " + _short(content, 200 if not self.verbose else 4000)
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


def _short(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
