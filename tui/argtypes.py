"""Argument types shared by the command-line parsers: each turns a bad value into argparse's
one-line error (the caller's ``codeagent: error: ...``). The numeric ones are the bench
parsers' too, so they live in ``bench.argtypes`` (the UI may import bench, not the reverse).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codeagent.bench.argtypes import positive_float, positive_int

__all__ = ["add_budgets", "add_disk_cache", "add_parallel", "port", "positive_float", "positive_int"]

PACK_VARIANTS = ("fp8", "fp4")  # backend/packing.py's VARIANTS (named here: parsing imports no torch)


def add_parallel(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--tp N`` and ``--ep``: the embedded model split across ranks (``backend/distributed``);
    ``--cpu-experts`` and ``--pack``: where its experts live and how its weights are stored."""
    parser.add_argument(
        "--tp",
        type=positive_int,
        default=1,
        metavar="N",
        help="split the embedded model across N ranks: this machine's GPUs, or torchrun's processes (default 1)",
    )
    parser.add_argument(
        "--ep", action="store_true", help="with --tp: divide the routed experts among the ranks whole"
    )
    parser.add_argument(
        "--cpu-experts",
        type=expert_count,
        default=0,
        metavar="N|auto",
        help="keep N routed experts of every MoE layer in host memory, computed on the CPU; auto: as many "
        "as the GPU's free memory needs (default 0)",
    )
    parser.add_argument(
        "--pack",
        choices=PACK_VARIANTS,
        help="opt-in: convert a bf16/float32 checkpoint's weights after loading, trading accuracy for "
        "memory and speed; fp8: dense projections, routed experts and the LM head to FP8 (128x128 block "
        "scales), fp4: routed experts to FP4 (a scale per 32 inputs), the LM head to INT6 (6.5 bits a "
        "weight), the rest FP8 (default: off)",
    )


def add_disk_cache(parser: argparse.ArgumentParser) -> None:
    """``--disk-cache DIR`` and ``--no-disk-cache``: where the KV cache's disk tier lives, or none."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--disk-cache",
        type=Path,
        metavar="DIR",
        help="keep finished KV blocks on disk below DIR, one folder per model, so a restart answers "
        "prompts it has seen from there (default: $XDG_CACHE_HOME/codeagent/kv, the embedded agent's)",
    )
    where.add_argument(
        "--no-disk-cache", action="store_true", help="keep the KV cache in memory only: a restart starts cold"
    )


def expert_count(text: str) -> int:
    """``--cpu-experts``: a count of experts, or ``auto`` (-1)."""
    if text == "auto":
        return -1
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of experts or 'auto', not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of experts or 'auto', not {text!r}")
    return value


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
