"""``--cpu-experts auto``: how many routed experts a layer must keep in host memory to fit a GPU.

The checkpoint's weights as the loader holds them (``inventory.rank_weights`` over its
safetensors headers: the load dtype, except DeepSeek-V4's routed experts that come
quantized, which stay packed, FP4 or FP8 with their scales, unless
``CODEAGENT_KEEP_QUANTIZED=0``, and its float32 / int64 small tensors), plus the planner's
workspace reserve and a KV cache of ``KV_TOKENS`` tokens (``kv.kv_cost``: the model's own
cache streams), against the device's free memory: what does not fit leaves the device in
whole experts, the same number from every sparse layer (``layers/offload.py`` places the
least used ones there). One expert's bytes are the routed experts' resident bytes over the
sparse layers and their experts (``expert_sizes``), so a packed FP4 expert counts its 17/32
of a byte a weight, not the load dtype's. On a CPU nothing is moved (the host is the device).

Limits: Qwen3-MoE and DeepSeek-V4 (the planner's families); every sparse layer's experts are
taken to be the same size (as in both); a model whose dense parts alone do not fit is not
helped (the count is capped at every expert), and the loader or the engine then says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codeagent.backend.distributed.layout import Layout
from codeagent.backend.loader import LoadError, read_config
from codeagent.backend.planning import PlanError
from codeagent.backend.planning.checkpoint import Stored, from_headers
from codeagent.backend.planning.families import QWEN3, QWEN3_NEXT, family
from codeagent.backend.planning.inventory import EXPERTS, rank_weights, role
from codeagent.backend.planning.kv import kv_cost, meta_model
from codeagent.backend.quant import keep_quantized_default

RESERVE = 2 * 2**30  # the runtime's own share of a GPU (context, kernels, allocator slack)
KV_TOKENS = 4096
ONE = Layout(1)


@dataclass(frozen=True, slots=True)
class ExpertSizes:
    per_expert: int  # bytes of one routed expert of one sparse layer, as the loader holds it
    layers: int  # sparse layers
    experts: int  # routed experts in each


def expert_sizes(entries: list[Stored], config: Any, dtype: torch.dtype, keep_packed: bool) -> ExpertSizes:
    """One routed expert's resident bytes (``keep_packed``: quantized V4 experts stay packed),
    from the checkpoint's tensors ``entries``, and how many there are."""
    architecture = family(config)
    if architecture in (QWEN3, QWEN3_NEXT):
        layers = sum(1 for i in range(config.num_hidden_layers) if config.is_sparse(i))
        experts = config.num_experts
    else:
        layers, experts = config.num_hidden_layers, config.n_routed_experts
    routed = [entry for entry in entries if role(entry.name, architecture) == EXPERTS]
    held = rank_weights(routed, config, ONE, dtype, keep_packed).total
    return ExpertSizes(-(-held // max(1, layers * experts)), layers, experts)


def host_experts_needed(weights_bytes: int, kv_bytes: int, free_bytes: int, sizes: ExpertSizes) -> int:
    """Experts per sparse layer to keep in host memory so the rest fits ``free_bytes``."""
    over = weights_bytes + kv_bytes + RESERVE - free_bytes
    if over <= 0 or not sizes.layers or not sizes.per_expert:
        return 0
    return min(sizes.experts, -(-over // (sizes.per_expert * sizes.layers)))


def auto(folder: Path, dtype: torch.dtype, device: str) -> int:
    """``--cpu-experts auto`` for ``folder`` loaded on ``device`` in ``dtype``."""
    if not device.startswith("cuda"):
        return 0
    try:
        keep_packed = keep_quantized_default()
        meta = meta_model(read_config(folder), dtype)
        entries = from_headers(folder)
        weights = rank_weights(entries, meta.config, ONE, dtype, keep_packed).total
        sizes = expert_sizes(entries, meta.config, dtype, keep_packed)
    except (PlanError, ValueError) as err:
        raise LoadError(f"--cpu-experts auto: {err}") from None
    kv = kv_cost(meta, ONE).bytes_for(KV_TOKENS)
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return host_experts_needed(weights, kv, free, sizes)
