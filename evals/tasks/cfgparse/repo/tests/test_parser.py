import pytest

from cfgparse.errors import ParseError
from cfgparse.parser import parse

TEXT = """
# a comment
name = top

[Server]
Host = example.org   # the host
port = 8080 ; the port
motd = first line
    second line

[empty]
"""


def test_sections_and_keys():
    assert parse(TEXT) == {
        "": {"name": "top"},
        "server": {"host": "example.org", "port": "8080", "motd": "first line second line"},
        "empty": {},
    }


def test_quoted_values_keep_spaces():
    assert parse('a = "  padded  "\nb = \'single\'')[""] == {"a": "  padded  ", "b": "single"}


def test_hash_inside_a_word_is_not_a_comment():
    assert parse("color = #fff\nurl = http://x/#top")[""] == {"color": "", "url": "http://x/#top"}


def test_unterminated_quote():
    with pytest.raises(ParseError):
        parse('a = "open')


def test_missing_equals():
    with pytest.raises(ParseError, match="expected"):
        parse("[s]\njust words")
