"""The bytes a V4 layer must read to decode one token at batch 1, from the model's own storage.

Every weight of the layer is read whole (its tensor's or packed weight's bytes, scales
included), except:

- the routed experts: the ``k`` a token is routed to, k / E of each fused projection's bytes;
- a hash-routed layer's table: one row (k ids) instead of the router's matrix.

Caches, at the step's context (read as the layer reads them): the last W - 1 latents of the
sliding window; on compressed layers every compressed entry (HCA attends to all of them; CSA
concatenates all before its top-k mask), and on CSA layers the indexer's keys, all scored.
What is written (one latent, an entry every ``rate`` tokens) and the activations (a few KB)
are left out. Groups: ``attention`` (projections, norms, sinks), ``indexer`` (its query
projection and head weights), ``compressor`` (both compressors' projections, slot biases,
norms), ``mhc`` (both hyper-connections), ``norms``, ``router``, ``shared_expert``,
``routed_experts``, ``cache``.
"""

from __future__ import annotations

from codeagent.backend.models.deepseek_v4.attention import LayerState
from codeagent.backend.models.deepseek_v4.model import DeepseekV4ForCausalLM
from codeagent.backend.models.deepseek_v4.weights import scope
from codeagent.backend.packed_weights import PackedExperts


def layer_bytes(model: DeepseekV4ForCausalLM, index: int, state: LayerState) -> dict[str, float]:
    """Bytes layer ``index`` reads for one decoded token, by group, and their ``total``."""
    c = model.config
    out: dict[str, float] = {}
    for name, value in scope(model.w, f"layers.{index}.").items():
        size = float(value.nbytes)
        if isinstance(value, PackedExperts) or name in ("ffn.w13", "ffn.w2"):
            size *= c.num_experts_per_tok / c.n_routed_experts
        elif name == "ffn.gate.tid2eid":
            size = float(c.num_experts_per_tok * value.element_size())  # type: ignore[union-attr]
        group = _group(name)
        out[group] = out.get(group, 0.0) + size
    out["cache"] = cache_bytes(model, index, state)
    out["total"] = sum(out.values())
    return out


def _group(name: str) -> str:
    if name.startswith("hc_"):
        return "mhc"
    if name.endswith("_norm.weight") and not name.startswith("attn."):
        return "norms"
    if "compressor." in name:
        return "compressor"
    if name.startswith("attn.indexer."):
        return "indexer"
    if name.startswith("attn."):
        return "attention"
    if name.startswith("ffn.gate."):
        return "router"
    if name.startswith("ffn.shared_experts."):
        return "shared_expert"
    return "routed_experts"


def cache_bytes(model: DeepseekV4ForCausalLM, index: int, state: LayerState) -> float:
    """The layer's cache reads for one decoded token after ``state``'s tokens."""
    attn, element = model.layers[index].attn, model.dtype.itemsize
    latents = min(len(state.latents), attn.window - 1) * attn.head_dim * element
    entries = state.compressor.count * attn.head_dim * element if attn.compressor is not None else 0
    keys = 0
    if attn.indexer is not None:
        keys = state.indexer.count * attn.indexer.compressor.out_dim * element
    return float(latents + entries + keys)
