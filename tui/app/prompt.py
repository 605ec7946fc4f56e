"""The prompt: a multi-line editor that sends on Enter, with history and ``@path`` completion.

Keys: Enter sends; Ctrl+J (what terminals send for Ctrl+Enter too), Shift+Enter and Alt+Enter
(where the terminal reports them) insert a new line. Up on the first line and Down on the last
walk the history (``history.History``). While ``@fragment`` is being typed, ``Completions``
above the prompt lists matching files; Tab (or Enter) takes the highlighted one, Up/Down move,
Esc closes it. Most terminals send Shift+Enter as plain Enter, hence Ctrl+J.

What the prompt holds is what it shows: every edit (typing, a paste, a completed path) and
recalled history come in inert (``tui.inert``; a pasted CR or CRLF is a newline), so the
message sent is the text the user saw. The completions show file names as plain text
(never markup, controls visible) and complete the path as it is, made inert by that edit:
a file whose name holds control characters can still be read by the model's tools, not
attached with ``@``.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import events
from textual.message import Message
from textual.widgets import OptionList, TextArea
from textual.widgets.option_list import Option
from textual.widgets.text_area import Edit, EditResult

from codeagent.tui.app.attach import candidates, fragment
from codeagent.tui.app.history import History
from codeagent.tui.app.plain import plain
from codeagent.tui.inert import inert

NEWLINE_KEYS = ("ctrl+j", "shift+enter", "alt+enter", "ctrl+enter")


class Completions(OptionList):
    """File paths matching the ``@`` being typed; hidden while there are none."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(markup=False, id=id, classes=classes)
        self.paths: list[str] = []

    def offer(self, paths: list[str]) -> None:
        self.paths = list(paths)
        self.clear_options()
        self.add_options([Option(plain(path)) for path in paths])
        self.set_class(not paths, "-idle")
        if paths:
            self.highlighted = 0

    @property
    def open(self) -> bool:
        return not self.has_class("-idle") and self.option_count > 0

    def close(self) -> None:
        self.offer([])

    def chosen(self) -> str | None:
        if not self.open or self.highlighted is None:
            return None
        return self.paths[self.highlighted]


class PromptInput(TextArea):
    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(
        self, history: History, files: Callable[[], list[str]], completions: Completions, **kw
    ) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus", **kw)
        self.sent = history
        self.files = files
        self.completions = completions

    def edit(self, edit: Edit) -> EditResult:
        return super().edit(
            Edit(_typed(edit.text), edit.from_location, edit.to_location, edit.maintain_selection_offset)
        )

    def load_text(self, text: str) -> None:
        super().load_text(_typed(text))

    async def _on_key(self, event: events.Key) -> None:
        handled = self._special(event.key)
        if handled:
            event.stop()
            event.prevent_default()
            return
        await super()._on_key(event)

    def _special(self, key: str) -> bool:
        if key in NEWLINE_KEYS:
            self.insert("\n")
            return True
        if self.completions.open and key in ("tab", "enter"):
            self._complete()
            return True
        if self.completions.open and key in ("up", "down"):
            self.completions.action_cursor_up() if key == "up" else self.completions.action_cursor_down()
            return True
        if key == "enter":
            self._submit()
            return True
        if key == "up" and self.cursor_location[0] == 0:
            return self._recall(self.sent.older(self.text))
        if key == "down" and self.cursor_location[0] == self.document.line_count - 1:
            return self._recall(self.sent.newer())
        return False

    def _submit(self) -> None:
        text = self.text
        if not text.strip():
            return
        self.sent.add(text.strip())
        self.clear()
        self.completions.close()
        self.post_message(self.Submitted(text.strip()))

    def _recall(self, text: str | None) -> bool:
        if text is None:
            return False
        self.load_text(text)
        self.move_cursor(self.document.end)
        return True

    def _complete(self) -> None:
        chosen = self.completions.chosen()
        row, column = self.cursor_location
        typed = fragment(self.document.get_line(row)[:column])
        if chosen is not None and typed is not None:
            self.replace(chosen + " ", (row, column - len(typed)), (row, column))
        self.completions.close()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        row, column = self.cursor_location
        typed = fragment(self.document.get_line(row)[:column])
        self.completions.offer(candidates(self.files(), typed) if typed is not None else [])


def _typed(text: str) -> str:
    return inert(text.replace("\r\n", "\n").replace("\r", "\n"))
