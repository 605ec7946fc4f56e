"""``codeagent bench cpu``'s flags (argparse only: parsing the command line imports no torch)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from codeagent.bench.argtypes import name_list, positive_int

DESCRIPTION = """\
Our engine on a random Qwen3-MoE at Qwen3-30B-A3B's layer shapes, at least 4 GB in bf16 (written
once to --folder): batch-1 decode, 8 concurrent sequences and a --prefill-token prefill, each
decode figure also a fraction of the memory bandwidth measured in the same run; with
--llama-cpp, llama.cpp on the same weights (BF16, Q8_0, Q4_K_M) with the same threads.

Getting a llama.cpp build (no internet needed beyond PyPI):
  pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36
  tar xzf llama_cpp_python-0.3.36.tar.gz
  cd llama_cpp_python-0.3.36/vendor/llama.cpp
  cmake -S . -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
  cmake --build build -j --target llama-bench llama-batched-bench llama-quantize llama-completion
then pass --llama-cpp llama_cpp_python-0.3.36/vendor/llama.cpp (see docs/bench/llama-cpp.md)."""


def add(sub: argparse._SubParsersAction, handler: Callable[..., int]) -> None:
    cpu = sub.add_parser(
        "cpu",
        help="a >4 GB Qwen3-30B-A3B-shaped MoE on CPU: decode, 8 sequences, prefill, vs llama.cpp and bandwidth",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cpu.add_argument("--llama-cpp", type=Path, metavar="DIR", help="a llama.cpp source tree built with cmake")
    cpu.add_argument("--folder", type=Path, help="the model's folder (default: in codeagent's cache)")
    cpu.add_argument(
        "--dtypes",
        type=name_list(("bfloat16", "float32", "fp8", "fp4")),
        default=("bfloat16", "fp8", "fp4"),
        metavar="A,B",
        help="ours: bfloat16, float32, fp8 (FP8 weights), fp4 (FP4 experts, FP8 attention, INT6 head); "
        "default bfloat16,fp8,fp4",
    )
    cpu.add_argument(
        "--quants",
        type=name_list(("bf16", "q8_0", "q4_k_m", "f32")),
        default=("bf16", "q8_0", "q4_k_m"),
        metavar="A,B",
        help="llama.cpp's formats: bf16, q8_0, q4_k_m, f32 (default the first three)",
    )
    cpu.add_argument("--prefill", type=positive_int, default=8192, metavar="N", help="prefill prompt (8192)")
    cpu.add_argument(
        "--prompt-tokens", type=positive_int, default=32, metavar="N", help="decode prompts (32)"
    )
    cpu.add_argument("--new-tokens", type=positive_int, default=32, metavar="N", help="tokens decoded (32)")
    cpu.add_argument(
        "--threads", type=positive_int, metavar="N", help="both sides' threads (default torch's)"
    )
    cpu.add_argument("--repeats", type=positive_int, default=2, metavar="N", help="llama-bench -r (2)")
    cpu.add_argument(
        "--rounds",
        type=int,
        default=5,
        metavar="N",
        help="batch-1 decode of both sides in turns, N rounds (5; 0: off)",
    )
    cpu.add_argument("--layers", type=positive_int, metavar="N", help="instead of the fewest making 4 GB")
    cpu.add_argument(
        "--tiny", action="store_true", help="toy shapes: checks the harness (timings meaningless)"
    )
    cpu.add_argument("--output", type=Path, default=Path("bench-cpu.json"), help="JSON results file")
    cpu.set_defaults(handler=handler)
