"""Due dates: parsing what users type, and saying how far away a date is."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

RELATIVE = re.compile(r"^\+(\d+)([dw])$")


def parse_due(text: str, now: datetime) -> date:
    """``YYYY-MM-DD``, ``today``, ``tomorrow``, ``+Nd`` or ``+Nw``.

    Relative dates count from the calendar day of ``now``, an aware datetime in the
    user's time zone.
    """
    text = text.strip().lower()
    today = now.date()
    if text == "today":
        return today
    if text == "tomorrow":
        return today + timedelta(days=1)
    match = RELATIVE.match(text)
    if match:
        count = int(match.group(1))
        return today + timedelta(days=count * (7 if match.group(2) == "w" else 1))
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"cannot read due date {text!r}: use YYYY-MM-DD, today, tomorrow, +Nd or +Nw") from None


def describe(due: date, today: date) -> str:
    days = (due - today).days
    if days == 0:
        return "today"
    if days == 1:
        return "tomorrow"
    if days == -1:
        return "yesterday"
    if days < 0:
        return f"{-days} days ago"
    return f"in {days} days"
