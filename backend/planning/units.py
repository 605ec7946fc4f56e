"""Quantities as people write them: ``80G`` of memory, a ``128K`` context, and back to text.

Suffixes are binary, as memory is sold and as context windows are counted: ``K`` = 1024,
``M`` = 1024², ``G`` = 1024³, ``T`` = 1024⁴ (``128K`` tokens = 131,072; ``80G`` = 80 GiB).
A trailing ``B`` or ``iB`` is accepted (``80GB``, ``80GiB``: still binary). Fractions are
allowed (``1.5T``); the result is rounded down to a whole number. Anything else, zero or a
negative amount is a ``ValueError`` whose message names the value and the expected form.
"""

from __future__ import annotations

import re

SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_quantity(text: str, what: str) -> int:
    """``text`` (``128K``, ``80G``, ``1.5T``, ``4096``) as a positive whole number."""
    match = QUANTITY.match(text)
    if match is None:
        raise ValueError(
            f"{what} {text!r} is not a number with an optional K, M, G or T suffix (e.g. 128K, 80G)"
        )
    value = int(float(match.group(1)) * SUFFIXES[match.group(2).upper()])
    if value <= 0:
        raise ValueError(f"{what} must be positive, not {text!r}")
    return value


def size(count: float) -> str:
    """Bytes with one decimal in GiB, MiB or KiB, the largest under them (``41.0 GiB``, ``3.2 MiB``)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(count) >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} B"


def per_token(count: float) -> str:
    """Bytes per token, in KiB above 1 KiB (``53.0 KiB``), else in bytes."""
    return f"{count / 1024:.1f} KiB" if count >= 1024 else f"{count:.0f} B"


def tokens(count: int) -> str:
    return f"{count:,}"
