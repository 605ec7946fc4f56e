"""Reading the text of a configuration file into sections of raw string values."""

from __future__ import annotations

import re

from cfgparse.errors import ParseError
from cfgparse.names import normalize

SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]$")
KEY = re.compile(r"^[A-Za-z_][\w.-]*$")
COMMENT_CHARS = "#;"


def parse(text: str) -> dict[str, dict[str, str]]:
    """``{section: {key: value}}``; keys before any section go to ``""``."""
    sections: dict[str, dict[str, str]] = {"": {}}
    current = ""
    last_key: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        if raw[:1] in (" ", "\t") and raw.strip() and last_key is not None:
            sections[current][last_key] += " " + strip_comment(raw.strip())
            continue
        line = raw.strip()
        if not line or line[0] in COMMENT_CHARS:
            continue
        match = SECTION.match(line)
        if match:
            current = normalize(match.group("name"))
            sections.setdefault(current, {})
            last_key = None
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ParseError(f"expected 'key = value' or '[section]', got {line!r}", number)
        if not KEY.match(key.strip()):
            raise ParseError(f"invalid key name {key.strip()!r}", number)
        last_key = normalize(key)
        sections[current][last_key] = unquote(strip_comment(value.strip()), number)
    return sections


def strip_comment(value: str) -> str:
    """``value`` without a trailing comment; ``#`` and ``;`` inside quotes are kept."""
    quote = None
    for index, char in enumerate(value):
        if quote:
            if char == "\\":
                continue
            if char == quote and value[index - 1] != "\\":
                quote = None
        elif char in "\"'":
            quote = char
        elif char in COMMENT_CHARS and (index == 0 or value[index - 1].isspace()):
            return value[:index].rstrip()
    return value


def unquote(value: str, line: int) -> str:
    if len(value) >= 1 and value[0] in "\"'":
        quote = value[0]
        if len(value) < 2 or value[-1] != quote:
            raise ParseError(f"unterminated quote in {value!r}", line)
        return value[1:-1].replace("\\" + quote, quote)
    return value
