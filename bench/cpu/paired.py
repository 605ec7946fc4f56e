"""Batch-1 decode of both sides taken in turns: the comparison a drifting host cannot bias.

On a shared machine the memory bandwidth drifts (here between 19 and 39 GB/s over minutes),
so two figures taken ten minutes apart compare the host's moods as much as the engines. For
each pair (our bfloat16 with llama.cpp's BF16, fp8 with Q8_0, fp4 with Q4_K_M) our engine is
kept loaded while, ``rounds`` times, the bandwidth is read and then both sides decode one
sequence at batch 1 (ours: ``new`` tokens after a ``prompt``-token prompt; llama.cpp:
``llama-bench -n new -r 1``), which side goes first alternating from round to round. Each
round gives a ratio; their median is the figure the batch-1 targets use. For the bfloat16
pair each round also runs 8 sequences decoding together on both sides, in the same order (ours:
``concurrent``; llama.cpp: ``llama-batched-bench -npl 8``), the median ratio the 8-sequence
target's figure.

Limits: llama-bench decodes from an empty context and ours after a short prompt (a few KB of
KV against ~1 GB of weights a token); each llama.cpp round pays its own model load (mmap'd,
from the page cache), which llama-bench keeps out of its timing.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeagent.bench.cpu import llamacpp
from codeagent.bench.cpu.bandwidth import read_bandwidth
from codeagent.bench.cpu.ours import concurrent, decode_rate, open_engine, prompt

PAIRS = {"bfloat16": "bf16", "fp8": "q8_0", "fp4": "q4_k_m"}


def paired(
    folder: Path,
    name: str,
    tree: llamacpp.Tree,
    gguf: Path,
    sizes: dict[str, int],
    threads: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """``sizes``: prompt_tokens, new_tokens, vocab, rounds."""
    n, new, vocab = sizes["prompt_tokens"], sizes["new_tokens"], sizes["vocab"]
    engine, _, _ = open_engine(folder, name, 8 * (n + new) + 256, log)
    rounds: list[dict[str, float]] = []
    try:
        decode_rate(engine, prompt(n, vocab, 1_000), 4)  # warm-up
        for r in range(sizes["rounds"]):
            bandwidth = read_bandwidth(1 << 30, 2)
            sides = {
                "ours": lambda r=r: decode_rate(engine, prompt(n, vocab, 1_001 + r), new),
                "llama_cpp": lambda: llamacpp.decode_once(tree, gguf, threads, new),
            }
            order = ("ours", "llama_cpp") if r % 2 == 0 else ("llama_cpp", "ours")
            row = {side: round(sides[side](), 3) for side in order}
            rounds.append(
                {
                    **row,
                    "GB_per_s": round(bandwidth / 1e9, 2),
                    "ratio": round(row["ours"] / row["llama_cpp"], 3),
                }
            )
            if name == "bfloat16":
                rounds[-1]["concurrent8"] = _eight(engine, tree, gguf, sizes, threads, r, order)
            log(f"paired {name} / {PAIRS[name].upper()} round {r + 1}: {rounds[-1]}")
    finally:
        engine.close()
    out = {
        "rounds": rounds,
        "ours_median_tokens_per_s": statistics.median(r["ours"] for r in rounds),
        "llama_cpp_median_tokens_per_s": statistics.median(r["llama_cpp"] for r in rounds),
        "ratio_median": statistics.median(r["ratio"] for r in rounds),
    }
    eights = [r["concurrent8"] for r in rounds if "concurrent8" in r]
    if eights:
        out["concurrent8_ratio_median"] = statistics.median(e["ratio"] for e in eights)
    return out


def _eight(
    engine: Any,
    tree: llamacpp.Tree,
    gguf: Path,
    sizes: dict[str, int],
    threads: int,
    r: int,
    order: tuple[str, str],
) -> dict[str, float]:
    """One round of 8 sequences decoding together on both sides (decode tokens/s), in ``order``."""
    n, new, vocab = sizes["prompt_tokens"], sizes["new_tokens"], sizes["vocab"]
    sides = {
        "ours": lambda: concurrent(engine, [prompt(n, vocab, 2_000 + 8 * r + i) for i in range(8)], new),
        "llama_cpp": lambda: llamacpp.batched(tree, gguf, threads, n, new, 8),
    }
    row = {side: round(sides[side]()["decode_tokens_per_s"], 3) for side in order}
    return {**row, "ratio": round(row["ours"] / row["llama_cpp"], 3)}
