"""``codeagent bench engine --family qwen3-moe,qwen3-next``: the engine bench for several
families in one run, their context frontiers side by side.

Each family's scenarios run in turn (``engine.bench_engine``), its results kept whole under
``families``, except the frontier, whose contexts interleave the families (both models
loaded, each context run for one family then the other); ``frontier_side_by_side`` sets, per context, each family's prefill and decode
tokens/s and cache bytes per token next to each other, so that the hybrid family's decode
cost (a fixed recurrent state in three of every four layers) is read against the
attention-only family's on the same machine within the same minutes. Targets are each
family's, named with the family. Limits: only the frontier interleaves; the other
scenarios run one family after the other, so a host whose speed drifts shifts one family's
figures there against the other's.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from codeagent.bench.engine import DTYPES, FOLLOW_UP, SCENARIOS, bench_engine, frontier
from codeagent.bench.engine_models import prepared


def bench_families(
    families: tuple[str, ...],
    scenarios: tuple[str, ...] = SCENARIOS,
    prefixes: tuple[int, ...] = (2048, 8192, 32768),
    frontiers: tuple[int, ...] = (2048, 4096, 8192, 16384),
    new_tokens: int = 64,
    dtypes: tuple[str, ...] = DTYPES,
) -> dict[str, Any]:
    """``bench_engine`` for each of ``families``: one family's result as it is, several's side by side."""
    if len(families) == 1:
        return bench_engine(scenarios, prefixes, frontiers, new_tokens, dtypes, families[0])
    rest = tuple(s for s in scenarios if s != "frontier")
    runs = {name: bench_engine(rest, prefixes, frontiers, new_tokens, dtypes, name) for name in families}
    if "frontier" in scenarios:
        with ExitStack() as stack:
            models = {
                name: stack.enter_context(prepared(name, max(frontiers) + FOLLOW_UP)) for name in families
            }
            for n in frontiers:  # the families in turn at each context, so both meet the host's same mood
                for name, model in models.items():
                    runs[name].setdefault("frontier", []).append(frontier(model.run, n))
    first = next(iter(runs.values()))
    side = []
    for n in frontiers if "frontier" in scenarios else ():
        row: dict[str, Any] = {"context_tokens": n}
        for name, result in runs.items():
            found = next(r for r in result["frontier"] if r["context_tokens"] == n)
            row[name] = {k: v for k, v in found.items() if k != "context_tokens"}
        side.append(row)
    return {
        "benchmark": "engine",
        "families": runs,
        "frontier_side_by_side": side,
        "machine": first["machine"],
        "kernels": first["kernels"],
        "date": first["date"],
        "targets": {f"{k} ({name})": v for name, r in runs.items() for k, v in r["targets"].items()},
    }
