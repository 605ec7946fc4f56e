"""``bench v4-layers``'s figures turned into rooflines, full-depth estimates, targets and a table.

Per layer: the median batch-1 decode step, the bytes it reads for a token (``reads.py``) and
those bytes' time at the streaming read ("bytes at bandwidth"): each round's median step over
its bytes' time at the reading taken just before that round, the median over the rounds being
the layer's ``ratio`` (the host's read drifts 2x over minutes, so only adjacent figures
compare), and, stricter, at the run's highest reading. The target is ``ratio`` within 1.5.

ESTIMATES, labelled so in the JSON (nothing at full depth is run here): a token through the
whole model is the measured median of each kind times the number of such layers in V4-Flash
(2 sliding, 21 CSA, 20 HCA), plus the head; on a server, the same bytes per token at the
server's bandwidth, once at the fraction of the bandwidth this machine reached and once at all
of it; and how many of our threads, at the rate one gets through here, that bandwidth would
take (where our kernels are compute-bound on two cores, a server's many cores change the
first figure, not the second). The server by default: a 12-channel DDR5-4800 EPYC 9005
(Turin), 460.8 GB/s in theory (``SERVER_BANDWIDTH``). The anchor: a CPU-only run of V4-Flash at 4 bits in the llama.cpp
family reported 9.7 tokens/s decode and 70 tokens/s prefill on an EPYC Turin. Prefill is
estimated for this machine only (the prompt's chunks through every layer): it is compute-bound,
so another machine's bandwidth says nothing about it.

Limits: the estimates assume every layer of a kind costs what the measured one does and that
a server's cores keep up with its memory (this machine's two cores are the measurement); the
embedding row and the sampler are left out.
"""

from __future__ import annotations

import statistics
from typing import Any

SERVER_BANDWIDTH = 460.8e9  # 12 channels x DDR5-4800 x 8 bytes: EPYC 9005 (Turin), theoretical
SERVER = "12-channel DDR5-4800 AMD EPYC 9005 (Turin), theoretical peak"
ANCHOR = {"decode_tokens_per_s": 9.7, "prefill_tokens_per_s": 70.0}
ANCHOR_SOURCE = (
    "a reported CPU-only run of DeepSeek-V4-Flash at 4 bits in the llama.cpp family on an EPYC Turin"
)
TARGET_RATIO = 1.5


def finish(
    results: dict[str, Any], depth: dict[str, int], server_bandwidth: float, tiny: bool
) -> dict[str, Any]:
    """``results`` with each layer's roofline, the estimates, the targets (None when ``tiny``)."""
    bandwidth = results["bandwidth"]["GB_per_s"] * 1e9
    for layer in results["layers"]:
        layer.update(_roofline(layer, bandwidth))
    results["estimate"] = estimate(results, depth, server_bandwidth)
    targets = {f"decode_{layer['kind']}_layer_within_1_5x_of_bytes_at_bandwidth": layer["ratio"] <= TARGET_RATIO
               for layer in results["layers"]}  # fmt: skip
    targets["decode_every_layer_within_1_5x_of_bytes_at_bandwidth"] = all(targets.values())
    if tiny:
        results["target_notes"] = {name: "--tiny: toy timings decide nothing" for name in targets}
        results["targets"] = dict.fromkeys(targets)
    else:
        results["targets"] = targets
    return results


def _roofline(layer: dict[str, Any], bandwidth: float) -> dict[str, Any]:
    """The layer's median step against its bytes' time: at each round's adjacent reading (the
    median of the rounds' ratios: ``ratio``, the target's) and at the run's highest reading."""
    step = statistics.median(layer["decode_s"])
    total = layer["bytes_per_token"]["total"]
    ratios = [
        statistics.median(r["decode_s"]) * r["bandwidth_GB_per_s"] * 1e9 / total for r in layer["rounds"]
    ]
    ratio = statistics.median(ratios)
    return {
        "decode_ms": _sig(step * 1e3),
        "bytes_per_token_MB": _sig(total / 1e6),
        "bytes_at_bandwidth_ms": _sig(step / ratio * 1e3),
        "ratio": _sig(ratio),
        "ratios_by_round": [_sig(r) for r in ratios],
        "bytes_at_highest_bandwidth_ms": _sig(total / bandwidth * 1e3),
        "ratio_at_highest_bandwidth": _sig(step * bandwidth / total),
        "fraction_of_bandwidth": _sig(1 / ratio),
        "prefill_chunk_ms": _sig(statistics.median(layer["prefill_chunk_s"]) * 1e3),
    }


def estimate(results: dict[str, Any], depth: dict[str, int], server_bandwidth: float) -> dict[str, Any]:
    """Full-depth ESTIMATES from the measured layers and head (None where a kind was not measured)."""
    measured = {layer["kind"]: layer for layer in results["layers"]}
    missing = [kind for kind, count in depth.items() if count and kind not in measured]
    if missing:
        return {"label": "ESTIMATE", "note": f"not made: no {', '.join(missing)} layer measured"}
    head = results["head"]
    seconds = head["seconds"] + sum(n * measured[k]["decode_ms"] / 1e3 for k, n in depth.items() if n)
    bytes_per_token = head["bytes"] + sum(
        n * measured[k]["bytes_per_token"]["total"] for k, n in depth.items() if n
    )
    prefill = sum(n * measured[k]["prefill_chunk_ms"] / 1e3 for k, n in depth.items() if n) + head["seconds"]
    chunk = min(layer["prefill_chunk_tokens"] for layer in measured.values())
    # each part's bytes at its ratio to its adjacent reading (the head's: the first reading)
    head_ratio = head["seconds"] * results["bandwidth"]["readings_GB_per_s"][0] * 1e9 / head["bytes"]
    parts = [
        (n * measured[k]["bytes_per_token"]["total"], measured[k]["ratio"]) for k, n in depth.items() if n
    ]
    parts.append((head["bytes"], head_ratio))
    fraction = sum(b for b, _ in parts) / sum(b * r for b, r in parts)
    at_ours = server_bandwidth * fraction / bytes_per_token
    per_thread = bytes_per_token / seconds / results["threads"]  # what one core of ours gets through
    return {
        "label": "ESTIMATE (per-layer medians x V4-Flash's depth + head; not a full-model run)",
        "layers": dict(depth),
        "bytes_per_token_GB": _sig(bytes_per_token / 1e9),
        "this_machine": {
            "decode_tokens_per_s": _sig(1 / seconds),
            "decode_ms_per_token": _sig(seconds * 1e3),
            "fraction_of_bandwidth": _sig(fraction),
            "GB_per_s_per_thread": _sig(per_thread / 1e9),
            "prefill_tokens_per_s": _sig(chunk / prefill),
        },
        "server": {
            "assumption": SERVER,
            "bandwidth_GB_per_s": _sig(server_bandwidth / 1e9),
            "decode_tokens_per_s_at_this_machines_fraction": _sig(at_ours),
            "decode_tokens_per_s_at_full_bandwidth": _sig(server_bandwidth / bytes_per_token),
            "threads_to_reach_full_bandwidth_at_our_rate_per_thread": _sig(server_bandwidth / per_thread),
        },
        "anchor": {
            "source": ANCHOR_SOURCE,
            **ANCHOR,
            "server_estimate_over_anchor_decode": _sig(at_ours / ANCHOR["decode_tokens_per_s"]),
        },
    }


def _sig(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits (toy runs' figures stay nonzero)."""
    return float(f"{value:.{digits}g}")


def table(results: dict[str, Any]) -> str:
    """The figures in a few lines, for the terminal."""
    lines = [f"streaming read {results['bandwidth']['GB_per_s']:.1f} GB/s, {results['threads']} threads"]
    for layer in results["layers"]:
        lines.append(
            f"{layer['kind']:>8}: {layer['decode_ms']:7.2f} ms/token, {layer['bytes_per_token_MB']:7.1f} MB "
            f"-> {layer['bytes_at_bandwidth_ms']:6.2f} ms at bandwidth, x{layer['ratio']:.2f}"
        )
    lines.append(f"    head: {results['head']['seconds'] * 1e3:7.2f} ms")
    est = results["estimate"]
    if "this_machine" in est:
        here, server = est["this_machine"], est["server"]
        lines.append(
            f"ESTIMATE full depth: {here['decode_tokens_per_s']:.2f} tok/s here, "
            f"{server['decode_tokens_per_s_at_this_machines_fraction']:.1f} tok/s at "
            f"{server['bandwidth_GB_per_s']:.0f} GB/s (anchor {ANCHOR['decode_tokens_per_s']} tok/s)"
        )
    lines += [f"target {name}: {met}" for name, met in results["targets"].items()]
    return "\n".join(lines)
