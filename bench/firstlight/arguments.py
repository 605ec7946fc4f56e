"""``codeagent bench first-light``'s flags and handler (argparse only: parsing imports no torch)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from codeagent.bench.argtypes import name_list, positive_float
from codeagent.bench.handlers import BenchError

STAGES = (
    "kernel-tests", "kernels", "gpu-qwen3-coder", "gpu-vs-transformers", "gpu-deepseek-v4-flash", "gpu-qwen3-next",
)  # fmt: skip


def add(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "first-light",
        help="the first run on a GPU in one command: kernel tests, kernels, bench gpu for three families, targets",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path(os.environ.get("OUT") or "first-light"),
        metavar="DIR",
        help="where the JSON files go (default $OUT, else ./first-light)",
    )
    parser.add_argument(
        "--budget", type=positive_float, default=540.0, metavar="S", help="seconds for the whole run (540)"
    )
    parser.add_argument("--stages", type=name_list(STAGES), default=STAGES, metavar="A,B", help="default all")
    parser.add_argument(
        "--tiny", action="store_true", help="every stage at tiny shapes on the CPU (a dry run of the harness)"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace, config: object) -> int:
    """Run the stages; exit 0 when every stage that ran succeeded, 1 when one failed or overran."""
    from codeagent.bench.firstlight.report import table
    from codeagent.bench.firstlight.run import first_light
    from codeagent.bench.firstlight.stages import plan

    out = args.output_dir.resolve()
    if out.exists() and not out.is_dir():
        raise BenchError(f"--output-dir {out} is not a folder")
    stages = [s for s in plan(out, args.tiny) if s.name in args.stages]
    summary = first_light(
        stages,
        out,
        args.budget,
        args.tiny,
        lambda line: print(f"[first-light] {line}", file=sys.stderr, flush=True),
    )
    print(table(summary), file=sys.stderr)
    print(f"written to {out}", file=sys.stderr)
    return 1 if any(s["status"] in ("failed", "timeout") for s in summary["stages"]) else 0
