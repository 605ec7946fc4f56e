"""What the transcript is made of: one widget per thing that happened.

- ``UserEntry``: what the user sent, with the files attached to it.
- ``AssistantEntry``: a reply as Markdown (code blocks highlighted), streamed as it is written
  through Textual's ``MarkdownStream``, which batches fragments when they come faster than
  they can be drawn.
- ``Foldable``: a one-line header that opens to its full body (Enter, Space or a click);
  ``ReasoningEntry`` (dimmed, closed) and ``ToolEntry`` (name, arguments in short, outcome;
  the full output inside) are foldables.
- ``DiffEntry``: a unified diff, coloured; ``NoticeEntry``: a line from codeagent itself;
  ``FinalEntry``: the summary the model finished with.

Each entry redraws only itself; the transcript around it never re-renders what is done.
Every entry shows its text through ``plain`` (inert, never markup); the Markdown ones parse
with ``plain.inert_markdown``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownStream

from codeagent.tui.app.plain import Plain, inert_markdown, plain
from codeagent.tui.inert import inert

MAX_DIFF_LINES = 400
MAX_BODY_CHARS = 200_000


class TranscriptView(VerticalScroll):
    """The conversation, newest at the bottom; it follows new entries until the user scrolls up."""

    def on_mount(self) -> None:
        self.anchor()


class UserEntry(Plain):
    def __init__(self, text: str, attached: list[str] | None = None) -> None:
        line = Text.assemble(("› ", "bold"), plain(text.replace("\n", "\n  ")))
        if attached:
            line.append(plain("\n  attached: " + ", ".join(attached), style="dim"))
        super().__init__(line, classes="user")


class AssistantEntry(Markdown):
    def __init__(self, text: str = "") -> None:
        super().__init__(text, parser_factory=inert_markdown)
        self.text = text
        self._stream: MarkdownStream | None = None

    async def write(self, fragment: str) -> None:
        if self._stream is None:
            self._stream = Markdown.get_stream(self)
        self.text += fragment
        await self._stream.write(fragment)

    async def settle(self, content: str) -> None:
        """The reply is complete: its final text replaces what streamed, if they differ."""
        if self._stream is not None:
            await self._stream.stop()
        if content != self.text:
            self.text = content
            await self.update(content)


class FinalEntry(Markdown):
    def __init__(self, summary: str) -> None:
        super().__init__(summary, classes="final", parser_factory=inert_markdown)


class Foldable(Widget, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter,space", "toggle", "show/hide", show=False)]
    expanded = reactive(False)

    def __init__(self, head: Text, body: str | Text, classes: str = "") -> None:
        super().__init__(classes=classes)
        self._head, self._body = head, body

    def compose(self):
        yield Plain(self._marked(), classes="head")
        yield Plain(_body(self._body), classes="body")

    def _marked(self) -> Text:
        return Text("▾ " if self.expanded else "▸ ", style="dim") + self._head

    def watch_expanded(self, expanded: bool) -> None:
        self.set_class(expanded, "-expanded")
        if self.is_mounted:
            self.query_one(".head", Plain).update(self._marked())

    def action_toggle(self) -> None:
        self.expanded = not self.expanded

    def on_click(self) -> None:
        self.expanded = not self.expanded

    def show(self, head: Text, body: str | Text | None = None) -> None:
        self._head = head
        self.query_one(".head", Plain).update(self._marked())
        if body is not None:
            self._body = body
            self.query_one(".body", Plain).update(_body(body))


class ReasoningEntry(Foldable):
    def __init__(self, reasoning: str) -> None:
        lines = len(reasoning.strip().splitlines())
        head = Text(f"thinking · {lines} line{'s' * (lines != 1)}", style="dim italic")
        super().__init__(head, plain(reasoning.strip(), style="dim italic"), classes="reasoning")


class ToolEntry(Foldable):
    """A tool call; ``done`` (ok, output) builds it finished, as a resumed session does."""

    def __init__(self, name: str, arguments: dict[str, Any], done: tuple[bool, str] | None = None) -> None:
        self.tool, self.arguments = name, arguments
        if done is None:
            super().__init__(tool_head(name, arguments, Text("…", style="yellow")), "", classes="tool")
        else:
            head = tool_head(name, arguments, outcome(done[0], done[1], None))
            super().__init__(head, done[1], classes="tool")

    def finish(self, ok: bool, text: str, elapsed_s: float | None, interrupted: bool = False) -> None:
        self.show(tool_head(self.tool, self.arguments, outcome(ok, text, elapsed_s, interrupted)), text)

    def waiting(self) -> None:
        self.show(tool_head(self.tool, self.arguments, Text("waiting for approval", style="bold yellow")))


class DiffEntry(Plain):
    def __init__(self, diff: str) -> None:
        super().__init__(diff_text(diff), classes="diff")


class NoticeEntry(Plain):
    """A line from codeagent: kind is info, ok, warn or error (a CSS class)."""

    def __init__(self, text: str | Text, kind: str = "info") -> None:
        super().__init__(text, classes=f"notice {kind}")


def _body(body: str | Text) -> Text:
    if isinstance(body, Text):
        return body
    if len(body) > MAX_BODY_CHARS:
        body = body[:MAX_BODY_CHARS] + f"\n[... {len(body) - MAX_BODY_CHARS} more characters]"
    return plain(body or "(no output)")


def tool_head(name: str, arguments: dict[str, Any], result: Text) -> Text:
    summary = summarize(name, arguments)
    head = Text.assemble(plain(name, "bold"), " ")
    if summary:
        head.append(plain(summary, "cyan"))
        head.append(" ")
    return head + result


def outcome(ok: bool, text: str, elapsed_s: float | None, interrupted: bool = False) -> Text:
    took = f" {elapsed_s:.1f}s" if elapsed_s is not None else ""
    if interrupted:
        return Text("⏹ interrupted" + took, style="yellow")
    if ok:
        return Text("✓" + took, style="green")
    first = next((line for line in inert(text).split("\n") if line.strip()), "failed")
    return plain(f"✗ {first[:100]}{took}", style="red")


def summarize(name: str, args: dict[str, Any]) -> str:
    """The arguments in a few words: what a user needs to recognise the call."""
    match name:
        case "read_file":
            start, end = args.get("start_line"), args.get("end_line")
            lines = f":{start or 1}-{end or ''}" if start or end else ""
            return f"{args.get('path', '')}{lines}"
        case "edit_file" | "write_file":
            return str(args.get("path", ""))
        case "list_files":
            return " ".join(str(args[k]) for k in ("path", "pattern") if args.get(k))
        case "search":
            where = args.get("path") or args.get("glob")
            return f"{args.get('pattern', '')!r}" + (f" in {where}" if where else "")
        case "run":
            return _clip(str(args.get("command", "")).strip().splitlines()[0] if args.get("command") else "")
        case "run_tests":
            return " ".join(map(str, args.get("paths") or []))
        case "apply_patch":
            return " ".join(
                line[6:] for line in str(args.get("patch", "")).splitlines() if line.startswith("+++ b/")
            )
        case "update_plan":
            items = args.get("items")
            return f"{len(items)} steps" if isinstance(items, list) else ""
        case "repo_map":
            return str(args.get("focus") or "")
        case "finish":
            return ""
    return _clip(json.dumps(args, ensure_ascii=False))


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def diff_text(diff: str) -> Text:
    lines = diff.rstrip("\n").split("\n")  # a line break is a newline: CR, FF, ... are shown
    shown = lines[:MAX_DIFF_LINES]
    out = Text()
    for line in shown:
        out.append(plain(line + "\n", _diff_style(line)))
    if len(lines) > len(shown):
        out.append(f"... {len(lines) - len(shown)} more lines (/diff shows everything)\n", style="dim")
    out.rstrip()
    return out


def _diff_style(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "bold"
    if line.startswith("+"):
        return "green"
    if line.startswith("-"):
        return "red"
    if line.startswith("@@"):
        return "cyan"
    return ""
