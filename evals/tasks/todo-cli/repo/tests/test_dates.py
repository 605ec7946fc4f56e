from datetime import date, datetime, timedelta, timezone

import pytest

from todo.dates import describe, parse_due

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", date(2024, 5, 1)),
        ("today", date(2024, 3, 10)),
        ("Tomorrow", date(2024, 3, 11)),
        ("+3d", date(2024, 3, 13)),
        ("+2w", date(2024, 3, 24)),
    ],
)
def test_parse_due(text, expected):
    assert parse_due(text, NOW) == expected


def test_parse_due_refuses_nonsense():
    with pytest.raises(ValueError):
        parse_due("next tuesday-ish", NOW)


@pytest.mark.parametrize(
    ("days", "text"), [(0, "today"), (1, "tomorrow"), (-1, "yesterday"), (-3, "3 days ago"), (5, "in 5 days")]
)
def test_describe(days, text):
    assert describe(date(2024, 3, 10) + timedelta(days=days), date(2024, 3, 10)) == text
