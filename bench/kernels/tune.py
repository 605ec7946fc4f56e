"""Tile tuning for the fused MoE: sweep configs per shape and token count, keep the fastest.

For each model's MoE shape (experts, top-k, hidden, expert width), weight format and
token count, every candidate config runs ``fused_moe`` on random weights and uniformly
routed tokens; the fastest is kept and merged into the device's table in the user's
config folder (``tile_configs``), where later lookups find it. Needs a CUDA GPU;
candidates that fail to compile (shared memory) are skipped. About a minute per
shape and format on an H100 (compilation dominates).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from triton.compiler.errors import CompilationError
from triton.runtime.errors import OutOfResources

from codeagent.backend.kernels.fused_moe import QuantizedExperts, fused_moe
from codeagent.backend.kernels.tile_configs import Config, device_name, moe_key, write_entries
from codeagent.backend.quant import quantize_fp4
from codeagent.bench.timing import measure


@dataclass(frozen=True, slots=True)
class MoeShape:
    name: str
    experts: int
    topk: int
    hidden: int
    inter: int
    clamped: bool
    formats: tuple[str, ...] = ("plain",)  # expert weight formats worth tuning (the released ones)


MOE_SHAPES = {
    "qwen3-coder-30b-a3b": MoeShape("qwen3-coder-30b-a3b", 128, 8, 2048, 768, False),
    "deepseek-v4-flash": MoeShape("deepseek-v4-flash", 256, 6, 4096, 2048, True, ("plain", "fp4")),
}


def candidates() -> list[Config]:
    grid = itertools.product((16, 32, 64, 128), (64, 128), (64, 128), (4, 8), (3, 4))
    return [
        {"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "num_warps": w, "num_stages": s}
        for m, n, k, w, s in grid
        if not (m == 128 and w == 4)
    ]


def expert_weights(shape: MoeShape, weight_format: str, device: torch.device):
    """Random w13 [E, 2I, H] and w2 [E, H, I]: bf16, or FP4 packed (scales per 32 inputs)."""
    scale = shape.hidden**-0.5
    w13 = (
        torch.randn(shape.experts, 2 * shape.inter, shape.hidden, device=device, dtype=torch.bfloat16) * scale
    )
    w2 = torch.randn(shape.experts, shape.hidden, shape.inter, device=device, dtype=torch.bfloat16) * scale
    if weight_format == "plain":
        return w13, w2
    packed = []
    for w in (w13, w2):
        parts = [quantize_fp4(w[e].float()) for e in range(shape.experts)]
        packed.append(
            QuantizedExperts.fp4(torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts]))
        )
        del parts
    return packed[0], packed[1]


def routed(tokens: int, shape: MoeShape, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.rand(tokens, shape.experts, device=device).argsort(dim=1)[:, : shape.topk].to(torch.int32)
    return torch.rand(tokens, shape.topk, device=device), ids


def _time(shape: MoeShape, x, w13, w2, weights, ids, config: Config, device: torch.device) -> float | None:
    """Seconds per call with this config, or None when it cannot compile here (shared memory)."""
    try:
        return measure(
            lambda: fused_moe(x, w13, w2, weights, ids, clamped=shape.clamped, limit=10.0, config=config),
            device,
            min_time_s=0.02,
        )
    except (OutOfResources, CompilationError):
        return None


def tune_shape(
    shape: MoeShape,
    weight_format: str,
    tokens: list[int],
    device: torch.device,
    report: Callable[[str], None],
) -> dict[str, Config]:
    w13, w2 = expert_weights(shape, weight_format, device)
    best: dict[str, Config] = {}
    for m in tokens:
        x = torch.randn(m, shape.hidden, device=device, dtype=torch.bfloat16)
        weights, ids = routed(m, shape, device)
        timings = [(_time(shape, x, w13, w2, weights, ids, c, device), c) for c in candidates()]
        seconds, config = min(((s, c) for s, c in timings if s is not None), key=lambda pair: pair[0])
        report(f"{shape.name} {weight_format} M={m}: {seconds * 1e6:.1f} us with {config}")
        best[str(m)] = config
    return best


def tune(
    models: list[str],
    tokens: list[int],
    device: torch.device,
    folder: Path | None = None,
    report: Callable[[str], None] = print,
) -> Path:
    """Tune every model's MoE in each of its formats and write the device's table; returns the file."""
    if device.type != "cuda":
        raise RuntimeError("tuning kernels needs a CUDA GPU")
    entries = {}
    for name in models:
        shape = MOE_SHAPES[name]
        for weight_format in shape.formats:
            key = moe_key(shape.experts, shape.inter, shape.hidden, torch.bfloat16, weight_format)
            entries[key] = tune_shape(shape, weight_format, tokens, device, report)
            torch.cuda.empty_cache()
    return write_entries(device_name(device), "fused_moe", entries, folder)
