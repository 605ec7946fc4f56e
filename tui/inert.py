"""Inert text: what codeagent writes for a terminal shows every character and controls nothing.

Text from the model, tool output, file names, diffs, issue titles and commit messages may be
written by an attacker (the threat model in DESIGN.md). A terminal acts on some characters
instead of showing them: ESC and the 8-bit CSI (U+009B) start sequences that set the
clipboard (OSC 52) or the window title (OSC 0), move the cursor and erase lines; CR and
backspace overwrite what was written; BEL rings; bidi controls reorder a line so that it
reads differently from what it holds. ``inert`` replaces each such character with a visible
placeholder, and every sink that writes text for a terminal goes through it: the headless
progress lines (``tui.headless``), the commands' printed results and errors
(``tui.commands``, ``tui.cli``, ``tui.eval_command``, ``tui.backend_commands``), and the
terminal UI (``tui.app.plain``).

Made visible, by Unicode general category (``unicodedata`` of the running Python, looked up
once per distinct character and remembered, up to ``MAX_REMEMBERED`` characters before the
table starts over; a newer Unicode's new format characters are covered without a list to
keep up):

- Cc: C0 controls (ESC, CR, BEL, backspace, ...), DEL and the C1 controls U+0080-U+009F;
  newline and tab are kept.
- Cf: format characters: bidi embeddings, overrides, isolates and marks (U+202A-U+202E,
  U+2066-U+2069, U+200E/U+200F, U+061C), zero-width space, word joiner, BOM, soft hyphen,
  interlinear annotations, tag characters. Kept: ZWNJ and ZWJ (U+200C, U+200D), which join
  letters in many scripts and emoji, and move or hide nothing.
- Cs: lone surrogates (an undecodable file name read with ``surrogateescape``), which a
  stream writing with ``surrogateescape`` turns back into raw bytes such as 0x9B.
- Zl, Zp: U+2028 and U+2029, line breaks to some programs and not to terminals.

Notation: ``\\uXXXX`` with four lower-case hex digits, the escape JSON, JavaScript and
Python share; a character beyond U+FFFF is written as its UTF-16 pair (``\\udb40\\udc01``
for U+E0001), as JSON writes it. So JSON passed through ``inert`` stays valid JSON with the
same value, and ``inert`` is idempotent (a placeholder is printable ASCII).

Limits: placeholders are not quoted, so a text holding the six characters ``\\u001b`` looks
the same as one holding ESC (neither is acted on, which is the point). Look-alikes that are
not controls (homoglyphs, stacked combining marks, ZWJ inside a word) are left alone. Bytes a
child process writes straight to an inherited terminal never pass through here; codeagent
captures its commands' output.
"""

from __future__ import annotations

import re
import unicodedata

CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
KEPT = frozenset("\n\t\u200c\u200d")
MAX_REMEMBERED = 1 << 16  # distinct characters (about 4 MB); all 1.1M code points would take 74 MB
_PRINTABLE_ASCII = re.compile(r"[\t\n\x20-\x7e]*")  # the common case: nothing to do


class _Placeholders(dict[int, "str | int"]):
    """``str.translate``'s table, filled as characters come: a placeholder, or the character."""

    def __missing__(self, code: int) -> str | int:
        if len(self) >= MAX_REMEMBERED:
            self.clear()
        char = chr(code)
        shown: str | int = code
        if char not in KEPT and unicodedata.category(char) in CATEGORIES:
            shown = _escape(code)
        self[code] = shown
        return shown


def _escape(code: int) -> str:
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    high, low = divmod(code - 0x10000, 0x400)
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


_TABLE = _Placeholders()


def inert(text: str) -> str:
    """``text`` with every control character but newline and tab shown as ``\\uXXXX``."""
    if _PRINTABLE_ASCII.fullmatch(text):
        return text
    return text.translate(_TABLE)
