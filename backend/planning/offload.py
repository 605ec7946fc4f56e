"""``--cpu-experts auto``: how many routed experts a layer must keep in host memory to fit a GPU.

The checkpoint's weights in the load dtype (from its safetensors headers: every tensor's
element count, as the loader would hold it, routed experts included), plus the planner's
workspace reserve and a KV cache of ``LOAD_CONTEXT`` tokens, against the device's free
memory: what does not fit leaves the device in whole experts, the same number from every
sparse layer (``layers/offload.py`` places the least used ones there). On a CPU nothing is
moved (the host is the device).

Limits: Qwen3-MoE's shapes only (``hidden_size``, ``moe_intermediate_size``, the sparse
layers); a model whose dense parts alone do not fit is not helped (the count is capped at
every expert), and the loader or the engine then says so.
"""

from __future__ import annotations

from pathlib import Path

import torch

from codeagent.backend.catalog import header_sizes
from codeagent.backend.loader import read_config, shard_files
from codeagent.backend.models.qwen3_moe.config import Qwen3MoeConfig

RESERVE = 2 * 2**30  # the runtime's own share of a GPU (context, kernels, allocator slack)
KV_TOKENS = 4096


def experts_per_layer(config: Qwen3MoeConfig, dtype: torch.dtype) -> tuple[int, int]:
    """(bytes of one routed expert in one layer, number of sparse layers)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    per_expert = 3 * config.hidden_size * config.moe_intermediate_size * itemsize
    return per_expert, sum(1 for i in range(config.num_hidden_layers) if config.is_sparse(i))


def host_experts_needed(
    weights_bytes: int, kv_bytes: int, free_bytes: int, config: Qwen3MoeConfig, dtype: torch.dtype
) -> int:
    """Experts per sparse layer to keep in host memory so the rest fits ``free_bytes``."""
    per_expert, layers = experts_per_layer(config, dtype)
    over = weights_bytes + kv_bytes + RESERVE - free_bytes
    if over <= 0 or not layers:
        return 0
    return min(config.num_experts, -(-over // (per_expert * layers)))


def auto(folder: Path, dtype: torch.dtype, device: str) -> int:
    """``--cpu-experts auto`` for ``folder`` loaded on ``device`` in ``dtype``."""
    if not device.startswith("cuda"):
        return 0
    raw = read_config(folder)
    config = Qwen3MoeConfig.from_dict(raw)
    itemsize = torch.empty((), dtype=dtype).element_size()
    elements = sum(header_sizes(shard)[0] for shard in shard_files(folder))
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * itemsize * KV_TOKENS
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return host_experts_needed(elements * itemsize, kv, free, config, dtype)
