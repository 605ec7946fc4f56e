"""``codeagent bench engine --tp N``: what splitting the engine across ranks costs a step.

The engine bench's random Qwen3-MoE (hidden 512, 8 layers, 32 experts top-4, vocab 32000,
float32), written as a checkpoint once, then decoded at batch 1 and batch 8 (32-token
prompts, ``new_tokens`` each, greedy) by the single-process engine and by the engine split
across ``tp`` ranks on this machine (gloo on 127.0.0.1; the cores shared out evenly, so the
split adds no compute here: it measures what the communication costs). For each: tokens/s,
milliseconds per decode step, and on rank 0 the milliseconds per step spent in collectives
(the step's plan, the all-reduces of every layer, the logits' gather; waiting for the
slowest rank included) and their share of the step. The tokens of both must be equal. The
bare latency of one all-reduce between the same number of processes is timed beside it, so
the per-step figure reads as collectives per step x latency.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from codeagent.bench.checkpoint import qwen3_config, write_checkpoint
from codeagent.bench.machine import machine

PROMPT = 32


def _prompts(count: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(count)
    return [torch.randint(0, 32000, (PROMPT,), generator=generator).tolist() for _ in range(count)]


def _decode(engine: Any, batch: int, new_tokens: int, group: Any) -> dict[str, Any]:
    from codeagent.backend.engine import Request
    from codeagent.backend.layers.sampler import SamplingParams

    params = SamplingParams(max_tokens=new_tokens, ignore_eos=True)
    engine.generate([Request(p, SamplingParams(max_tokens=4, ignore_eos=True)) for p in _prompts(batch)])
    steps_before, comm_before = engine.stats.steps, getattr(group, "seconds", 0.0)
    calls_before = getattr(group, "calls", 0)
    started = time.perf_counter()
    results = engine.generate([Request(p, params) for p in _prompts(batch)])
    elapsed = time.perf_counter() - started
    steps = engine.stats.steps - steps_before
    decode_s = max(r.decode_s for r in results)
    comm = getattr(group, "seconds", 0.0) - comm_before
    calls = getattr(group, "calls", 0) - calls_before
    step_ms = 1000 * elapsed / steps
    return {
        "batch": batch,
        "tokens_per_s": round(batch * new_tokens / elapsed, 2),
        "decode_tokens_per_s": round(batch * (new_tokens - 1) / decode_s, 2),
        "steps": steps,
        "ms_per_step": round(step_ms, 3),
        "collectives_per_step": round(calls / steps, 2),
        "collective_ms_per_step": round(1000 * comm / steps, 3),
        "collective_share_of_step": round(comm / elapsed, 3),
        "tokens": [r.token_ids for r in results],
    }


def _latency_rank(rank: int, tp: int, port: int, hidden: int, out: Any) -> None:
    """One rank of the bare-collective timing: the latency a split step pays per collective."""
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=tp)
    timings = {}
    for rows in (1, 8):
        x = torch.ones(rows, hidden)
        for _ in range(20):
            dist.all_reduce(x)
        started = time.perf_counter()
        for _ in range(300):
            dist.all_reduce(x)
        timings[f"all_reduce_{rows}x{hidden}_us"] = round(1e6 * (time.perf_counter() - started) / 300, 1)
    if rank == 0:
        out.put(timings)
    dist.destroy_process_group()


def collective_latency(tp: int, hidden: int = 512) -> dict[str, float]:
    """Bare gloo all-reduce latency between ``tp`` processes on this machine, one thread each."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    out = context.Queue()
    ranks = [context.Process(target=_latency_rank, args=(r, tp, port, hidden, out)) for r in range(tp)]
    for process in ranks:
        process.start()
    timings = out.get(timeout=300)
    for process in ranks:
        process.join()
    return timings


def bench_split(tp: int, new_tokens: int = 32) -> dict[str, Any]:
    from codeagent.backend.cache.allocator import CacheConfig
    from codeagent.backend.distributed.launch import start
    from codeagent.backend.engine import Engine
    from codeagent.backend.loader import load_model

    config = qwen3_config(hidden=512, layers=8, experts=32, width=256, vocab=32000)
    cache = CacheConfig(block_size=16, memory_bytes=2**30)
    rows: dict[str, Any] = {}
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="codeagent-bench-split-") as tmp:
        folder = Path(tmp) / "model"
        write_checkpoint(folder, config, dtype=torch.float32)
        engine = Engine(load_model(folder).model, set(), cache=cache)
        rows["tp1"] = [_decode(engine, batch, new_tokens, None) for batch in (1, 8)]
        engine.close()
        group, workers, _ = start(folder, "float32", "cpu", tp)
        try:
            split = Engine(load_model(folder, group=group).model, set(), cache=cache, group=group)
            rows[f"tp{tp}"] = [_decode(split, batch, new_tokens, group) for batch in (1, 8)]
            split.close()
        finally:
            workers.close()
            group.close()
            torch.set_num_threads(threads)
    same = all(a["tokens"] == b["tokens"] for a, b in zip(rows["tp1"], rows[f"tp{tp}"], strict=True))
    for layout in rows.values():
        for row in layout:
            del row["tokens"]
    return {
        "benchmark": "engine split",
        "model": "random Qwen3-MoE, hidden 512, 8 layers, 32 experts top-4, vocab 32000, float32",
        "tp": tp,
        "machine": machine(),
        "threads": {"tp1": threads, f"tp{tp}": f"{max(1, threads // tp)} per rank"},
        "date": time.strftime("%Y-%m-%d"),
        "same_tokens": same,
        "bare_collectives": collective_latency(tp),
        "layouts": rows,
    }
