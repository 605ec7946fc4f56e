"""``codeagent bench packing``'s flags (argparse only: parsing the command line imports no torch)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from codeagent.bench.argtypes import name_list, positive_int

VARIANT_NAMES = ("fp8", "fp4", "fp4-int8")  # backend/packing.py's VARIANTS, and fp4 with int8 activations


def add(sub: argparse._SubParsersAction, handler: Callable[..., int]) -> None:
    packing = sub.add_parser(
        "packing",
        help="--pack's accuracy: logits of a model packed as fp8 / fp4 (/ fp4 with int8 activations) against it in full precision",
        description="Logit error (max and mean, relative), top-1 agreement over teacher-forced positions "
        "and greedy-token agreement of each packed variant against the same weights in full precision. "
        "Without --model: the tiny random Qwen3-MoE and DeepSeek-V4 (seconds on a CPU).",
    )
    packing.add_argument("--model", type=Path, metavar="DIR", help="a bf16 or float32 checkpoint folder")
    packing.add_argument(
        "--variants",
        type=name_list(VARIANT_NAMES),
        default=VARIANT_NAMES,
        metavar="A,B",
        help="fp8 (FP8 weights), fp4 (FP4 experts, FP8 dense and head), fp4-int8 (fp4 with the FP4 "
        "products' activations quantized to int8 per 32 inputs, where the CPU has AVX512-VNNI); default all",
    )
    packing.add_argument(
        "--dtype", choices=["bfloat16", "float32"], default="bfloat16", help="full precision (bfloat16)"
    )
    packing.add_argument(
        "--prompt-tokens", type=positive_int, default=16, metavar="N", help="prefilled tokens (16)"
    )
    packing.add_argument(
        "--positions", type=positive_int, default=64, metavar="N", help="logits compared, teacher-forced (64)"
    )
    packing.add_argument(
        "--greedy-tokens", type=positive_int, default=16, metavar="N", help="greedy tokens compared (16)"
    )
    packing.add_argument("--output", type=Path, default=Path("bench-packing.json"), help="JSON results file")
    packing.set_defaults(handler=handler)
