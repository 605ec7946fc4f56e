"""Where a batch-1 decode step's time goes: the measured reason behind a roofline fraction.

One sequence's decode steps (its prefill step left out) run under ``cProfile``; each
function's own time is put in a part: the native kernels' time in C (every call goes through
``NativeCall.run``, which times it by kernel while ``native_build.timings`` is on: ``ctypes``
calls are not profiled apart) by family as ``linear`` (attention's projections, the router,
the LM head), ``moe`` (the routed experts), ``attention`` and ``other kernels`` (norms,
rotary, the router's top-k); ``torch ops`` (torch's built-ins: the glue between kernels);
and ``python`` (everything else: the engine, the scheduler, the runner, the layers' Python
or the decode program's, the kernel wrappers'). With the bytes each family must read per step,
a kernel's achieved GB/s says whether it, not Python, is what keeps the step off the roofline.

Limits: cProfile adds about a microsecond a call (a few thousand calls a step here, so a
few ms a step, counted in ``python``); time a C kernel spends waiting on memory and on its
own threads is the kernel's.
"""

from __future__ import annotations

import cProfile
import pstats
from typing import Any

from codeagent.backend.engine import Engine, Request
from codeagent.backend.kernels import native_build
from codeagent.backend.layers.sampler import SamplingParams

FAMILIES = ("linear", "moe", "attention")


def _family(kernel: str) -> str:
    return next((f for f in FAMILIES if f in kernel), "other kernels")


def _part(filename: str, name: str) -> str:
    if filename == "~" and "torch" in name:
        return "torch ops"
    return "python"


def decode_profile(
    engine: Engine, prompt: list[int], new: int, family_bytes: dict[str, float]
) -> dict[str, Any]:
    """Profile ``new`` - 1 decode steps of one sequence; ms per step by part, GB/s by kernel family."""
    seq = engine.add_request(Request(prompt, SamplingParams(max_tokens=new, ignore_eos=True)))
    while seq.first_token_at is None:
        engine.step()
    profiler = cProfile.Profile()
    steps = 0
    native_build.timings = in_c = {}
    try:
        profiler.enable()
        while seq.finish is None:
            engine.step()
            steps += 1
        profiler.disable()
    finally:
        native_build.timings = None
    parts: dict[str, float] = {}
    for kernel, seconds in in_c.items():
        parts[_family(kernel)] = parts.get(_family(kernel), 0.0) + seconds
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, _, name), (_, _, own, _, _) in stats.items():
        key = _part(filename, name)
        parts[key] = parts.get(key, 0.0) + own
    parts["python"] -= sum(in_c.values())  # NativeCall.run's own time holds the C calls
    total = sum(parts.values())
    return {
        "steps": steps,
        "ms_per_step": round(1e3 * total / steps, 2),
        "ms_per_step_by_part": {
            k: round(1e3 * v / steps, 2) for k, v in sorted(parts.items(), key=lambda i: -i[1])
        },
        "kernel_GB_per_s": {
            f: round(family_bytes[f] * steps / parts[f] / 1e9, 2)
            for f in FAMILIES
            if parts.get(f) and family_bytes.get(f)
        },
        "MB_per_step_by_kernel": {f: round(b / 1e6, 1) for f, b in family_bytes.items()},
    }
