import pytest

from cfgparse import values
from cfgparse.errors import ParseError


@pytest.mark.parametrize(("text", "expected"), [("yes", True), ("Off", False), ("1", True), ("false", False)])
def test_bool(text, expected):
    assert values.as_bool(text) is expected


def test_bad_bool():
    with pytest.raises(ParseError):
        values.as_bool("maybe")


def test_int():
    assert values.as_int(" 1_000 ") == 1000
    assert values.as_int("0x10") == 16


def test_list():
    assert values.as_list("a, b ,c") == ["a", "b", "c"]


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("45s", 45.0), ("2h", 7200.0), ("1.5m", 90.0)])
def test_duration(text, seconds):
    assert values.as_duration(text) == seconds


def test_bad_duration():
    with pytest.raises(ParseError):
        values.as_duration("soon")
