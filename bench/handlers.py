"""The handlers of ``codeagent bench ...``: run a scenario, print its JSON and write it to ``--output``.

Each handler takes the parsed arguments and the user's config (unused: benches build their
own models) and imports its scenario when it runs, so that parsing the command line
imports neither torch nor the runtime. A scenario that cannot run here (no GPU, no
sandbox, no transformers) raises ``RuntimeError`` with the reason; the handler turns it
into ``BenchError``, which the command prints as one ``codeagent: error:`` line (exit 2).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from codeagent import xdg


class BenchError(Exception):
    """A benchmark that cannot run as asked, or here (exit code 2)."""


def bench_repomap(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.repomap import bench_repomap as run

    if not args.path.is_dir():
        raise BenchError(f"{args.path} is not a directory")
    return write_results(run(args.path.resolve(), xdg.folder("cache") / "bench-repomap"), args.output)


def bench_tools(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.tool_calls import bench_tools as run

    return write_results(run(args.calls), args.output)


def bench_grammar(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.grammar import bench_grammar as run

    return write_results(run(args.seeds, args.steps), args.output)


def bench_sandbox(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.sandbox_overhead import bench_sandbox as run

    try:
        return write_results(run(args.calls), args.output)
    except RuntimeError as err:
        raise BenchError(str(err)) from err


def bench_load(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.load import bench_load as run

    try:
        return write_results(run(args.size_gb, args.tp_sizes), args.output)
    except RuntimeError as err:
        raise BenchError(str(err)) from err


def bench_generate(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.generate import bench_generate as run

    try:
        return write_results(run(args.prompt_tokens, args.new_tokens), args.output)
    except RuntimeError as err:
        raise BenchError(str(err)) from err


def bench_engine(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.engine_families import bench_families as run
    from codeagent.bench.engine_report import table

    if args.tp > 1:
        from codeagent.bench.split import bench_split

        try:
            return write_results(bench_split(args.tp, min(args.new_tokens, 32)), args.output)
        except RuntimeError as err:
            raise BenchError(str(err)) from err
    try:
        results = run(args.family, args.scenarios, args.prefixes, args.contexts, args.new_tokens, args.dtypes)
    except RuntimeError as err:
        raise BenchError(str(err)) from err
    print(table(results), file=sys.stderr)
    return write_results(results, args.output)


def bench_codebase(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.codebase import bench_codebase as run

    if args.repo is not None and not (args.repo / ".git").exists():
        raise BenchError(f"{args.repo} is not a git repository")
    try:
        return write_results(run(args.repo.resolve() if args.repo else None, args.turns), args.output)
    except RuntimeError as err:
        raise BenchError(str(err)) from err


def bench_kernels(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.kernels import run as bench

    try:
        if args.packed:
            from codeagent.bench.kernels import packed

            rows = tuple(t for t in args.tokens if t <= packed.native_packed.MAX_ROWS)
            results = packed.bench_packed(rows or (1,), not args.no_torch, args.tiny, _stderr_line)
            print(packed.table(results), file=sys.stderr)
        elif args.tune:
            results = bench.tune_tables(args.models, args.tokens, args.config_dir)
        else:
            results = bench.bench_kernels(
                args.models, args.tokens, args.contexts, args.tiny, not args.no_torch, args.only, _stderr_line
            )
            print(bench.table(results), file=sys.stderr)
    except RuntimeError as err:
        raise BenchError(str(err)) from err
    return write_results(results, args.output)


def bench_cpu(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.cpu.report import table
    from codeagent.bench.cpu.run import Options
    from codeagent.bench.cpu.run import bench_cpu as run

    if args.llama_cpp is not None and not args.llama_cpp.is_dir():
        raise BenchError(f"--llama-cpp {args.llama_cpp} is not a directory (a llama.cpp source tree)")
    options = Options(
        args.folder, args.llama_cpp, args.dtypes, args.quants, args.prefill, args.prompt_tokens,
        max(args.new_tokens, 2), 16, args.threads, args.repeats, args.layers, args.tiny, max(args.rounds, 0),
    )  # fmt: skip
    try:
        results = run(options, _stderr_line)
    except RuntimeError as err:
        raise BenchError(str(err)) from err
    print(table(results), file=sys.stderr)
    return write_results(results, args.output)


def bench_packing(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.packing import bench_packing as run

    if args.model is not None and not args.model.is_dir():
        raise BenchError(f"--model {args.model} is not a checkpoint folder")
    sizes = {
        "prompt_tokens": args.prompt_tokens,
        "positions": args.positions,
        "greedy_tokens": args.greedy_tokens,
    }
    try:
        return write_results(run(args.model, args.variants, sizes, args.dtype, _stderr_line), args.output)
    except RuntimeError as err:
        raise BenchError(str(err)) from err


def bench_gpu(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.gpu.plan import PlanError, make_plan
    from codeagent.bench.gpu.report import table

    try:
        plan = make_plan(args)
    except PlanError as err:
        raise BenchError(str(err)) from err
    from codeagent.bench.gpu.run import log_line, run  # our engine and transformers: after the plan

    results = run(plan, shlex.join(["codeagent", *sys.argv[1:]]), log_line)
    print(table(results), file=sys.stderr)
    return write_results(results, args.output)


def _stderr_line(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_results(results: dict[str, Any], output: Path) -> int:
    """Print a bench's JSON and write it to ``output``; the exit code (0)."""
    text = json.dumps(results, indent=2)
    output.write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"written to {output}", file=sys.stderr)
    return 0
