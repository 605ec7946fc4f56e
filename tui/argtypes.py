"""Argument types shared by the command-line parsers: each turns a bad value into argparse's
one-line error (the caller's ``codeagent: error: ...``). The numeric ones are the bench
parsers' too, so they live in ``bench.argtypes`` (the UI may import bench, not the reverse).
"""

from __future__ import annotations

import argparse

from codeagent.bench.argtypes import positive_float, positive_int

__all__ = ["add_budgets", "port", "positive_float", "positive_int"]


def add_budgets(group: argparse._ArgumentGroup, time_help: str) -> None:
    """The run's budget flags, shared by ``fix`` and ``eval`` (where they are per task)."""
    group.add_argument("--max-steps", type=positive_int, metavar="N", help="model calls at most (default 60)")
    group.add_argument(
        "--max-tokens", type=positive_int, metavar="N", help="prompt + completion tokens at most"
    )
    group.add_argument("--max-time", type=positive_float, metavar="SECONDS", help=time_help)


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, not {text}")
    return value
