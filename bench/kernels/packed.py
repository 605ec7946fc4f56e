"""``codeagent bench kernels --packed``: the native CPU kernels over packed weights against the
bfloat16 ones, as bytes read per call and a fraction of the machine's memory bandwidth.

Cases, at decode sizes (1 and 8 rows by default): a 4096 x 4096 linear (bf16 ``native.linear``,
``native_packed.linear_fp8`` / ``linear_fp4``, and the BLAS's bf16 ``F.linear`` for scale) and
one MoE layer at Qwen3-30B-A3B's shapes (hidden 2048, 128 experts top-8, width 768: bf16
``native.moe`` against ``native_packed.moe_packed`` in FP8 and FP4). FP4 runs both routes where
the build has the int8 one (``linear_fp4 int8``, ``moe_packed int8``: activations quantized to
int8) beside the float one (``linear_fp4``, ``moe_packed``); with ``with_torch``, also
the references the layers run without the packed kernels (decode for the call, then multiply:
``layers.linear.packed_linear``, ``layers.moe.packed_experts`` given no kernels).

Weights are random codes and scales (the kernels' speed does not depend on the values), enough
distinct copies of a linear weight to read at least ``stream_bytes`` a round, and random
routing per call, so every call reads its weights from memory rather than the cache. Bytes per
call count the weights and scales read once (the distinct experts a call routes to);
activations are ignored. Bandwidth: the best of five float32 sums over a 1 GiB buffer with
torch's threads (a streaming read). Times are wall-clock medians, with the fastest call beside
them: on a shared machine a busy neighbour stalls one of the OpenMP threads, and the median
with it, by a scheduler tick (4 ms).
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, cycle
from typing import Any

import torch
import torch.nn.functional as F

from codeagent.backend.kernels import native, native_packed
from codeagent.backend.layers.linear import packed_linear
from codeagent.backend.layers.moe import packed_experts
from codeagent.backend.packed_weights import PackedExperts, PackedWeight
from codeagent.bench.machine import machine


@dataclass(frozen=True)
class Shapes:
    linear: tuple[int, int]  # out, in
    hidden: int
    experts: int
    top_k: int
    width: int
    stream_bytes: int  # linear weights cycled through a round, to read them from memory
    read_bytes: int  # the streaming read's buffer


REAL = Shapes((4096, 4096), 2048, 128, 8, 768, 256 << 20, 1 << 30)  # Qwen3-30B-A3B's MoE
TINY = Shapes((256, 256), 256, 8, 2, 128, 1 << 20, 16 << 20)  # checks the harness only
FORMATS = ("bf16", "fp8", "fp4")


def read_bandwidth(size: int) -> float:
    """Bytes per second of a streaming read (a float32 sum), best of five."""
    buf = torch.ones(size // 4)
    return size / timings(buf.sum, 0.0, 5)[1]


def timings(fn: Callable[[], object], min_time_s: float, min_reps: int) -> tuple[float, float]:
    """(median, fastest) seconds of ``fn`` after two warm-up calls: the median is the figure,
    the fastest what the kernel does when nothing else on the machine runs."""
    fn()
    fn()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < min_reps or (time.perf_counter() - started < min_time_s and len(samples) < 1000):
        tick = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - tick)
    return statistics.median(samples), min(samples)


def random_codes(kind: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Random FP8 (no NaN codes) or FP4 bytes of ``shape`` (FP4: the packed width)."""
    codes = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    if kind == "fp4":
        return codes
    return torch.where((codes & 0x7F) == 0x7F, codes - 1, codes).view(torch.float8_e4m3fn)


def random_scales(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.randint(118, 123, shape, dtype=torch.uint8, generator=generator)  # UE8M0 near 2^-7


def linear_weight(kind: str, n: int, k: int, generator: torch.Generator) -> torch.Tensor | PackedWeight:
    if kind == "bf16":
        return (torch.randn(n, k, generator=generator) * 0.02).bfloat16()
    if kind == "fp8":
        return PackedWeight(
            random_codes(kind, (n, k), generator), random_scales((n // 128, k // 128), generator), kind
        )
    return PackedWeight(
        random_codes(kind, (n, k // 2), generator), random_scales((n, k // 32), generator), kind
    )


def experts(
    kind: str, e: int, rows: int, cols: int, generator: torch.Generator
) -> torch.Tensor | PackedExperts:
    if kind == "bf16":
        return (torch.randn(e, rows, cols, generator=generator) * 0.02).bfloat16()
    group, width = (128, cols) if kind == "fp8" else (32, cols // 2)
    return PackedExperts(
        random_codes(kind, (e, rows, width), generator),
        random_scales((e, rows, cols // group), generator),
        kind,
    )


@dataclass(frozen=True)
class Case:
    layer: str  # "linear" or "moe"
    kernel: str
    format: str
    call: Callable[[], object]
    bytes: int  # weights and scales read by one call
    shape: str


def _linear_cases(rows: int, shapes: Shapes, generator: torch.Generator) -> Iterator[Case]:
    """The linear: the native kernels, the BLAS in bf16, the packed references."""
    n, k = shapes.linear
    x = torch.randn(rows, k, generator=generator).bfloat16()
    shape = f"{rows}x{k} @ {n}x{k}"
    for kind in FORMATS:
        copies = [linear_weight(kind, n, k, generator)]
        while len(copies) * copies[0].nbytes < shapes.stream_bytes:
            copies.append(linear_weight(kind, n, k, generator))
        ring = cycle(copies)
        calls = (
            {"native.linear": native.linear, "F.linear (BLAS)": F.linear}
            if kind == "bf16"
            else {f"linear_{kind}": _route(native_packed.linear, False), "reference": packed_linear}
        )
        if kind == "fp4" and native_packed.int8_built():
            calls = {f"linear_{kind} int8": _route(native_packed.linear, True), **calls}
        for name, fn in calls.items():
            yield Case("linear", name, kind, _cycling(fn, (x,), ring), copies[0].nbytes, shape)


def _moe_cases(tokens: int, shapes: Shapes, generator: torch.Generator) -> Iterator[Case]:
    """One Qwen3-30B-A3B MoE layer: the native kernels, and the packed reference (decode one
    expert at a time)."""
    h, e, k, i = shapes.hidden, shapes.experts, shapes.top_k, shapes.width
    x = torch.randn(tokens, h, generator=generator).bfloat16()
    routes = [torch.rand(tokens, e, generator=generator).topk(k, dim=-1).indices for _ in range(64)]
    distinct = sum(len(torch.unique(r)) for r in routes) / len(routes)
    weights = torch.full((tokens, k), 1.0 / k)
    shape = f"{tokens} tokens, {distinct:.1f} of {e} experts"
    for kind in FORMATS:
        w13, w2 = experts(kind, e, 2 * i, h, generator), experts(kind, e, h, i, generator)
        per_call = int((w13.nbytes + w2.nbytes) * distinct / e)
        calls = (
            {"native.moe": native.moe}
            if kind == "bf16"
            else {"moe_packed": _route(native_packed.moe_packed, False), "reference": packed_experts}
        )
        if kind == "fp4" and native_packed.int8_built():
            calls = {"moe_packed int8": _route(native_packed.moe_packed, True), **calls}
        for name, fn in calls.items():
            yield Case("moe", name, kind, _cycling(fn, (x, w13, w2, weights), cycle(routes)), per_call, shape)


def _route(fn: Callable[..., torch.Tensor], int8: bool) -> Callable[..., torch.Tensor]:
    """A packed kernel on one route: FP4 with int8 activations, or the float one (FP8 has one)."""
    return lambda *args: fn(*args, int8=int8)


def _cycling(
    fn: Callable[..., torch.Tensor], args: tuple[Any, ...], ring: Iterator[Any]
) -> Callable[[], object]:
    """fn(*args, the ring's next item): each call another weight copy or routing."""
    return lambda: fn(*args, next(ring))


def bench_packed(
    rows: tuple[int, ...] = (1, 8),
    with_torch: bool = True,
    tiny: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the cases (``tiny``: small shapes that check the harness only); raises RuntimeError
    when the native kernels cannot run here."""
    shapes = TINY if tiny else REAL
    for module in (native, native_packed):
        problem = module.problem()
        if problem:
            raise RuntimeError(f"the native kernels cannot run here: {problem}")
    bandwidth = read_bandwidth(shapes.read_bytes)
    log(f"streaming read: {bandwidth / 1e9:.1f} GB/s")
    generator = torch.Generator().manual_seed(0)
    results = []
    for n in rows:
        for case in chain(_linear_cases(n, shapes, generator), _moe_cases(n, shapes, generator)):
            if case.kernel == "reference" and not with_torch:
                continue
            seconds, fastest = timings(case.call, 0.0 if tiny else 0.5, 5)
            results.append(
                {
                    "layer": case.layer,
                    "kernel": case.kernel,
                    "format": case.format,
                    "rows": n,
                    "shape": case.shape,
                    "ms": round(seconds * 1e3, 3),
                    "fastest_ms": round(fastest * 1e3, 3),
                    "MB_read": round(case.bytes / 1e6, 2),
                    "GB_per_s": round(case.bytes / seconds / 1e9, 2),
                    "of_bandwidth": round(case.bytes / seconds / bandwidth, 3),
                    "fastest_of_bandwidth": round(case.bytes / fastest / bandwidth, 3),
                }
            )
            log(_row(results[-1]))
    return {
        "machine": machine(),
        "arch": platform.machine(),
        "read_GB_per_s": round(bandwidth / 1e9, 1),
        "note": "tiny shapes from the cache: timings are meaningless" if tiny else None,
        "results": results,
    }


def _row(r: dict[str, Any]) -> str:
    return (
        f"{r['layer']:<7} {r['kernel']:<29} {r['format']:<5} {r['rows']:>4} {r['ms']:>9} {r['fastest_ms']:>9} "
        f"{r['MB_read']:>8} {r['GB_per_s']:>6} {100 * r['of_bandwidth']:>5.1f}% {100 * r['fastest_of_bandwidth']:>5.1f}%"
    )


def table(report: dict[str, Any]) -> str:
    lines = [
        f"packed CPU kernels on {report['machine']} (streaming read {report['read_GB_per_s']} GB/s)",
        *([f"note: {report['note']}"] if report["note"] else []),
        f"{'layer':<7} {'kernel':<29} {'fmt':<5} {'rows':>4} {'ms':>9} {'fastest':>9} {'MB read':>8} "
        f"{'GB/s':>6} {'of bw':>6} {'best':>6}",
    ]
    lines += [_row(r) for r in report["results"]]
    return "\n".join(lines)
