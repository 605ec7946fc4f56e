"""Untrusted text on the screen: shown as plain text, never as markup, never as controls.

The app's sinks, where text becomes something Textual draws, each go through ``tui.inert``:

- ``Plain``: the ``Static`` every entry and panel of ours is (or holds). A string becomes a
  Rich ``Text`` (never Textual markup, so ``[@click=app.quit]`` in a file name is just
  text); a ``Text`` keeps its styles, its characters made inert.
- ``plain``: a ``Text`` from untrusted text. Rich's ``Text`` silently drops BEL, backspace,
  VT, FF and CR from what it is given, so text made inert first shows those too.
- ``inert_markdown``: the parser behind the model's Markdown replies. Inert after parsing,
  since Markdown's character references make controls of their own (``&#x202e;`` is U+202E,
  ``&#13;`` a CR); every token's text, info string and attributes go through ``inert``.

The prompt and the ``@`` completions (``prompt.py``) and the status line build on these.
Limit: Markdown links stay links; a click opens the model's URL in the browser.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from rich.text import Span, Text
from textual.widgets import Static

from codeagent.tui.inert import inert


def plain(text: str, style: str = "") -> Text:
    return Text(inert(text), style=style)


def inert_text(text: Text) -> Text:
    """``text`` with its characters made inert and its styles where they were."""
    before = text.plain
    after = inert(before)
    if after == before:
        return text
    moved = _moved(before, {offset for span in text.spans for offset in (span.start, span.end)})
    return Text(
        after,
        style=text.style,
        justify=text.justify,
        overflow=text.overflow,
        no_wrap=text.no_wrap,
        end=text.end,
        tab_size=text.tab_size,
        spans=[Span(moved[span.start], moved[span.end], span.style) for span in text.spans],
    )


def _moved(before: str, offsets: set[int]) -> dict[int, int]:
    """Where each offset of ``before`` lands in ``inert(before)``."""
    moved, last, shift = {}, 0, 0
    for offset in sorted(offsets):
        shift += len(inert(before[last:offset]))
        moved[offset], last = shift, offset
    return moved


def shown(content: str | Text) -> Text:
    return plain(content) if isinstance(content, str) else inert_text(content)


class Plain(Static):
    """A ``Static`` for text that may come from the model, a tool or the repository."""

    def __init__(
        self, content: str | Text = "", *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(shown(content), markup=False, id=id, classes=classes)

    def update(self, content: str | Text = "", *, layout: bool = True) -> None:
        super().update(shown(content), layout=layout)


def inert_markdown() -> MarkdownIt:
    """Textual's own Markdown parser, with the tokens made inert once parsed."""
    parser = MarkdownIt("gfm-like")
    parser.core.ruler.push("inert", _inert_tokens)
    return parser


def _inert_tokens(state: StateCore) -> None:
    pending = list(state.tokens)
    while pending:
        token = pending.pop()
        token.content, token.info, token.markup = inert(token.content), inert(token.info), inert(token.markup)
        token.attrs = {
            name: inert(value) if isinstance(value, str) else value for name, value in token.attrs.items()
        }
        pending.extend(token.children or ())
