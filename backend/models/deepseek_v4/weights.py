"""DeepSeek-V4 weights: their names, shapes and storage dtypes, in either spelling.

Weights live in one flat dict keyed by DeepSeek's release names (``embed.weight``,
``layers.N.attn.wq_a.weight``, ``layers.N.attn.kv_norm.weight``, ``hc_head_fn``,
``head.weight``, ...), except that each layer's routed experts are fused into
``layers.N.ffn.w13`` [E, 2I, D] (w1 rows, then w3 rows) and ``layers.N.ffn.w2`` [E, D, I].
The model's modules take theirs from it by name (``scope`` cuts a module's part of the
dict, keys relative to its prefix), and again after loading, which may replace the
experts' placeholders. Split across ranks, the dict holds this rank's shares under the
same names (``shares.py``); ``loading.py`` fills it from a checkpoint.

Accepted spellings: the release's, and transformers' ``save_pretrained`` output, which
differs by a ``model.`` prefix, ``embed_tokens`` / ``lm_head``, ``hc_head.hc_{fn,base,scale}``
and ``attn.norm`` for the latent's norm. ``mtp.*`` (the multi-token-prediction layer) is
skipped. The routed experts' storage is decided by the first expert tensor loaded; until
then ``allocate`` leaves a placeholder: on the meta device when the config declares
quantized weights (``quantization_config``, ``expert_dtype``) and the model keeps experts
packed, so no full-precision copy is ever allocated, and dense storage otherwise (a model
can then be filled in place without a checkpoint).

Following DeepSeek's inference code, the small numerically sensitive tensors stay
float32 whatever the model dtype: mHC parameters, norms, attention sinks, router weight
and bias, and the compressors' projections and slot biases. The LM head stays in the
model dtype (DeepSeek's code keeps a float32 copy; that is 2 GB for Flash).

With routed experts in two homes (``--cpu-experts``: ``split_homes``), a layer's
``ffn.w13`` / ``ffn.w2`` hold the experts that stay on the model's device (in id order) and
``ffn.host_w13`` / ``ffn.host_w2`` the ones in host memory, allocated on the CPU from the
start (placeholders on the meta device when they will be packed, as above).

``backend/packing.py`` may replace the dense projections, routed experts and head by packed
copies after loading (``PackedWeight``, ``PackedExperts``).

Not covered: transformers' in-memory module names (``self_attn.q_a_proj``,
``mlp.experts.gate_up_proj``); ``save_pretrained`` never writes them.
"""

from __future__ import annotations

import re

import torch

from codeagent.backend.models.deepseek_v4.config import CSA, HCA, DeepseekV4Config
from codeagent.backend.packed_weights import PackedExperts, PackedWeight

Weights = dict[str, torch.Tensor | PackedExperts | PackedWeight]  # release name -> storage

EXPERT = re.compile(r"^(layers\.\d+\.ffn\.)experts\.(\d+)\.(w1|w2|w3)\.weight$")
LATENT_NORM = re.compile(r"^(layers\.\d+\.attn\.)norm\.weight$")  # transformers' name for kv_norm
RENAMES = {
    "embed_tokens.weight": "embed.weight",
    "lm_head.weight": "head.weight",
    "hc_head.hc_fn": "hc_head_fn",
    "hc_head.hc_base": "hc_head_base",
    "hc_head.hc_scale": "hc_head_scale",
}
FLOAT32 = re.compile(r"(^|\.)hc_|norm\.weight$|attn_sink$|ffn\.gate\.(weight|bias)$|compressor\.")
INT64 = re.compile(r"tid2eid$")
ROUTED = re.compile(r"ffn\.(host_)?(w13|w2)$")
HOST = re.compile(r"ffn\.host_(w13|w2)$")  # routed experts kept in host memory


def scope(w: Weights, prefix: str) -> Weights:
    """The entries of ``w`` under ``prefix``, keyed without it (the same storage)."""
    return {k[len(prefix) :]: v for k, v in w.items() if k.startswith(prefix)}


def release_name(key: str) -> str | None:
    """A checkpoint key in DeepSeek's release spelling; None for weights we skip (MTP)."""
    name = key.removeprefix("model.")
    if name.startswith("mtp."):
        return None
    name = RENAMES.get(name, name)
    return LATENT_NORM.sub(r"\1kv_norm.weight", name)


def storage_dtype(name: str, dtype: torch.dtype) -> torch.dtype:
    if INT64.search(name):
        return torch.int64
    return torch.float32 if FLOAT32.search(name) else dtype


def declares_quantized(c: DeepseekV4Config) -> bool:
    """Whether config.json says the checkpoint's weights are quantized (as the release's does)."""
    return "quantization_config" in c.extra or c.extra.get("expert_dtype") in ("fp4", "fp8")


def allocate(
    shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, device: torch.device, packed_experts: bool
) -> Weights:
    """Uninitialised storage for every weight; routed experts on the meta device if they will be
    packed (a home with no experts, which no checkpoint tensor fills, an empty tensor), host
    experts on the CPU."""
    return {
        name: torch.empty(
            shape,
            dtype=storage_dtype(name, dtype),
            device="meta"
            if packed_experts and ROUTED.search(name) and shape[0]
            else storage_device(name, device),
        )
        for name, shape in shapes.items()
    }


def storage_device(name: str, device: torch.device) -> torch.device:
    """Where a weight lives: host experts in host memory, everything else on the model's device."""
    return torch.device("cpu") if HOST.search(name) else device


def split_homes(
    shapes: dict[str, tuple[int, ...]], on_host: dict[int, list[int]]
) -> dict[str, tuple[int, ...]]:
    """``shapes`` with layer i's routed experts ``on_host[i]`` moved to ``ffn.host_w13`` /
    ``ffn.host_w2`` (the rest stay in ``ffn.w13`` / ``ffn.w2``)."""
    out = dict(shapes)
    for layer, experts in on_host.items():
        for leaf in ("w13", "w2"):
            name = f"layers.{layer}.ffn.{leaf}"
            total, *rest = shapes[name]
            out[name] = (total - len(experts), *rest)
            out[f"layers.{layer}.ffn.host_{leaf}"] = (len(experts), *rest)
    return out


def weight_shapes(c: DeepseekV4Config) -> dict[str, tuple[int, ...]]:
    """Every stored tensor (experts fused) under its release name, with its shape."""
    h, n = c.hidden_size, c.hc_mult
    shapes: dict[str, tuple[int, ...]] = {
        "embed.weight": (c.vocab_size, h),
        "head.weight": (c.vocab_size, h),
        "norm.weight": (h,),
        "hc_head_fn": (n, n * h),
        "hc_head_base": (n,),
        "hc_head_scale": (1,),
    }
    for i in range(c.num_hidden_layers):
        shapes.update({f"layers.{i}.{k}": v for k, v in _layer_shapes(c, i).items()})
    return shapes


def _layer_shapes(c: DeepseekV4Config, i: int) -> dict[str, tuple[int, ...]]:
    h, d, n = c.hidden_size, c.head_dim, c.hc_mult
    heads, inter = c.num_attention_heads, c.moe_intermediate_size
    mix = (2 + n) * n
    s: dict[str, tuple[int, ...]] = {"attn_norm.weight": (h,), "ffn_norm.weight": (h,)}
    for hc in ("hc_attn_", "hc_ffn_"):
        s.update({hc + "fn": (mix, n * h), hc + "base": (mix,), hc + "scale": (3,)})
    s.update(
        {
            "attn.wq_a.weight": (c.q_lora_rank, h),
            "attn.q_norm.weight": (c.q_lora_rank,),
            "attn.wq_b.weight": (heads * d, c.q_lora_rank),
            "attn.wkv.weight": (d, h),
            "attn.kv_norm.weight": (d,),
            "attn.attn_sink": (heads,),
            "attn.wo_a.weight": (c.o_groups * c.o_lora_rank, heads * d // c.o_groups),
            "attn.wo_b.weight": (h, c.o_groups * c.o_lora_rank),
            "ffn.gate.weight": (c.n_routed_experts, h),
            "ffn.w13": (c.n_routed_experts, 2 * inter, h),
            "ffn.w2": (c.n_routed_experts, h, inter),
            "ffn.shared_experts.w1.weight": (inter, h),
            "ffn.shared_experts.w3.weight": (inter, h),
            "ffn.shared_experts.w2.weight": (h, inter),
        }
    )
    if c.mlp_layer_types[i] == "hash_moe":
        s["ffn.gate.tid2eid"] = (c.vocab_size, c.num_experts_per_tok)
    else:
        s["ffn.gate.bias"] = (c.n_routed_experts,)
    kind, rate = c.layer_types[i], c.rate(i)
    if kind in (CSA, HCA):
        s.update(_compressor_shapes("attn.compressor.", rate, d, kind == CSA, h))
    if kind == CSA:
        s.update(_compressor_shapes("attn.indexer.compressor.", rate, c.index_head_dim, True, h))
        s["attn.indexer.wq_b.weight"] = (c.index_n_heads * c.index_head_dim, c.q_lora_rank)
        s["attn.indexer.weights_proj.weight"] = (c.index_n_heads, h)
    return s


def _compressor_shapes(prefix: str, rate: int, dim: int, overlap: bool, h: int) -> dict[str, tuple[int, ...]]:
    width = dim * (2 if overlap else 1)
    return {
        prefix + "wkv.weight": (width, h),
        prefix + "wgate.weight": (width, h),
        prefix + "ape": (rate, width),
        prefix + "norm.weight": (dim,),
    }


def expected_names(c: DeepseekV4Config, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Every key a complete checkpoint has, experts unfused, in release spelling."""
    names = []
    for name in shapes:
        prefix, _, leaf = name.rpartition(".")
        if HOST.search(name):
            continue  # its experts are named with the device's (``ffn.w13``, ``ffn.w2``)
        if prefix.endswith("ffn") and leaf in ("w13", "w2"):
            roles = ("w1", "w3") if leaf == "w13" else ("w2",)
            names += [f"{prefix}.experts.{e}.{r}.weight" for e in range(c.n_routed_experts) for r in roles]
        else:
            names.append(name)
    return names
