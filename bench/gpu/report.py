"""Figures beside figures for ``codeagent bench gpu``: roofline, peak, transformers, targets, the table.

Per decode row: the bytes a step must read at the midpoint of the timed steps' context
(``bench/roofline.py``), the tokens/s that allows at the measured copy bandwidth, our
fraction of it, transformers' tokens/s in the same cell and our ratio. Per prefill row:
FLOPs, TFLOP/s and the fraction of the device's bf16 peak. Targets (issue 9) are checked
in every run, each with the value, the threshold, where it was measured and met (None
when that cell was not measured); ``applies`` says whether the run is the one they were
set for.
"""

from __future__ import annotations

from typing import Any

from codeagent.bench import roofline
from codeagent.bench.gpu.plan import Plan, bf16_peak


def combine(plan: Plan, results: dict[str, Any], copy_bw: float) -> None:
    """Put roofline, peak and transformers figures beside ours, row by row."""
    ours, ref = results["ours"], results["transformers"] or {}
    peak = bf16_peak(results["device"])
    scale = plan.full_layers / plan.layers
    for row in ours.get("decode", []):
        other = _find(ref.get("decode"), batch=row["batch"], context=row["context"])
        mid = row["context"] + plan.decode_tokens // 2
        step_bytes = roofline.decode_bytes(plan.config, plan.dtype, row["batch"], mid)
        row["roofline_bytes_per_step"] = round(step_bytes)
        row["roofline_tokens_per_s"] = round(row["batch"] * copy_bw / step_bytes, 1)
        _compare(row, other, row["roofline_tokens_per_s"])
        _scaled(row, scale)
    for row in ours.get("prefill", []):
        other = _find(ref.get("prefill"), tokens=row["tokens"])
        flops = roofline.prefill_flops(plan.config, row["tokens"])
        row["flops"] = flops
        if row.get("seconds"):
            row["TFLOP_per_s"] = float(f"{flops / row['seconds'] / 1e12:.4g}")
            row["of_bf16_peak"] = None if peak is None else round(flops / row["seconds"] / peak, 4)
        _compare(row, other, None)
        _scaled(row, scale)
    prefix = ours.get("prefix")
    if prefix and ref.get("prefix"):
        prefix["transformers_cold_ttft_s"] = ref["prefix"].get("cold_ttft_s")
        prefix["transformers_warm_ttft_s"] = ref["prefix"].get("warm_ttft_s")


def _find(rows: list[dict[str, Any]] | None, **keys: int) -> dict[str, Any] | None:
    return next((r for r in rows or [] if all(r.get(k) == v for k, v in keys.items())), None)


def _compare(row: dict[str, Any], other: dict[str, Any] | None, roof: float | None) -> None:
    value = row.get("tokens_per_s")
    theirs = other.get("tokens_per_s") if other else None
    row["transformers_tokens_per_s"] = theirs
    row["transformers_skipped"] = other.get("skipped") if other else "not run"
    row["x_transformers"] = round(value / theirs, 2) if value and theirs else None
    if roof is not None:
        row["of_roofline"] = round(value / roof, 4) if value else None


def _scaled(row: dict[str, Any], scale: float) -> None:
    if scale != 1 and row.get("tokens_per_s"):
        row["tokens_per_s_full_depth_estimate"] = round(row["tokens_per_s"] / scale, 2)


def targets(plan: Plan, results: dict[str, Any]) -> dict[str, Any]:
    """Issue 9's targets, each with the value measured, the threshold and met (None: not measured)."""
    ours = results["ours"]
    context, prefill = min(plan.contexts), min(plan.prefills)
    one = _find(ours.get("decode"), batch=1, context=context) or {}
    first = _find(ours.get("prefill"), tokens=prefill) or {}
    prefix = ours.get("prefix") or {}
    applies = (
        plan.name == "qwen3-coder-30b-a3b"
        and not plan.tiny
        and plan.layers == plan.full_layers
        and results["dtype"] == "bfloat16"
        and any(key in results["device"] for key in ("H100", "H200"))
    )
    checks = {
        "batch1_decode_of_roofline": _check_value(
            one.get("of_roofline"), 0.75, f"batch 1, context {context}"
        ),
        "batch1_decode_x_transformers": _check_value(
            one.get("x_transformers"), 3.0, f"batch 1, context {context}"
        ),
        "warm_follow_up_ttft_s": _check_value(
            prefix.get("warm_ttft_s"),
            0.150,
            f"{plan.follow_up} new tokens on {plan.prefix} cached",
            below=True,
        ),
        "prefill_of_bf16_peak": _check_value(first.get("of_bf16_peak"), 0.40, f"{prefill} tokens"),
    }
    if first.get("seconds") and first.get("of_bf16_peak") is None:
        checks["prefill_of_bf16_peak"]["why"] = "the bf16 peak of this device is unknown (H100/H200 only)"
    return {
        "applies": applies,
        "scope": "set for qwen3-coder-30b-a3b, all layers, bf16, on an H100; also read on an H200 "
        "(the same bf16 peak, more bandwidth: the TTFT and x-transformers targets come easier)",
        "checks": checks,
    }


def _check_value(value: float | None, threshold: float, at: str, below: bool = False) -> dict[str, Any]:
    met = None if value is None else (value < threshold if below else value >= threshold)
    return {"value": value, "threshold": threshold, "at": at, "met": met, "below": below}


def table(results: dict[str, Any]) -> str:
    peak = results["bf16_peak_TFLOP_per_s"]
    lines = [
        f"gpu benchmark: {results['config']}{' (tiny)' if results['tiny'] else ''}, {results['layers']} of "
        f"{results['released_layers']} layers, {results['dtype']}, random weights, on {results['device']} "
        f"(copy {results['copy_GB_per_s']} GB/s, bf16 peak {'unknown' if peak is None else f'{peak:.0f} TFLOP/s'})"
    ]
    if results["note"]:
        lines.append(f"note: {results['note']}")
    if results["layers"] < results["released_layers"]:
        lines.append(
            f"cut to {results['layers']} of {results['released_layers']} layers: the JSON adds full-depth "
            f"estimates (tokens/s x {results['layers']}/{results['released_layers']})"
        )
    ours = results["ours"]
    if ours.get("decode"):
        lines.append(f"{'decode':<8}{'batch':>6}{'context':>9}{'ours tok/s':>12}{'roofline':>12}{'of roof':>9}"
                     f"{'transformers':>14}{'x':>7}")  # fmt: skip
        for r in ours["decode"]:
            lines.append(
                f"{'':<8}{r['batch']:>6}{r['context']:>9}"
                + (f"  skipped: {r['skipped']}" if "skipped" in r else
                   f"{r['tokens_per_s']:>12}{r['roofline_tokens_per_s']:>12}{_pct(r['of_roofline']):>9}"
                   f"{_num(r['transformers_tokens_per_s']):>14}{_num(r['x_transformers']):>7}")
            )  # fmt: skip
    if ours.get("prefill"):
        lines.append(f"{'prefill':<8}{'tokens':>15}{'ours tok/s':>12}{'TFLOP/s':>10}{'of peak':>9}"
                     f"{'transformers':>14}{'x':>7}")  # fmt: skip
        for r in ours["prefill"]:
            lines.append(
                f"{'':<8}{r['tokens']:>15}"
                + (f"  skipped: {r['skipped']}" if "skipped" in r else
                   f"{r['tokens_per_s']:>12}{r['TFLOP_per_s']:>10}{_pct(r['of_bf16_peak']):>9}"
                   f"{_num(r['transformers_tokens_per_s']):>14}{_num(r['x_transformers']):>7}")
            )  # fmt: skip
    p = ours.get("prefix")
    if p:
        lines.append(
            f"follow-up of {p['new_tokens']} tokens on a {p['prefix_tokens']}-token prefix: "
            + (f"skipped: {p['skipped']}" if "skipped" in p else
               f"ours cold {p['cold_ttft_s']:.3f} s, warm {p['warm_ttft_s']:.3f} s ({p['warm_cached_tokens']} cached); "
               f"transformers cold {_num(p.get('transformers_cold_ttft_s'))} s, "
               f"warm on a kept cache {_num(p.get('transformers_warm_ttft_s'))} s")
        )  # fmt: skip
    t = results["targets"]
    lines.append(f"targets ({'they apply here' if t['applies'] else 'they do not apply here'}: {t['scope']})")
    for name, c in t["checks"].items():
        verdict = {True: "met", False: "NOT met", None: "not measured"}[c["met"]]
        lines.append(f"  {name:<30} {_num(c['value'])} {'<' if c['below'] else '>='} {c['threshold']} "
                     f"({c['at']}): {verdict}")  # fmt: skip
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "-" if value is None else str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
