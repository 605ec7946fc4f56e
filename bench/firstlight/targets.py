"""The targets of issue 23, read from the stages' JSON files: each met, missed or not run.

- batch-1 decode of Qwen3-Coder-30B-A3B at 1K context >= 75% of the bandwidth roofline
  (``bench gpu``'s: the bytes a step must read over a measured device-to-device copy; on an
  H100 about 370 tok/s);
- the same cell >= 3x transformers on the same random configuration;
- a 500-token follow-up on a warm (cached) 100K-token prefix: first token in < 150 ms;
- the fused MoE (Qwen3-Coder's experts, one token) and paged-attention decode (one
  sequence at the longest context measured) >= 70% of the copy bandwidth (``bench kernels``).

A check whose stage did not run, failed, or wrote no such cell is ``not-run``, with why.
``applies`` is false on a tiny run (its verdicts are computed all the same, so that the
dry run exercises this code).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def check(outputs: dict[str, Path], tiny: bool) -> dict[str, Any]:
    """The targets from the stages' files (``outputs``: stage name -> its JSON file)."""
    coder = _load(outputs.get("gpu-qwen3-coder"))
    versus = _load(outputs.get("gpu-vs-transformers"))
    kernels = _load(outputs.get("kernels"))
    decode = _row((coder or {}).get("ours", {}).get("decode"), batch=1)
    checks = {
        "batch1_decode_of_roofline": _verdict(
            coder, decode and decode.get("of_roofline"), 0.75, "gpu-qwen3-coder: batch 1, the shortest context",
            extra={"tokens_per_s": decode and decode.get("tokens_per_s")},
        ),
        "batch1_decode_x_transformers": _verdict(
            versus, (_row((versus or {}).get("ours", {}).get("decode"), batch=1) or {}).get("x_transformers"),
            3.0, "gpu-vs-transformers: batch 1, the shortest context",
        ),
        "warm_follow_up_ttft_s": _verdict(
            coder, ((coder or {}).get("ours", {}).get("prefix") or {}).get("warm_ttft_s"), 0.150,
            "gpu-qwen3-coder: the follow-up on a cached prefix", below=True,
        ),
        "fused_moe_of_copy_bandwidth": _kernel(kernels, "fused_moe", "T=1 "),
        "paged_attention_decode_of_copy_bandwidth": _kernel(kernels, "paged_attention_decode", "1x "),
    }  # fmt: skip
    counts = {s: sum(c["status"] == s for c in checks.values()) for s in ("met", "missed", "not-run")}
    return {"applies": not tiny, "counts": counts, "checks": checks}


def _load(path: Path | None) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        return None


def _row(rows: list[dict[str, Any]] | None, batch: int) -> dict[str, Any] | None:
    """The measured row of ``batch`` sequences at the shortest context."""
    found = [r for r in rows or [] if r.get("batch") == batch and "skipped" not in r]
    return min(found, key=lambda r: r["context"]) if found else None


def _kernel(report: dict[str, Any] | None, kernel: str, shape_prefix: str) -> dict[str, Any]:
    """Qwen3-Coder's ``kernel`` row whose shape starts with ``shape_prefix``, at the longest context."""
    rows = [
        r
        for r in (report or {}).get("results", [])
        if r["kernel"] == kernel
        and r["model"] == "qwen3-coder-30b-a3b"
        and r["shape"].startswith(shape_prefix)
    ]
    row = max(rows, key=lambda r: _context(r["shape"])) if rows else {}
    at = f"kernels: {kernel} {row.get('shape', shape_prefix.strip() + ' (not measured)')}"
    return _verdict(report, row.get("of_copy_bandwidth"), 0.70, at, extra={"GB_per_s": row.get("GB_per_s")})


def _context(shape: str) -> int:
    part = next((p for p in shape.split() if p.startswith("ctx=")), "ctx=0")
    return int(part.removeprefix("ctx="))


def _verdict(
    source: dict[str, Any] | None,
    value: float | None,
    threshold: float,
    at: str,
    below: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value, "threshold": threshold, "below": below, "at": at, **(extra or {})}
    if source is None:
        out.update(status="not-run", why="its stage wrote no results")
    elif value is None:
        out.update(status="not-run", why="its stage did not measure this cell")
    else:
        out["status"] = "met" if (value < threshold if below else value >= threshold) else "missed"
    return out
