"""One run of ``codeagent bench gpu``: every scenario with ours, then with transformers, then
the report (the scenarios and their limits: ``bench/gpu/__init__.py``)."""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from codeagent.bench import roofline
from codeagent.bench.gpu import ours, reference, report
from codeagent.bench.gpu.plan import Log, Plan, bf16_peak, device_name, release
from codeagent.bench.timing import copy_bandwidth


def run(plan: Plan, command: str, log: Log) -> dict[str, Any]:
    """Run every scenario with ours, then with transformers; the results as one JSON-ready dict."""
    name = device_name(plan.device)
    copy_bw = copy_bandwidth(plan.device)
    log(f"{name}: device-to-device copy {copy_bw / 1e9:.0f} GB/s")
    results: dict[str, Any] = {
        "benchmark": "gpu",
        "config": plan.name,
        "tiny": plan.tiny,
        "layers": plan.layers,
        "released_layers": plan.full_layers,
        "dtype": str(plan.dtype).removeprefix("torch."),
        "weights": "random, built on the device",
        "weight_bytes": roofline.weight_bytes(plan.config, plan.dtype),
        "device": name,
        "command": command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "copy_GB_per_s": round(copy_bw / 1e9, 1),
        "bf16_peak_TFLOP_per_s": None if bf16_peak(name) is None else bf16_peak(name) / 1e12,
        "note": "tiny shapes: checks the harness; timings mean nothing" if plan.tiny else None,
    }
    results["ours"] = ours.measure(plan, log)
    release(plan.device)
    results["transformers"] = reference.measure(plan, log) if plan.reference else None
    release(plan.device)
    report.combine(plan, results, copy_bw)
    results["targets"] = report.targets(plan, results)
    return results


def log_line(message: str) -> None:
    print(f"[bench gpu] {message}", file=sys.stderr, flush=True)
