"""``codeagent bench ...``: the ``bench`` subcommand and its scenarios' arguments.

``register`` adds ``bench`` to the ``codeagent`` parser's subcommands (the one call the
CLI makes), each scenario with its flags and its handler (``bench.handlers``: imported
here, it imports its scenario only when it runs, so parsing stays free of torch). The
parser class is the caller's (``add_subparsers`` reuses it), so a bad flag is the CLI's
one-line usage error. ``codeagent bench --config NAME --random-weights`` is the issue's
spelling of ``bench gpu`` and runs it with its defaults.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from codeagent.bench import agent_cache_arguments, handlers, localise_arguments, packing_arguments
from codeagent.bench import attempts as attempts_bench
from codeagent.bench.argtypes import (
    at_least_two,
    int_list,
    layers_or_fit,
    name_list,
    positive_float,
    positive_int,
)
from codeagent.bench.cpu import arguments as cpu_arguments
from codeagent.bench.firstlight import arguments as firstlight_arguments
from codeagent.bench.handlers import BenchError
from codeagent.bench.v4layers import arguments as v4layers_arguments

__all__ = ["GPU_CONFIGS", "KERNEL_NAMES", "BenchError", "register"]

Subparsers = argparse._SubParsersAction  # what ``add_subparsers`` returns
GPU_CONFIGS = ("qwen3-coder-30b-a3b", "deepseek-v4-flash", "qwen3-next-80b-a3b")
KERNEL_NAMES = (
    "rms_norm", "rotary", "moe_routing", "fused_moe", "fused_moe_fp4", "sampling", "paged_attention_decode",
    "paged_attention_prefill", "v4_sink_attention", "v4_sink_attention_from_mask", "v4_indexer_topk",
    "v4_mhc_sinkhorn",
)  # fmt: skip


def register(commands: Subparsers) -> None:
    """Add ``codeagent bench`` and every scenario to the ``codeagent`` parser's subcommands."""
    parser = commands.add_parser("bench", help="run a benchmark and write its JSON results")
    parser.add_argument(
        "--config",
        dest="gpu_config",
        choices=GPU_CONFIGS,
        metavar="NAME",
        help="with --random-weights: 'bench gpu --config NAME --random-weights' with its defaults",
    )
    parser.add_argument("--random-weights", action="store_true", help="see 'bench gpu --help'")
    parser.set_defaults(handler=functools.partial(_shorthand, parser))
    sub = parser.add_subparsers(dest="bench", metavar="SCENARIO")
    _add_cpu_scenarios(sub)
    _add_engine(sub)
    _add_codebase(sub)
    cpu_arguments.add(sub, handlers.bench_cpu)
    agent_cache_arguments.add(sub)
    localise_arguments.add(sub)
    packing_arguments.add(sub, handlers.bench_packing)
    _add_kernels(sub)
    _add_gpu(sub)
    v4layers_arguments.add(sub)
    firstlight_arguments.add(sub)
    attempts_bench.register(sub)


def _add_cpu_scenarios(sub: Subparsers) -> None:
    repomap = sub.add_parser("repomap", help="repo map build time, cold and cached")
    repomap.add_argument("path", type=Path, help="repository to map")
    repomap.add_argument("--output", type=Path, default=Path("bench-repomap.json"), help="JSON results file")
    repomap.set_defaults(handler=handlers.bench_repomap)
    tools = sub.add_parser("tools", help="overhead per tool call")
    tools.add_argument("--calls", type=positive_int, default=100, help="calls per tool (default 100)")
    tools.add_argument("--output", type=Path, default=Path("bench-tools.json"), help="JSON results file")
    tools.set_defaults(handler=handlers.bench_tools)
    grammar = sub.add_parser(
        "grammar", help="constrained decoding: valid tool calls, and the masks' cost a token"
    )
    grammar.add_argument(
        "--seeds", type=positive_int, default=20, help="replies per schema and side (default 20)"
    )
    grammar.add_argument(
        "--steps", type=positive_int, default=48, help="new tokens per timed reply (default 48)"
    )
    grammar.add_argument("--output", type=Path, default=Path("bench-grammar.json"), help="JSON results file")
    grammar.set_defaults(handler=handlers.bench_grammar)
    sandbox = sub.add_parser("sandbox", help="per-command overhead of the sandbox")
    sandbox.add_argument("--calls", type=positive_int, default=100, help="commands per variant (default 100)")
    sandbox.add_argument("--output", type=Path, default=Path("bench-sandbox.json"), help="JSON results file")
    sandbox.set_defaults(handler=handlers.bench_sandbox)
    load = sub.add_parser("load", help="peak memory while loading a random checkpoint")
    load.add_argument("--size-gb", type=positive_float, default=2.0, help="checkpoint size (default 2)")
    load.add_argument(
        "--tp",
        dest="tp_sizes",
        type=int_list,
        default=(),
        metavar="N,N",
        help="also load it split across N ranks",
    )
    load.add_argument("--output", type=Path, default=Path("bench-load.json"), help="JSON results file")
    load.set_defaults(handler=handlers.bench_load)
    generate = sub.add_parser("generate", help="decode speed against transformers on a small random MoE")
    generate.add_argument("--prompt-tokens", type=positive_int, default=32, metavar="N")
    generate.add_argument("--new-tokens", type=positive_int, default=64, metavar="N")
    generate.add_argument(
        "--output", type=Path, default=Path("bench-generate.json"), help="JSON results file"
    )
    generate.set_defaults(handler=handlers.bench_generate)


def _add_engine(sub: Subparsers) -> None:
    engine = sub.add_parser(
        "engine",
        help="engine speed on a small random MoE: decode vs transformers, cached follow-up TTFT, disk, contexts",
    )
    engine.add_argument(
        "--scenarios",
        type=name_list(("decode", "prefix", "disk", "frontier")),
        default=("decode", "prefix", "disk", "frontier"),
        metavar="A,B",
        help="any of decode, prefix, disk, frontier (default all)",
    )
    engine.add_argument(
        "--prefixes", type=int_list, default=(2048, 8192, 32768), metavar="N,N", help="follow-up prefixes"
    )
    engine.add_argument(
        "--contexts",
        type=int_list,
        default=(2048, 4096, 8192, 16384),
        metavar="N,N",
        help="frontier contexts",
    )
    engine.add_argument("--new-tokens", type=positive_int, default=64, metavar="N")
    engine.add_argument(
        "--family",
        type=name_list(("qwen3-moe", "qwen3-next")),
        default=("qwen3-moe",),
        metavar="A,B",
        help="the random model: qwen3-moe, qwen3-next (Gated DeltaNet + gated attention + MoE), "
        "or both in one run, frontiers side by side",
    )
    engine.add_argument(
        "--dtypes",
        type=name_list(("float32", "bfloat16")),
        default=("float32", "bfloat16"),
        metavar="A,B",
        help="dtypes of the decode scenario: float32, bfloat16 (default both)",
    )
    engine.add_argument(
        "--tp",
        type=positive_int,
        default=1,
        metavar="N",
        help="instead: decode at batch 1 and 8 split across N ranks against one process (communication cost)",
    )
    engine.add_argument("--output", type=Path, default=Path("bench-engine.json"), help="JSON results file")
    engine.set_defaults(handler=handlers.bench_engine)


def _add_codebase(sub: Subparsers) -> None:
    codebase = sub.add_parser(
        "codebase", help="whole codebase in context: first-token time of cold, warm and disk-cached turns"
    )
    codebase.add_argument(
        "--repo", type=Path, help="git repository (default: a copy of codeagent's agent/, tools/)"
    )
    codebase.add_argument(
        "--turns", type=positive_int, default=3, metavar="N", help="model calls (default 3)"
    )
    codebase.add_argument(
        "--output", type=Path, default=Path("bench-codebase.json"), help="JSON results file"
    )
    codebase.set_defaults(handler=handlers.bench_codebase)


def _shorthand(parser: argparse.ArgumentParser, args: argparse.Namespace, config: object) -> int:
    """``codeagent bench --config NAME --random-weights``, the issue's spelling of ``bench gpu``."""
    if args.gpu_config is None or not args.random_weights:
        raise BenchError(
            "choose a scenario (see 'codeagent bench --help'), or give both --config NAME and --random-weights"
        )
    gpu = parser.parse_args(["gpu", "--config", args.gpu_config, "--random-weights"])
    return int(gpu.handler(gpu, config))


def _add_gpu(sub: Subparsers) -> None:
    gpu = sub.add_parser(
        "gpu",
        help="a released MoE config with random weights on one device: decode, prefill, cached follow-up, "
        "vs transformers and the bandwidth roofline",
    )
    gpu.add_argument(
        "--config",
        dest="gpu_config",
        required=True,
        choices=GPU_CONFIGS,
        metavar="NAME",
        help=f"the configuration: {', '.join(GPU_CONFIGS)}",
    )
    gpu.add_argument(
        "--random-weights",
        action="store_true",
        required=True,
        help="build the model on the device with random weights (no checkpoint; required)",
    )
    gpu.add_argument(
        "--tiny", action="store_true", help="the family at tiny shapes and sizes (checks on a CPU)"
    )
    gpu.add_argument(
        "--layers",
        type=layers_or_fit,
        metavar="N",
        help="keep the first N layers at full width ('fit': all that fit)",
    )
    gpu.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if present")
    gpu.add_argument(
        "--dtype", choices=["bfloat16", "float32"], help="default bfloat16 on cuda, float32 on cpu"
    )
    _add_gpu_sizes(gpu)
    _add_gpu_runs(gpu)
    gpu.set_defaults(handler=handlers.bench_gpu)


def _add_gpu_sizes(gpu: argparse.ArgumentParser) -> None:
    """What the GPU bench measures: scenarios, batches, contexts, prompts and prefixes."""
    gpu.add_argument(
        "--scenarios",
        type=name_list(("decode", "prefill", "prefix")),
        default=("decode", "prefill", "prefix"),
        metavar="A,B",
        help="default all",
    )
    gpu.add_argument(
        "--batches",
        type=int_list,
        metavar="N,N",
        help="concurrent sequences (default 1,8,32,64; tiny 1,2,4)",
    )
    gpu.add_argument(
        "--contexts",
        type=int_list,
        metavar="N,N",
        help="decode contexts (default 1024,32768,131072; tiny 16,64)",
    )
    gpu.add_argument(
        "--prefills", type=int_list, metavar="N,N", help="prefill prompts (default 8192,32768; tiny 32,64)"
    )
    gpu.add_argument(
        "--prefix",
        type=positive_int,
        metavar="N",
        help="cached prefix of the follow-up (default 100000; tiny 96)",
    )
    gpu.add_argument(
        "--follow-up", type=positive_int, metavar="N", help="follow-up tokens (default 500; tiny 8)"
    )
    gpu.add_argument(
        "--decode-tokens",
        type=at_least_two,
        metavar="N",
        help="new tokens per decode cell (default 32; tiny 4)",
    )


def _add_gpu_runs(gpu: argparse.ArgumentParser) -> None:
    """How the GPU bench runs: the transformers comparison, our engine's budgets, seed and output."""
    gpu.add_argument("--no-reference", action="store_true", help="skip transformers")
    gpu.add_argument(
        "--reference-max-tokens",
        type=positive_int,
        default=131072,
        metavar="N",
        help="transformers runs decode cells with B x C <= N (default 131072)",
    )
    gpu.add_argument(
        "--reference-chunk",
        type=positive_int,
        metavar="N",
        help="transformers' prefill chunk (default 4096; 1024 for deepseek-v4-flash)",
    )
    gpu.add_argument(
        "--max-batch-tokens",
        type=positive_int,
        metavar="N",
        help="our engine's tokens per step (default 8192; 2048 for deepseek-v4-flash)",
    )
    gpu.add_argument(
        "--kv-cache-gb", type=positive_float, metavar="GB", help="KV pool (default: the engine's)"
    )
    gpu.add_argument("--seed", type=int, default=0, help="random weights and prompts (default 0)")
    gpu.add_argument("--output", type=Path, default=Path("bench-gpu.json"), help="JSON results file")


def _add_kernels(sub: Subparsers) -> None:
    models = ("qwen3-coder-30b-a3b", "deepseek-v4-flash")
    kernels = sub.add_parser(
        "kernels",
        help="Triton kernels vs torch references at model shapes (GPU; --tiny on CPU); --tune; --packed (CPU)",
    )
    kernels.add_argument(
        "--models", type=name_list(models), default=models, metavar="A,B", help="default both"
    )
    kernels.add_argument("--tokens", type=int_list, default=(1, 8, 64, 512), metavar="N,N")
    kernels.add_argument("--contexts", type=int_list, default=(4096, 32768, 131072), metavar="N,N")
    kernels.add_argument(
        "--only", type=name_list(KERNEL_NAMES), default=(), metavar="A,B", help="these kernels"
    )
    kernels.add_argument("--no-torch", action="store_true", help="skip timing the torch references")
    kernels.add_argument("--tiny", action="store_true", help="tiny shapes through Triton's CPU interpreter")
    kernels.add_argument(
        "--packed",
        action="store_true",
        help="the native CPU kernels over FP8/FP4 weights vs bf16, at --tokens up to 64 (CPU; --tiny: harness)",
    )
    kernels.add_argument("--tune", action="store_true", help="tune the fused MoE's tiles and write the table")
    kernels.add_argument(
        "--config-dir", type=Path, help="where --tune writes (default ~/.cache/codeagent/kernels)"
    )
    kernels.add_argument("--output", type=Path, default=Path("bench-kernels.json"), help="JSON results file")
    kernels.set_defaults(handler=handlers.bench_kernels)
