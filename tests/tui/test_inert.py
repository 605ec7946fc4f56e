"""``tui.inert`` over every code point, and ``tui.app.plain``'s styled text built on it."""

from __future__ import annotations

import json
import unicodedata

from rich.text import Span, Text

from codeagent.tui.app.plain import inert_text, plain
from codeagent.tui.inert import _TABLE, CATEGORIES, KEPT, MAX_REMEMBERED, inert

COVERED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
NAMED = {
    "\x1b": "\\u001b",  # ESC
    "\r": "\\u000d",
    "\x07": "\\u0007",  # BEL
    "\x08": "\\u0008",  # backspace
    "\x00": "\\u0000",
    "\x7f": "\\u007f",  # DEL
    "\x85": "\\u0085",  # NEL
    "\x9b": "\\u009b",  # 8-bit CSI
    "\x9d": "\\u009d",  # 8-bit OSC
    "\u061c": "\\u061c",  # Arabic letter mark
    "\u200e": "\\u200e",
    "\u200f": "\\u200f",
    "\u2028": "\\u2028",
    "\ufeff": "\\ufeff",
    "\U000e0041": "\\udb40\\udc41",  # tag letter A: invisible, used to smuggle text
    "\udc9b": "\\udc9b",  # the byte 0x9B of an undecodable file name
    **{chr(code): f"\\u{code:04x}" for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]},
}


def expected(char: str) -> str:
    code = ord(char)
    if char in "\n\t\u200c\u200d" or unicodedata.category(char) not in COVERED_CATEGORIES:
        return char
    if code > 0xFFFF:
        high, low = divmod(code - 0x10000, 0x400)
        return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"
    return f"\\u{code:04x}"


def test_every_code_point_in_one_pass():
    everything = "".join(map(chr, range(0x110000)))
    shown = inert(everything)
    assert shown == "".join(map(expected, everything))
    assert inert(shown) == shown  # idempotent: what it writes has nothing left to escape
    assert len(_TABLE) <= MAX_REMEMBERED  # what it remembers stays bounded


def test_every_covered_code_point_alone_becomes_printable_ascii():
    covered = [
        chr(code)
        for code in range(0x110000)
        if unicodedata.category(chr(code)) in COVERED_CATEGORIES and chr(code) not in KEPT
    ]
    assert len(covered) > 2000  # C0, DEL, C1, the format characters, the surrogates
    for char in covered:
        shown = inert(char)
        assert shown.isascii() and shown.isprintable() and shown.startswith("\\u"), hex(ord(char))
    assert CATEGORIES == COVERED_CATEGORIES


def test_the_named_attack_characters():
    for char, shown in NAMED.items():
        assert inert(f"a{char}b") == f"a{shown}b"


def test_newline_tab_and_joiners_are_kept():
    text = (
        "line one\n\tline two 👨\u200d👩\u200d👧 \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 café 中文"
    )
    assert inert(text) == text


def test_json_passed_through_stays_the_same_json():
    value = {"message": "ok\x1b]52;c;eA==\x07 \x9b2K \x7f \u202eevil \U000e0041 \u2028 café", "n": 1}
    written = inert(json.dumps(value, ensure_ascii=False))
    assert inert(written) == written
    assert json.loads(written) == value


def test_styled_text_keeps_its_styles_around_the_placeholders():
    text = Text.assemble(("a\x1bb", "red"), "\u202e", ("c\x9bd", "bold"))
    shown = inert_text(text)
    assert shown.plain == "a\\u001bb\\u202ec\\u009bd"
    assert shown.spans == [Span(0, 8, "red"), Span(14, 22, "bold")]


def test_plain_shows_what_rich_would_drop():
    assert plain("a\rb\x07c\x08d").plain == "a\\u000db\\u0007c\\u0008d"
    assert Text("a\rb").plain == "ab"  # why: Rich drops CR, BEL, BS, VT and FF without a trace
