"""``codeagent bench attempts``: N attempts from one cached prompt against one attempt.

What ``fix --attempts N`` asks of the engine on its first turn: N requests with the same
long prompt (system, tools, repository context, the issue: ``--shared`` tokens, 8K by
default) arriving together, each then decoding its own reply (attempt 1 greedy, the others
sampled at 0.7 with their own seeds, ``--new-tokens`` each, end-of-sequence ignored). On the
engine bench's model (``engine_models.py``: a random Qwen3-MoE, hidden 512, 8 layers, float32
on the CPU), each row is a fresh engine:

- ``attempts 1``: one request;
- ``attempts N``: N requests at once (the scheduler holds the others until the first has
  computed the shared blocks, then they hit them: prefill once);
- ``attempts N, no prefix cache`` (unless ``--no-uncached``): the same with prefix caching off,
  what N independent requests cost (every attempt prefills the whole prompt).

Per row: wall time, the prefill phase (submission to the last sequence's first token), the
decode phase (from then to the end), prefill tokens computed and served from cache, decode
tokens/s over all sequences. Targets (issue 21): prefill done once (N attempts compute at most
one block more per extra attempt than one attempt) and decode throughput of N attempts >= 3x
one attempt's (N = 4). The machine's load average is recorded before and after: other work
on the machine slows every row; compare rows of one run, and re-run on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from codeagent.bench.argtypes import positive_int

SAMPLED_TEMPERATURE = 0.7


def register(sub: Any) -> None:
    """The ``bench attempts`` parser."""
    parser = sub.add_parser(
        "attempts", help="N attempts from one cached prompt vs one: prefill once, batched decode"
    )
    parser.add_argument("--attempts", type=positive_int, default=4, metavar="N", help="attempts (default 4)")
    parser.add_argument(
        "--shared", type=positive_int, default=8192, metavar="TOKENS", help="shared prompt (8192)"
    )
    parser.add_argument(
        "--new-tokens", type=positive_int, default=64, metavar="N", help="decoded per attempt (64)"
    )
    parser.add_argument("--no-uncached", action="store_true", help="skip the row without the prefix cache")
    parser.add_argument("--output", type=Path, default=Path("bench-attempts.json"), help="JSON results file")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.handlers import write_results

    results = bench_attempts(args.attempts, args.shared, args.new_tokens, not args.no_uncached)
    for row in results["runs"]:
        print(
            f"[bench attempts] {row['label']}: wall {row['wall_s']:.2f}s, prefill {row['prefill_tokens']} tokens "
            f"({row['cached_tokens']} cached), decode {row['decode_tokens_per_s']:.1f} tok/s",
            file=sys.stderr,
        )
    return write_results(results, args.output)


def bench_attempts(count: int, shared: int, new_tokens: int, uncached: bool = True) -> dict[str, Any]:
    import torch

    from codeagent.bench.engine_models import BLOCK, prepared

    load_before = os.getloadavg()
    prompt = torch.randint(0, 32000, (shared,), generator=torch.Generator().manual_seed(21)).tolist()
    with prepared("qwen3-moe", shared + new_tokens + BLOCK) as model:
        runs = [_row(model.run.engine(), prompt, 1, new_tokens, "attempts 1")]
        runs.append(_row(model.run.engine(), prompt, count, new_tokens, f"attempts {count}"))
        if uncached:
            engine = model.run.engine()
            engine.allocator.prefix_caching = False
            runs.append(_row(engine, prompt, count, new_tokens, f"attempts {count}, no prefix cache"))
        header = model.header() | {"benchmark": "attempts"}
    one, many = runs[0], runs[1]
    speedup = many["decode_tokens_per_s"] / one["decode_tokens_per_s"] if one["decode_tokens_per_s"] else 0.0
    return header | {
        "shared_prompt_tokens": shared,
        "new_tokens": new_tokens,
        "attempts": count,
        "runs": runs,
        "targets": {
            "prefill_once": many["prefill_tokens"] - one["prefill_tokens"] <= (count - 1) * BLOCK,
            "decode_speedup": round(speedup, 2),
            "decode_speedup_ok": speedup >= 3.0,
        },
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }


def _row(engine: Any, prompt: list[int], count: int, new_tokens: int, label: str) -> dict[str, Any]:
    from codeagent.backend.engine import Request
    from codeagent.backend.layers.sampler import SamplingParams

    _warm(engine)
    before = engine.stats.prefill_tokens, engine.stats.cached_tokens
    started = time.perf_counter()
    seqs = [
        engine.add_request(
            Request(prompt, SamplingParams(**_sampling(n), max_tokens=new_tokens, ignore_eos=True))
        )
        for n in range(1, count + 1)
    ]
    while engine.has_work():
        engine.step()
    ended = time.perf_counter()
    first = max(seq.first_token_at or ended for seq in seqs)
    decoded = sum(len(seq.generated) - 1 for seq in seqs)  # the first token of each ends its prefill
    engine.close()
    print(f"[bench attempts] {label}: done in {ended - started:.1f}s", file=sys.stderr, flush=True)
    return {
        "label": label,
        "attempts": count,
        "wall_s": round(ended - started, 3),
        "prefill_phase_s": round(first - started, 3),
        "decode_phase_s": round(ended - first, 3),
        "prefill_tokens": engine.stats.prefill_tokens - before[0],
        "cached_tokens": engine.stats.cached_tokens - before[1],
        "decode_tokens": decoded,
        "decode_tokens_per_s": round(decoded / (ended - first), 2) if ended > first else 0.0,
    }


def _sampling(number: int) -> dict[str, Any]:
    """As ``fix --attempts``: attempt 1 greedy, the others sampled with seed = attempt number."""
    return {} if number == 1 else {"temperature": SAMPLED_TEMPERATURE, "seed": number}


def _warm(engine: Any) -> None:
    """One short request first, so no row pays the first forward's one-time costs."""
    from codeagent.backend.engine import Request
    from codeagent.backend.layers.sampler import SamplingParams

    engine.generate([Request(list(range(1, 40)), SamplingParams(max_tokens=4, ignore_eos=True))])
