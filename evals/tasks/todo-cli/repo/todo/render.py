"""One line per task for `todo list`."""

from __future__ import annotations

from datetime import date

from todo.dates import describe

TEXT_WIDTH = 40


def shorten(text: str, width: int = TEXT_WIDTH) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when something was cut."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…"


def format_item(item: dict, today: date) -> str:
    mark = "x" if item["done"] else " "
    line = f"[{mark}] {item['id']:>3}  {shorten(item['text'])}"
    if item.get("due_date"):
        line += f"  (due {describe(date.fromisoformat(item['due_date']), today)})"
    if item.get("priority"):
        line += "  " + "!" * item["priority"]
    return line
