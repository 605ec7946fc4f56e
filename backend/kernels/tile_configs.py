"""Tile configurations per kernel, shape and device, from a table with a heuristic fallback.

A table is a JSON file per device (``torch.cuda.get_device_name()`` with spaces as
underscores): ``{"fused_moe": {"E=128,N=768,K=2048,dtype=bfloat16,w=plain": {"1": {...},
"64": {...}}}}``, keyed by the number of tokens M it was tuned at; a lookup takes the
entry with the nearest M. The user's tables (``$CODEAGENT_KERNEL_CONFIGS``, default
``~/.cache/codeagent/kernels``, where ``codeagent bench kernels --tune`` writes) take
precedence over tables shipped in ``kernels/configs/`` (none yet: nothing has been tuned
on a GPU for this package). Without an entry, a heuristic picks tiles from the rows per
expert; under Triton's interpreter tiles stay small so CPU tests are quick.

A config: ``BLOCK_M``, ``BLOCK_N``, ``BLOCK_K`` (tile sizes), ``num_warps``, ``num_stages``.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import torch

from codeagent import xdg

SHIPPED = Path(__file__).with_name("configs")
Config = dict[str, int]


def user_dir() -> Path:
    explicit = os.environ.get("CODEAGENT_KERNEL_CONFIGS")
    if explicit:
        return Path(explicit)
    return xdg.folder("cache") / "kernels"


def device_name(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    return torch.cuda.get_device_name(device).replace(" ", "_")


def moe_key(experts: int, n: int, k: int, dtype: torch.dtype, weight_format: str) -> str:
    return f"E={experts},N={n},K={k},dtype={str(dtype).removeprefix('torch.')},w={weight_format}"


@functools.lru_cache(maxsize=16)
def _table(path: Path, mtime: float) -> dict[str, Any]:
    return json.loads(path.read_text())


def load_table(device: str) -> dict[str, Any]:
    """The merged table for a device: the user's tuned entries over the shipped ones."""
    merged: dict[str, Any] = {}
    for folder in (SHIPPED, user_dir()):
        path = folder / f"{device}.json"
        if path.is_file():
            for op, entries in _table(path, path.stat().st_mtime).items():
                merged.setdefault(op, {}).update(entries)
    return merged


def lookup(op: str, key: str, m: int, device: torch.device) -> Config | None:
    entries = load_table(device_name(device)).get(op, {}).get(key)
    if not entries:
        return None
    nearest = min(entries, key=lambda tuned: abs(int(tuned) - m))
    return dict(entries[nearest])


def moe_heuristic(m: int, experts: int, topk: int, n: int, interpret: bool) -> Config:
    if interpret:
        return {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "num_warps": 4, "num_stages": 1}
    rows_per_expert = max(1, m * topk // experts)
    if rows_per_expert <= 16:
        return {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 128, "num_warps": 4, "num_stages": 4}
    if rows_per_expert <= 64:
        return {"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 64, "num_warps": 4, "num_stages": 4}
    if rows_per_expert <= 256:
        return {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3}
    return {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3}


def moe_config(
    m: int,
    experts: int,
    topk: int,
    n: int,
    k: int,
    dtype: torch.dtype,
    weight_format: str,
    device: torch.device,
    interpret: bool = False,
) -> Config:
    """Tiles for the grouped GEMMs of an MoE layer with m tokens (n = expert width, k = hidden);
    ``interpret``: under Triton's interpreter (small tiles, no table)."""
    if not interpret:
        found = lookup("fused_moe", moe_key(experts, n, k, dtype, weight_format), m, device)
        if found is not None:
            return found
    return moe_heuristic(m, experts, topk, n, interpret)


def write_entries(
    device: str, op: str, entries: dict[str, dict[str, Config]], folder: Path | None = None
) -> Path:
    """Merge tuned entries into the user's table for ``device``; returns the file written."""
    folder = folder or user_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{device}.json"
    table = json.loads(path.read_text()) if path.is_file() else {}
    for key, by_m in entries.items():
        table.setdefault(op, {}).setdefault(key, {}).update(by_m)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
