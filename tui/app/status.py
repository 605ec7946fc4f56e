"""The status bar's numbers and how they fit one line.

``Stats`` is what the app knows about the session (attributes down: the chat screen replaces
it as the agent's events come, and the bar, bound to it, redraws); ``status_text`` lays it out for a width, dropping the
least useful fields first, so the bar stays one line from 80 columns up. The context is
marked ``~`` when the client's count is an estimate rather than its own tokenizer's.
Decode speed is the client's own measure when it has one (the embedded runtime), else the
last reply's completion tokens over the time from its first streamed token to its end (over
the whole call when nothing streamed, which then includes prefill); replies faster than
0.2 s show none.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from codeagent.tui.app.plain import plain

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SEPARATOR = " │ "


@dataclass(frozen=True, slots=True)
class Stats:
    model: str = ""
    window: int = 0
    context: int = 0
    exact: bool = True
    prompt: int = 0  # the last model call's prompt tokens ...
    cached: int = 0  # ... and how many of them the prefix cache served
    rate: float | None = None  # decode tokens/s of the last reply
    steps: int = 0
    elapsed: float = 0.0  # of the current (or last) user message
    mode: str = "ask"
    sandbox: bool = True
    confinement: str = "bubblewrap"  # which sandbox: the Landlock fallback is named on the bar


def count(n: int) -> str:
    """1234 -> 1.2k, 128000 -> 128k, 2500000 -> 2.5M."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k".replace(".0k", "k") if n < 10_000 else f"{n // 1000}k"
    return f"{n / 1_000_000:.1f}M".replace(".0M", "M")


def clock(seconds: float) -> str:
    whole = int(seconds)
    return (
        f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
        if whole >= 3600
        else f"{whole // 60}:{whole % 60:02d}"
    )


def _fields(stats: Stats) -> list[tuple[int, Text]]:
    """(priority, piece): lower priorities are dropped first when the line is too narrow."""
    share = f" {100 * stats.context // stats.window}%" if stats.window else ""
    used = ("" if stats.exact else "~") + count(stats.context)
    context = Text(f"ctx {used}/{count(stats.window)}{share}" if stats.window else "ctx –")
    if stats.window and stats.context > 0.8 * stats.window:
        context.stylize("bold red")
    rate = f"{stats.rate:.0f} tok/s" if stats.rate is not None else "– tok/s"
    sandbox = Text("sandbox", style="green") if stats.sandbox else Text("NO SANDBOX", style="bold red")
    if stats.sandbox and stats.confinement != "bubblewrap":
        sandbox = Text(f"sandbox: {stats.confinement}", style="yellow")
    mode = Text(stats.mode, style="bold yellow" if stats.mode == "full-auto" else "bold")
    return [
        (9, plain(stats.model or "no model", "bold cyan")),
        (8, context),
        (7, mode),
        (6, sandbox),
        (5, Text(f"step {stats.steps}")),
        (4, Text(clock(stats.elapsed))),
        (3, Text(f"cache {count(stats.cached)}/{count(stats.prompt)}")),
        (2, Text(rate)),
    ]


def status_text(stats: Stats, width: int) -> Text:
    fields = _fields(stats)
    while len(fields) > 1 and _joined(fields).cell_len > width:
        fields.remove(min(fields, key=lambda field: field[0]))
    line = _joined(fields)
    line.truncate(max(1, width), overflow="ellipsis")
    return line


def _joined(fields: list[tuple[int, Text]]) -> Text:
    return Text(SEPARATOR, style="dim").join(piece for _, piece in fields)
