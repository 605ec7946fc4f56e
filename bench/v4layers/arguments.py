"""``codeagent bench v4-layers``'s flags and handler (argparse only: parsing the command line
imports no torch; the handler imports the bench when it runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codeagent.bench.argtypes import name_list, positive_float, positive_int
from codeagent.bench.handlers import BenchError, write_results

KINDS = ("sliding", "csa", "hca")
DESCRIPTION = """\
DeepSeek-V4-Flash layers at their real widths on CPU (hidden 4096, 256 routed experts top-6 in
FP4 with a UE8M0 scale per 32, one bf16 shared expert, attention in FP8 with 128x128 block scales,
the compressors, the Lightning indexer and mHC), random weights built in the runtime's formats:
batch-1 decode per layer after a short prompt, the bytes each layer reads per token and the
memory bandwidth measured in the same run, the head apart, and a labelled ESTIMATE of full-depth
decode here and on a server (--server-bandwidth). About 11 GB of memory for the three layers."""


def add(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "v4-layers",
        help="DeepSeek-V4-Flash layers at full width on CPU: per-layer decode vs bytes at bandwidth",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--layers",
        type=name_list(KINDS),
        default=KINDS,
        metavar="A,B",
        help="one layer of each kind named: sliding, csa, hca (default all three)",
    )
    parser.add_argument("--prompt-tokens", type=positive_int, default=256, metavar="N", help="prompt (256)")
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=4,
        metavar="N",
        help="rounds of a bandwidth read and N steps (4)",
    )
    parser.add_argument("--steps", type=positive_int, default=4, metavar="N", help="decode steps a round (4)")
    parser.add_argument(
        "--profile-steps", type=positive_int, default=4, metavar="N", help="steps under cProfile (4)"
    )
    parser.add_argument("--threads", type=positive_int, metavar="N", help="default torch's")
    parser.add_argument(
        "--server-bandwidth",
        type=positive_float,
        default=460.8,
        metavar="GB/S",
        help="the estimate's server (460.8: 12-channel DDR5-4800 EPYC Turin, theoretical)",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="toy widths: checks the harness (timings meaningless)"
    )
    parser.add_argument("--output", type=Path, default=Path("bench-v4layers.json"), help="JSON results file")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.v4layers.report import table
    from codeagent.bench.v4layers.run import Options, bench_v4layers

    options = Options(
        kinds=args.layers, prompt_tokens=args.prompt_tokens, steps=args.steps, rounds=args.rounds,
        profile_steps=args.profile_steps, threads=args.threads, server_bandwidth=args.server_bandwidth * 1e9,
        tiny=args.tiny,
    )  # fmt: skip
    try:
        results = bench_v4layers(options, lambda line: print(line, file=sys.stderr, flush=True))
    except RuntimeError as err:
        raise BenchError(str(err)) from err
    print(table(results), file=sys.stderr)
    return write_results(results, args.output)
