"""Our side of ``codeagent bench gpu``: the random model in the engine, every scenario timed.

One engine serves the whole run (one KV pool; earlier scenarios' blocks stay cached and
are evicted least recently used first), warmed up first at every batch size and at a
full prefill chunk so that no timing includes Triton's compilation. Each step of the
engine ends by sampling on the host, so wall-clock times between steps are device times.

- decode (B, C): the context's first whole blocks are prefilled once, alone, under a
  prompt seeded by C (so batch sizes at the same context reuse it); then B requests of
  that prefix plus 1 to ``block_size`` tokens of their own are stepped until every one
  has its first token, and the following ``decode_tokens - 1`` steps are timed.
- prefill N: one prompt of N fresh tokens, one new token; time to first token.
- prefix: the prefix plus one follow-up (cold), then the same prefix plus another
  (warm: the prefix's blocks are cached). Both times are submission to first token.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from codeagent.backend.engine import CacheConfig, Engine, Request
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.bench.gpu.plan import Log, Plan, tokens
from codeagent.bench.random_weights import random_model


def measure(plan: Plan, log: Log) -> dict[str, Any]:
    started = time.perf_counter()
    model = random_model(plan.raw, plan.dtype, plan.device, plan.seed)
    _sync(plan.device)
    build_s = time.perf_counter() - started
    log(f"ours: built {plan.name} ({plan.layers} layers) with random weights in {build_s:.1f} s")
    engine = Engine(
        model,
        set(),
        device=plan.device,
        cache=CacheConfig(memory_bytes=plan.kv_cache_bytes),
        max_batch_tokens=plan.max_batch_tokens,
        max_seqs=max(plan.batches),
    )
    out: dict[str, Any] = {
        "build_s": round(build_s, 2),
        "block_size": engine.block_size,
        "kv_bytes_per_token": engine.block_bytes // engine.block_size,
        "pool_tokens": engine.capacity_tokens,
        "max_batch_tokens": plan.max_batch_tokens,
    }
    out["warmup_s"] = round(_warm_up(engine, plan), 2)
    vocab = plan.raw["vocab_size"]
    if "decode" in plan.scenarios:
        out["decode"] = [
            _decode(engine, plan, batch, context, vocab, log)
            for context in plan.contexts
            for batch in plan.batches
        ]
    if "prefill" in plan.scenarios:
        out["prefill"] = [_prefill(engine, n, vocab, log) for n in plan.prefills]
    if "prefix" in plan.scenarios:
        out["prefix"] = _prefix(engine, plan, vocab, log)
    engine.close()
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _params(max_tokens: int) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, ignore_eos=True)


def _warm_up(engine: Engine, plan: Plan) -> float:
    started = time.perf_counter()
    vocab = plan.raw["vocab_size"]
    largest = max(*plan.prefills, *plan.contexts, plan.prefix)
    chunk = min(plan.max_batch_tokens, largest, engine.capacity_tokens // 2)
    engine.generate([Request(tokens(chunk, 7, vocab), _params(2))])
    for batch in plan.batches:
        engine.generate([Request(tokens(8, 100 + i, vocab), _params(3)) for i in range(batch)])
    return time.perf_counter() - started


def _blocks(tokens_: int, block: int) -> int:
    return -(-tokens_ // block)


def _decode(engine: Engine, plan: Plan, batch: int, context: int, vocab: int, log: Log) -> dict[str, Any]:
    block = engine.block_size
    shared = (context - 1) // block * block  # whole blocks, reused by every sequence
    own = context - shared  # 1..block tokens each
    row: dict[str, Any] = {"batch": batch, "context": context, "shared_tokens": shared}
    need = shared // block + batch * _blocks(own + plan.decode_tokens, block)
    if need > engine.pool.num_blocks:
        row["skipped"] = f"needs {need} KV blocks, the pool has {engine.pool.num_blocks}"
        log(f"ours: decode batch {batch} at {context}: {row['skipped']}")
        return row
    prefix = tokens(shared, context, vocab)
    if shared:
        engine.generate([Request(prefix, _params(1))])
    seqs = [
        engine.add_request(
            Request(prefix + tokens(own, 10_000 * context + i, vocab), _params(plan.decode_tokens))
        )
        for i in range(batch)
    ]
    while any(s.first_token_at is None and s.finish is None for s in seqs):
        engine.step()
    failed = next((s.error for s in seqs if s.finish == "error"), None)
    if failed:
        row["skipped"] = failed
        return row
    before = sum(len(s.generated) for s in seqs)
    started = time.perf_counter()
    while any(s.finish is None for s in seqs):
        engine.step()
    seconds = time.perf_counter() - started
    made = sum(len(s.generated) for s in seqs) - before
    row.update(
        cached_tokens=min(s.cached_tokens for s in seqs),
        decode_steps=plan.decode_tokens - 1,
        tokens_per_s=round(made / seconds, 2) if made else None,
        step_ms=round(1000 * seconds / max(1, plan.decode_tokens - 1), 3),
    )
    log(f"ours: decode batch {batch} at {context}: {row['tokens_per_s']} tok/s ({row['step_ms']} ms a step)")
    return row


def _prefill(engine: Engine, n: int, vocab: int, log: Log) -> dict[str, Any]:
    if _blocks(n + 1, engine.block_size) > engine.pool.num_blocks:
        return {"tokens": n, "skipped": f"{n} tokens do not fit the pool ({engine.capacity_tokens})"}
    result = engine.generate([Request(tokens(n, 20_000 + n, vocab), _params(1))])[0]
    row = {
        "tokens": n,
        "seconds": round(result.prefill_s, 6),
        "tokens_per_s": round(n / result.prefill_s, 1),
        "cached_tokens": result.cached_tokens,
    }
    log(f"ours: prefill {n}: {row['tokens_per_s']} tok/s")
    return row


def _prefix(engine: Engine, plan: Plan, vocab: int, log: Log) -> dict[str, Any]:
    n, m = plan.prefix, plan.follow_up
    row: dict[str, Any] = {"prefix_tokens": n, "new_tokens": m}
    if _blocks(n + 2 * m + 2, engine.block_size) + 1 > engine.pool.num_blocks:
        row["skipped"] = (
            f"a {n}-token prefix and two follow-ups do not fit the pool ({engine.capacity_tokens})"
        )
        return row
    prefix = tokens(n, 30_000, vocab)
    cold = engine.generate([Request(prefix + tokens(m, 30_001, vocab), _params(1))])[0]
    warm = engine.generate([Request(prefix + tokens(m, 30_002, vocab), _params(1))])[0]
    row.update(
        cold_ttft_s=round(cold.prefill_s, 4),
        cold_cached_tokens=cold.cached_tokens,
        warm_ttft_s=round(warm.prefill_s, 4),
        warm_cached_tokens=warm.cached_tokens,
        warm_over_cold=round(warm.prefill_s / cold.prefill_s, 4),
    )
    log(f"ours: follow-up on {n}: cold {cold.prefill_s:.3f} s, warm {warm.prefill_s:.3f} s")
    return row
