"""Timing of ``codeagent bench kernels``: each case against its reference, the report, ``--tune``.

Per case: median time (``bench.timing``: CUDA events), achieved bandwidth and FLOP/s,
their fraction of an H100 SXM's peaks and of a device-to-device copy measured in the same
run, and the speed-up over the torch reference (a layer's own code, run with no kernels).
Without a GPU it refuses unless ``tiny``: Triton's CPU interpreter, which checks the
harness only. The shapes and their limits: ``bench/kernels/__init__.py``.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from typing import Any

import torch

from codeagent.bench.kernels.cases import QWEN, TINY, V4, Case, cases
from codeagent.bench.timing import copy_bandwidth, measure

PEAK_BANDWIDTH = 3.35e12  # H100 SXM HBM3, bytes/s
PEAK_BF16 = 989e12  # H100 SXM dense bf16, FLOP/s
TOKENS = (1, 8, 64, 512)
CONTEXTS = (4096, 32768, 131072)


def _result(case: Case, device: torch.device, copy_bw: float, with_torch: bool) -> dict[str, Any]:
    seconds = measure(case.triton, device)
    torch_s = None
    if with_torch and case.torch is not None:
        torch_s = measure(case.torch, device, min_reps=3)  # the references run without kernels
    bandwidth, flops = case.bytes / seconds, case.flops / seconds
    return {
        "kernel": case.kernel,
        "model": case.model,
        "shape": case.shape,
        "us": round(seconds * 1e6, 2),
        "GB_per_s": round(bandwidth / 1e9, 1),
        "TFLOP_per_s": round(flops / 1e12, 2),
        "of_peak_bandwidth": round(bandwidth / PEAK_BANDWIDTH, 3),
        "of_copy_bandwidth": round(bandwidth / copy_bw, 3),
        "of_peak_bf16_flops": round(flops / PEAK_BF16, 4),
        "torch_us": None if torch_s is None else round(torch_s * 1e6, 2),
        "speedup": None if torch_s is None else round(torch_s / seconds, 2),
        "reference": case.reference,
    }


def bench_kernels(
    models: tuple[str, ...] = (QWEN.name, V4.name),
    tokens: tuple[int, ...] = TOKENS,
    contexts: tuple[int, ...] = CONTEXTS,
    tiny: bool = False,
    with_torch: bool = True,
    only: tuple[str, ...] = (),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the cases; raises RuntimeError when they cannot run here."""
    if not torch.cuda.is_available() and not tiny:
        raise RuntimeError(
            "codeagent bench kernels measures Triton kernels on a CUDA GPU, and torch sees none here; "
            "--tiny runs tiny shapes through Triton's CPU interpreter to check the harness (timings meaningless)"
        )
    from codeagent.backend.kernels.dispatch import interpreter_problem, triton_installed

    if not triton_installed():
        raise RuntimeError("triton is not installed: pip install 'codeagent[kernels]'")
    device = torch.device("cuda" if torch.cuda.is_available() and not tiny else "cpu")
    if device.type == "cpu":
        problem = interpreter_problem()
        if problem:
            raise RuntimeError(problem)
        os.environ.setdefault("TRITON_INTERPRET", "1")
        tokens, contexts = (
            tuple(t for t in tokens if t <= 8) or (1,),
            tuple(c for c in contexts if c <= 256) or (64, 256),
        )
    dims = [TINY[m] if tiny else {QWEN.name: QWEN, V4.name: V4}[m] for m in models]
    copy_bw = copy_bandwidth(device)
    results = []
    torch.manual_seed(0)
    for case in cases(dims, tokens, contexts, device):
        if only and case.kernel not in only:
            continue
        results.append(_result(case, device, copy_bw, with_torch))
        r = results[-1]
        log(f"{r['kernel']:<28} {r['model']:<20} {r['shape']:<44} {r['us']:>10} us  x{r['speedup']}")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.machine()})",
        "note": None
        if device.type == "cuda"
        else "Triton's CPU interpreter on tiny shapes: timings are meaningless",
        "peaks": {"bandwidth_TB_per_s": PEAK_BANDWIDTH / 1e12, "bf16_TFLOP_per_s": PEAK_BF16 / 1e12},
        "copy_GB_per_s": round(copy_bw / 1e9, 1),
        "torch": torch.__version__,
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    lines = [f"kernels on {report['device']} (copy {report['copy_GB_per_s']} GB/s)"]
    if report["note"]:
        lines.append(f"note: {report['note']}")
    lines.append(
        f"{'kernel':<28} {'model':<20} {'shape':<44} {'us':>10} {'GB/s':>8} {'TFLOP/s':>8} {'%bw':>6} {'x torch':>8}"
    )
    for r in report["results"]:
        lines.append(
            f"{r['kernel']:<28} {r['model']:<20} {r['shape']:<44} {r['us']:>10} {r['GB_per_s']:>8} "
            f"{r['TFLOP_per_s']:>8} {100 * r['of_peak_bandwidth']:>5.1f}% {'-' if r['speedup'] is None else r['speedup']:>8}"
        )
    return "\n".join(lines)


def tune_tables(models: tuple[str, ...], tokens: tuple[int, ...], folder: Any = None) -> dict[str, Any]:
    """``--tune``: sweep the fused MoE's tiles on this GPU and write the device's table."""
    if not torch.cuda.is_available():
        raise RuntimeError("tuning kernel tiles needs a CUDA GPU, and torch sees none here")
    from codeagent.bench.kernels.tune import tune

    device = torch.device("cuda")
    path = tune(
        list(models),
        list(tokens),
        device,
        folder,
        report=lambda line: print(line, file=sys.stderr, flush=True),
    )
    return {"device": torch.cuda.get_device_name(device), "table": str(path), "models": list(models)}
