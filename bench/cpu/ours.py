"""Our side of ``bench cpu``: the runtime's engine on the bench's checkpoint, in one dtype.

The checkpoint is loaded through ``backend.runtime.load`` (the planner's check first) and
driven through an engine from ``build_engine``, with the product's defaults (its prefill
chunk, its kernels) and a KV pool sized for the longest prompt. Measured, after a warm-up
of one sequence and of eight:

- batch-1 decode: tokens per second after the first token, of ``new_tokens`` on a
  ``prompt_tokens`` prompt, the median of three sequences;
- 8 concurrent: eight such sequences submitted together, decode tokens per second from
  the moment all eight have their first token (their prompts were prefilled together) to
  the last one's end; with prefill included too;
- prefill: one prompt of ``prefill`` tokens (at most 512 for packed variants, whose prefill
  decodes each expert for the call: slow, and no target asks for it), its tokens over the
  time to its first token;
- greedy: the tokens of the tokenizer's prompt (``vocab.PROMPT``), for the comparison with
  llama.cpp's;
- where a batch-1 step's time goes (``steps.decode_profile``), and the bytes a decode step
  reads at batch 1 and 8 (``report``; packed variants by their packed sizes).

``fp8`` and ``fp4`` load the bf16 checkpoint packed (``backend/packing.py``, the runtime's
``--pack``: the dense projections in FP8, the routed experts in FP8 or FP4, the head in FP8 or
INT6) before
the engine is built; their load time includes the conversion.

The bandwidth is read again just before the batch-1 runs (a shared host's drifts over
minutes), so that figure also has a roofline of its own moment. Prompts are random ids (seeded), distinct, so no prefix-cache hit helps any figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.engine import Engine, Request
from codeagent.backend.kernels.dispatch import kernels_in_use
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.packing import VARIANTS, Converted, head_format
from codeagent.backend.runtime import DTYPES, Loaded, build_engine, load
from codeagent.bench.cpu import report
from codeagent.bench.cpu.bandwidth import read_bandwidth
from codeagent.bench.cpu.steps import decode_profile

BLOCK = 32
PACKED_PREFILL = 512  # packed prefill decodes one expert per call: slow, and not a target


def prompt(n: int, vocab: int, seed: int) -> list[int]:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _programs(model: Any) -> dict[str, Any]:
    """Which decode steps ran as bound programs (batch sizes), and why others could not."""
    if not hasattr(model, "decode_programs"):
        return {"sequences": [], "refused": "this family has no decode program"}
    return {
        "sequences": sorted(model.decode_programs),
        "refused": dict(sorted(model.program_refusals.items())),
    }


def _params(tokens: int) -> SamplingParams:
    return SamplingParams(max_tokens=tokens, ignore_eos=True)


def run_ours(
    folder: Path,
    name: str,
    sizes: dict[str, int],
    greedy_prompt: list[int],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """``name``: a dtype (bfloat16, float32) or a packed variant (fp8, fp4: bf16 loaded, then
    packed); ``sizes``: prompt_tokens, new_tokens, prefill, greedy_tokens, vocab."""
    dtype = "bfloat16" if name in VARIANTS else name
    kv_rows = sizes["prefill"] + 8 * (sizes["prompt_tokens"] + sizes["new_tokens"]) + 1024
    engine, loaded, converted = open_engine(folder, name, kv_rows, log)
    model = loaded.checkpoint.model
    config, context = model.config, sizes["prompt_tokens"] + sizes["new_tokens"] // 2
    try:
        out = _measure(engine, sizes, greedy_prompt, log, name)
        family = report.family_bytes(config, DTYPES[dtype], context, converted)
        profiled = prompt(sizes["prompt_tokens"], sizes["vocab"], 900)
        out["profile"] = decode_profile(engine, profiled, sizes["new_tokens"], family)
    finally:
        engine.close()
    used = getattr(model, "kernels", None)  # what the model runs, with its notes (int8 FP4 products)
    out.update(
        dtype=dtype, threads=torch.get_num_threads(), kernels=used.name if used else kernels_in_use("cpu")
    )
    out["decode_program"] = _programs(model)
    out["load_s"] = round(loaded.load_s, 2)
    out["prefill_chunk_tokens"] = engine.scheduler.max_batch_tokens
    out["bytes_per_step"] = {
        "batch1": round(report.packed_bytes(config, DTYPES[dtype], 1, context, converted)),
        "concurrent8": round(report.packed_bytes(config, DTYPES[dtype], 8, context, converted)),
    }
    if converted:
        out["packed"] = {
            "format": {
                "dense": VARIANTS[name].dense,
                "head": head_format(converted),
                "experts": VARIANTS[name].experts,
            },
            "bytes_before": sum(c.before for c in converted),
            "bytes_after": sum(c.after for c in converted),
        }
    return out


def open_engine(
    folder: Path, name: str, kv_rows: int, log: Callable[[str], None]
) -> tuple[Engine, Loaded, list[Converted]]:
    """An engine over the checkpoint as ``name`` (a dtype, or bf16 packed as fp8 / fp4) with a KV
    pool of ``kv_rows`` tokens; the loaded model and what packing converted."""
    packed = name in VARIANTS
    loaded = load(folder, "bfloat16" if packed else name, "cpu", pack=name if packed else None)
    log(f"ours {name}: loaded in {loaded.load_s:.1f} s")
    engine = build_engine(loaded, set(), CacheConfig(block_size=BLOCK, num_blocks=-(-kv_rows // BLOCK)))
    return engine, loaded, loaded.converted


def decode_rate(engine: Engine, prompt: list[int], new: int) -> float:
    """Batch-1 decode tokens/s of one sequence (after its first token)."""
    return (new - 1) / engine.generate([Request(prompt, _params(new))])[0].decode_s


def _measure(
    engine: Engine, sizes: dict[str, int], greedy_prompt: list[int], log: Callable[[str], None], dtype: str
) -> dict[str, Any]:
    vocab, n, new = sizes["vocab"], sizes["prompt_tokens"], sizes["new_tokens"]
    engine.generate([Request(prompt(n, vocab, 99), _params(4))])
    engine.generate([Request(prompt(n, vocab, 90 + i), _params(4)) for i in range(8)])
    adjacent = read_bandwidth(1 << 30, 3)
    ones = [engine.generate([Request(prompt(n, vocab, 500 + i), _params(new))])[0] for i in range(3)]
    batch1 = statistics.median((new - 1) / r.decode_s for r in ones)
    log(f"ours {dtype}: batch-1 decode {batch1:.2f} tok/s")
    eight = concurrent(engine, [prompt(n, vocab, 700 + i) for i in range(8)], new)
    log(f"ours {dtype}: 8 concurrent {eight['decode_tokens_per_s']:.2f} tok/s decode")
    tokens = min(sizes["prefill"], PACKED_PREFILL) if dtype in VARIANTS else sizes["prefill"]
    long = engine.generate([Request(prompt(tokens, vocab, 800), _params(1))])[0]
    prefill = tokens / long.prefill_s
    log(f"ours {dtype}: prefill {tokens} tokens at {prefill:.1f} tok/s")
    greedy = engine.generate([Request(greedy_prompt, _params(sizes["greedy_tokens"]))])[0].token_ids
    return {
        "batch1_decode_tokens_per_s": round(batch1, 3),
        "batch1_runs_tokens_per_s": [round((new - 1) / r.decode_s, 3) for r in ones],
        "bandwidth_adjacent_GB_per_s": round(adjacent / 1e9, 2),
        "concurrent8": eight,
        "prefill_tokens": tokens,
        "prefill_tokens_per_s": round(prefill, 2),
        "greedy_token_ids": greedy,
    }


def concurrent(engine: Engine, prompts: list[list[int]], new: int) -> dict[str, Any]:
    """Eight sequences together: decode rate once all have their first token, and overall."""
    started = time.perf_counter()
    seqs = [engine.add_request(Request(p, _params(new))) for p in prompts]
    while any(s.first_token_at is None for s in seqs):
        engine.step()
    decoding = time.perf_counter()
    while any(s.finish is None for s in seqs):
        engine.step()
    ended = time.perf_counter()
    return {
        "sequences": len(prompts),
        "decode_tokens_per_s": round(len(prompts) * (new - 1) / (ended - decoding), 3),
        "tokens_per_s_incl_prefill": round(len(prompts) * new / (ended - started), 3),
    }
