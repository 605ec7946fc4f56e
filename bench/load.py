"""``codeagent bench load``: peak resident memory while loading a random checkpoint.

Writes a random Qwen3-MoE checkpoint of about ``size_gb`` (bf16, sharded;
``bench.checkpoint``) and measures, in fresh processes, the peak resident memory of
loading it (``backend.runtime.load``, bf16 on the CPU) against the baseline of the same
process importing the runtime. The checkpoint lies in a temporary folder, removed
afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from codeagent.bench.checkpoint import qwen3_config, write_checkpoint
from codeagent.bench.machine import machine

LOAD_SCRIPT = """
import pathlib, resource, sys
from codeagent.backend.runtime import load
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(load(pathlib.Path(sys.argv[1]), "bfloat16", "cpu").load_s if sys.argv[1] != "-" else 0.0)
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _measure(folder: Path | None) -> tuple[float, int, int]:
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(folder) if folder else "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, rss = proc.stdout.strip().splitlines()
    before, peak = map(int, rss.split())
    return float(seconds), before * 1024, peak * 1024


def bench_load(size_gb: float) -> dict[str, Any]:
    layers = max(1, round(size_gb * 2**30 / (64 * 3 * 1024 * 512 * 2)))
    config = qwen3_config(hidden=1024, layers=layers, experts=64, width=512, vocab=32000)
    with tempfile.TemporaryDirectory(prefix="codeagent-bench-load-") as tmp:
        size = write_checkpoint(Path(tmp) / "model", config)
        _, _, baseline = _measure(None)
        seconds, _, peak = _measure(Path(tmp) / "model")
    return {
        "scenario": "load",
        "checkpoint_bytes": size,
        "layers": layers,
        "load_s": round(seconds, 2),
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
        "peak_minus_baseline_over_checkpoint": round((peak - baseline) / size, 3),
        "machine": machine(),
    }
