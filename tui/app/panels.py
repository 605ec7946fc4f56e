"""The fixed parts of the screen around the transcript: plan, activity, approval, status.

- ``PlanPanel``: the ``update_plan`` checklist (its ``plan``), beside the transcript on wide
  screens and above the prompt on narrow ones (the app's breakpoints); hidden while there is
  no plan.
- ``ActivityLine``: what the agent is doing and for how long (loading the model, reading the
  prompt, writing, running a tool); hidden when idle, so an idle screen never redraws.
- ``ApprovalPanel``: a pending edit or command, shown in full (scrollable), answered with
  y / n / a from the keyboard; it posts ``Answered``.
- ``StatusBar``: its ``stats`` (``status.Stats``) laid out for the current width.

``plan`` and ``stats`` are reactives the chat screen binds to its own (``data_bind``): a
panel redraws when they change.

Each is, or holds, a ``plain.Plain``: what they show is inert and never markup.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive

from codeagent.tui.app.entries import diff_text
from codeagent.tui.app.plain import Plain, plain
from codeagent.tui.app.preview import Preview
from codeagent.tui.app.status import SPINNER, Stats, status_text

WRITING = "the model is writing"  # the phase that counts tokens as they come
MARKS = {"completed": ("✓", "green"), "in_progress": ("▶", "bold yellow"), "pending": ("○", "dim")}


class PlanPanel(Plain):
    plan: reactive[list[dict[str, str]]] = reactive(list)

    def watch_plan(self, plan: list[dict[str, str]]) -> None:
        self.show(plan)

    def show(self, plan: list[dict[str, str]]) -> None:
        self.set_class(not plan, "-empty")
        lines = Text("Plan\n", style="bold")
        for item in plan:
            mark, style = MARKS.get(item.get("status", "pending"), MARKS["pending"])
            text_style = "dim" if item.get("status") == "completed" else style.replace("bold yellow", "bold")
            lines.append(f"{mark} ", style=style)
            lines.append(plain(str(item.get("step", "")) + "\n", text_style))
        lines.rstrip()
        self.update(lines)


class ActivityLine(Plain):
    def show(self, text: Text | None) -> None:
        self.set_class(text is None, "-idle")
        if text is not None:
            self.update(text)

    def working(self, phase: str, now: float, elapsed: float, tokens: int, interruptible: bool) -> None:
        """``phase`` under a spinner, with the tokens written so far and the time it has taken."""
        frame = SPINNER[int(now * 8) % len(SPINNER)]
        writing = f" · {tokens} tokens" if phase == WRITING else ""
        self.show(
            Text.assemble(
                (frame + " ", "bold cyan"),
                plain(phase + writing),
                f" · {int(elapsed)}s",
                ("   esc interrupts" if interruptible else "", "dim"),
            )
        )


class StatusBar(Plain):
    stats: reactive[Stats] = reactive(Stats)

    def watch_stats(self) -> None:
        self.show()

    def show(self) -> None:
        self.update(status_text(self.stats, max(1, self.size.width or 80)))

    def on_resize(self) -> None:
        self.show()


class ApprovalPanel(Vertical, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer('allow')", "approve", show=False),
        Binding("n", "answer('deny')", "deny", show=False),
        Binding("a", "answer('always')", "always", show=False),
        Binding("up", "scroll(-1)", show=False),
        Binding("down", "scroll(1)", show=False),
        Binding("pageup", "scroll(-10)", show=False),
        Binding("pagedown", "scroll(10)", show=False),
    ]

    class Answered(Message):
        def __init__(self, choice: str) -> None:
            super().__init__()
            self.choice = choice

    def compose(self):
        yield Plain(classes="title")
        with VerticalScroll(classes="body"):
            yield Plain(classes="content")
        yield Plain(classes="keys")

    def ask(self, preview: Preview, kind: str) -> None:
        always = "always allow edits this session" if kind == "edit" else "always allow this command"
        self.query_one(".title", Plain).update(
            Text.assemble(("Approve? ", "bold yellow"), plain(preview.title, "bold"))
        )
        body = diff_text(preview.body) if preview.is_diff else plain(preview.body, "bold")
        self.query_one(".content", Plain).update(body)
        keys = Text.assemble(
            ("y", "bold reverse"),
            " approve  ",
            ("n", "bold reverse"),
            " deny  ",
            ("a", "bold reverse"),
            f" {always}  ",
            ("esc", "bold reverse"),
            " deny and interrupt",
        )
        self.query_one(".keys", Plain).update(keys)
        self.query_one(".body", VerticalScroll).scroll_home(animate=False)
        self.remove_class("-idle")
        self.screen.add_class("-asking")
        self.focus()

    def close(self) -> None:
        self.add_class("-idle")
        self.screen.remove_class("-asking")

    def action_answer(self, choice: str) -> None:
        self.post_message(self.Answered(choice))

    def action_scroll(self, rows: int) -> None:
        self.query_one(".body", VerticalScroll).scroll_relative(y=rows, animate=False)
