"""Argument types of the ``bench`` parsers, shared with the UI's parsers (``tui.argtypes``
re-exports the numeric ones: the UI may import bench, not the reverse). Each turns a bad
value into argparse's one-line error (the caller's ``codeagent: error: ...``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

N = TypeVar("N", int, float)


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, not {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, not {text!r}")
    return values


def name_list(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(part.strip() for part in text.split(",") if part.strip())
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}, not {text!r}")
        return names

    return parse


def _above(name: str, convert: Callable[[str], N], floor: N, strict: bool, wanted: str) -> Callable[[str], N]:
    """A parser of ``convert``ed values above ``floor`` (or at it, unless ``strict``), named
    ``name`` (argparse names a value it cannot convert by its parser's name)."""

    def parse(text: str) -> N:
        value = convert(text)
        if value < floor or (strict and value == floor):
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text}")
        return value

    parse.__name__ = parse.__qualname__ = name
    return parse


positive_int = _above("positive_int", int, 0, True, "positive")
positive_float = _above("positive_float", float, 0.0, True, "positive")
at_least_two = _above("at_least_two", int, 2, False, "at least 2 (the first token is not a decode step)")


def layers_or_fit(text: str) -> int | str:
    """A positive number of layers, or ``fit``: as many as the device's memory holds."""
    return "fit" if text == "fit" else positive_int(text)
