"""The engine bench's text table (``table``): one family's results, or several families'
(``bench_families``) followed by their frontiers side by side."""

from __future__ import annotations

from typing import Any


def _one(results: dict[str, Any]) -> str:
    lines = [f"engine benchmark: {results['model']} ({results['machine']}; {results['kernels']})"]
    for name, d in (results.get("decode") or {}).items():
        lines += [
            f"  {name:<8} decode, batch 1      ours {d['ours_batch1_tokens_per_s_incl_prefill']:>8} tok/s   "
            f"transformers {d['transformers_batch1_tokens_per_s']:>8} tok/s   x{d['batch1_speedup']}",
            f"  {name:<8} decode, 8 concurrent ours {d['ours_8_concurrent_tokens_per_s']:>8} tok/s   "
            f"transformers {d['transformers_8_sequential_tokens_per_s']:>8} tok/s (sequential)   "
            f"x{d['concurrent8_speedup']}",
        ]
    for r in results.get("prefix") or []:
        lines.append(
            f"  follow-up TTFT, prefix {r['prefix_tokens']:>6}: cold {r['cold_ttft_s']:>8.3f} s  "
            f"warm {r['warm_ttft_s']:>7.3f} s  ({100 * r['warm_over_cold']:.1f}%)"
        )
    if results.get("disk"):
        r = results["disk"]
        lines.append(
            f"  reopen from disk, prefix {r['prefix_tokens']}: {r['disk_ttft_s']:.3f} s vs cold "
            f"{r['cold_ttft_s']:.3f} s ({100 * r['disk_over_cold']:.1f}%)"
        )
    for r in results.get("frontier") or []:
        lines.append(
            f"  context {r['context_tokens']:>6}: prefill {r['prefill_tokens_per_s']:>8} tok/s  "
            f"decode {r['decode_tokens_per_s']:>7} tok/s  KV {r['kv_bytes_per_token']} B/token"
        )
    for name, met in (results.get("targets") or {}).items():
        lines.append(f"  target {name}: {'met' if met else 'NOT met'}")
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    """The text table of ``bench_engine``'s or ``bench_families``'s results."""
    if "families" not in results:
        return _one(results)
    lines = [_one(r) for r in results["families"].values()]
    for row in results["frontier_side_by_side"]:
        cells = "   ".join(
            f"{name}: prefill {v['prefill_tokens_per_s']}, decode {v['decode_tokens_per_s']} tok/s, "
            f"{v['kv_bytes_per_token']} B/token (read {v['adjacent_read_GB_per_s']} GB/s before; "
            f"others took {v['contention']['cpu_s_others']} CPU s)"
            for name, v in row.items()
            if name != "context_tokens"
        )
        lines.append(f"side by side, context {row['context_tokens']:>6}: {cells}")
    return "\n".join(lines)
