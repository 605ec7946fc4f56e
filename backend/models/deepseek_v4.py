"""DeepSeek-V4 (``DeepseekV4ForCausalLM``): mHC residual streams, hybrid compressed attention,
sqrt-softplus MoE with hash-routed first layers.

Per layer: the ``hc_mult`` residual streams [T, n, hidden] are mixed into one input by the
attention's hyper-connection (pre weights; Sinkhorn-normalised ``comb`` for the streams),
RMSNorm, attention (``deepseek_v4_attention``), then expanded back (``post``); the same
again around the MoE (routed experts with clamped SwiGLU plus one shared expert). The head
collapses the streams with its own pre weights, then RMSNorm and the LM head.

Weights live in one flat dict under DeepSeek's release names (``layers.N.attn.wq_a.weight``,
``hc_head_fn``, ...); ``load_weights`` also takes transformers' ``save_pretrained`` spelling
(a ``model.`` prefix, ``embed_tokens``, ``hc_head.hc_fn``) and fuses the experts into
``w13`` [E, 2I, hidden] / ``w2`` [E, hidden, I] per layer. FP8 / FP4 release weights are
not read yet. The MTP layer (``mtp.*``) is ignored.

Decoding matches the model's full forward at every position (see the attention module
for the visibility rule of compressed entries).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from codeagent.backend.models.base import SeqSlice, split
from codeagent.backend.models.deepseek_v4_attention import (
    Compressor,
    LayerState,
    apply_interleaved_rope,
    attend,
    indexer_selection,
    rope_cos_sin,
    unweighted_rms_norm,
    v4_rms_norm,
    visible_entries,
)
from codeagent.backend.models.deepseek_v4_config import DeepseekV4Config

CSA, HCA = "compressed_sparse_attention", "heavily_compressed_attention"


def weight_shapes(c: DeepseekV4Config) -> dict[str, tuple[int, ...]]:
    """Every weight the model needs, under its release name, with its shape."""
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
        shapes.update(_layer_shapes(c, i, f"layers.{i}."))
    return shapes


def _layer_shapes(c: DeepseekV4Config, i: int, p: str) -> dict[str, tuple[int, ...]]:
    h, d, n, heads = c.hidden_size, c.head_dim, c.hc_mult, c.num_attention_heads
    mix = (2 + n) * n
    shared = c.moe_intermediate_size * c.n_shared_experts
    s = {
        p + "attn_norm.weight": (h,),
        p + "ffn_norm.weight": (h,),
        p + "hc_attn_fn": (mix, n * h),
        p + "hc_attn_base": (mix,),
        p + "hc_attn_scale": (3,),
        p + "hc_ffn_fn": (mix, n * h),
        p + "hc_ffn_base": (mix,),
        p + "hc_ffn_scale": (3,),
        p + "attn.wq_a.weight": (c.q_lora_rank, h),
        p + "attn.q_norm.weight": (c.q_lora_rank,),
        p + "attn.wq_b.weight": (heads * d, c.q_lora_rank),
        p + "attn.wkv.weight": (d, h),
        p + "attn.norm.weight": (d,),
        p + "attn.attn_sink": (heads,),
        p + "attn.wo_a.weight": (c.o_groups * c.o_lora_rank, heads * d // c.o_groups),
        p + "attn.wo_b.weight": (h, c.o_groups * c.o_lora_rank),
        p + "ffn.gate.weight": (c.n_routed_experts, h),
        p + "ffn.w13": (c.n_routed_experts, 2 * c.moe_intermediate_size, h),
        p + "ffn.w2": (c.n_routed_experts, h, c.moe_intermediate_size),
        p + "ffn.shared_experts.w1.weight": (shared, h),
        p + "ffn.shared_experts.w3.weight": (shared, h),
        p + "ffn.shared_experts.w2.weight": (h, shared),
    }
    if c.mlp_layer_types[i] == "hash_moe":
        s[p + "ffn.gate.tid2eid"] = (c.vocab_size, c.num_experts_per_tok)
    else:
        s[p + "ffn.gate.bias"] = (c.n_routed_experts,)
    for comp in _compressors(c, i):
        width = comp.out_dim * (2 if comp.overlap else 1)
        s.update(
            {
                p + comp.prefix + "wkv.weight": (width, h),
                p + comp.prefix + "wgate.weight": (width, h),
                p + comp.prefix + "ape": (comp.rate, width),
                p + comp.prefix + "norm.weight": (comp.out_dim,),
            }
        )
    if c.layer_types[i] == CSA:
        s[p + "attn.indexer.wq_b.weight"] = (c.index_n_heads * c.index_head_dim, c.q_lora_rank)
        s[p + "attn.indexer.weights_proj.weight"] = (c.index_n_heads, h)
    return s


def _compressors(c: DeepseekV4Config, i: int) -> list[Compressor]:
    kind, rate = c.layer_types[i], c.rate(i)
    if kind == HCA:
        return [Compressor("attn.compressor.", rate, c.head_dim, overlap=False)]
    if kind == CSA:
        return [
            Compressor("attn.compressor.", rate, c.head_dim, overlap=True),
            Compressor("attn.indexer.compressor.", rate, c.index_head_dim, overlap=True),
        ]
    return []


def canonical_name(key: str) -> str | None:
    """A checkpoint key in DeepSeek's release spelling; None for weights we do not use (MTP)."""
    name = key.removeprefix("model.")
    if name.startswith("mtp."):
        return None
    name = {"embed_tokens.weight": "embed.weight", "lm_head.weight": "head.weight"}.get(name, name)
    return re.sub(r"^hc_head\.hc_(fn|base|scale)$", r"hc_head_\1", name)


class DeepseekV4ForCausalLM(nn.Module):
    config_class = DeepseekV4Config

    def __init__(
        self, config: DeepseekV4Config, dtype: torch.dtype = torch.float32, device: Any = "cpu"
    ) -> None:
        super().__init__()
        self.config = config
        self.dtype, self.device = dtype, torch.device(device)
        self.shapes = weight_shapes(config)
        self.w: dict[str, torch.Tensor] = {}
        self.layer_cache: dict[str, dict[str, torch.Tensor]] = {}
        self.rope = {
            kind: spec.inverse_frequencies()
            for kind, spec in (("main", config.rope_main), ("compress", config.rope_compress))
        }
        self.compressors = [_compressors(config, i) for i in range(config.num_hidden_layers)]

    def new_state(self) -> list[LayerState]:
        return [LayerState() for _ in range(self.config.num_hidden_layers)]

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        from codeagent.backend.models.deepseek_v4_weights import load_into

        load_into(self, weights)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, seqs: list[SeqSlice]) -> torch.Tensor:
        c, w = self.config, self.w
        x = w["embed.weight"][input_ids]  # [T, hidden]
        streams = x[:, None, :].expand(-1, c.hc_mult, -1).contiguous()  # [T, n, hidden]
        for i in range(c.num_hidden_layers):
            p = f"layers.{i}."
            streams = self._sublayer(
                streams,
                p + "hc_attn_",
                p + "attn_norm.weight",
                lambda h, i=i: self._attention(i, h, positions, seqs),
            )
            streams = self._sublayer(
                streams, p + "hc_ffn_", p + "ffn_norm.weight", lambda h, i=i: self._moe(i, h, input_ids)
            )
        last = torch.cumsum(torch.tensor([s.num_tokens for s in seqs], device=x.device), 0) - 1
        collapsed = self._head_collapse(streams[last])  # [N, hidden]
        return F.linear(v4_rms_norm(collapsed, w["norm.weight"], c.rms_norm_eps), w["head.weight"]).float()

    def _sublayer(self, streams: torch.Tensor, hc: str, norm: str, body: Any) -> torch.Tensor:
        post, comb, collapsed = self._hyper_connection(streams, hc)
        out = body(v4_rms_norm(collapsed, self.w[norm], self.config.rms_norm_eps))  # [T, hidden]
        dtype = streams.dtype
        return post.to(dtype)[..., None] * out[:, None, :] + torch.matmul(
            comb.to(dtype).transpose(-1, -2), streams
        )

    def _hyper_connection(self, streams: torch.Tensor, hc: str):
        """mHC weights for one sublayer: post [T, n], comb [T, n, n], and the collapsed input [T, hidden]."""
        c, w, n = self.config, self.w, self.config.hc_mult
        flat = unweighted_rms_norm(streams.flatten(1).float(), c.rms_norm_eps)
        mixes = F.linear(flat, w[hc + "fn"].float())  # [T, (2 + n) * n]
        pre_w, post_w, comb_w = mixes.split([n, n, n * n], dim=-1)
        pre_b, post_b, comb_b = w[hc + "base"].float().split([n, n, n * n])
        pre_s, post_s, comb_s = w[hc + "scale"].float().unbind(0)
        pre = torch.sigmoid(pre_w * pre_s + pre_b) + c.hc_eps
        post = 2 * torch.sigmoid(post_w * post_s + post_b)
        comb = torch.softmax(comb_w.unflatten(-1, (n, n)) * comb_s + comb_b.view(n, n), dim=-1) + c.hc_eps
        comb = comb / (comb.sum(dim=-2, keepdim=True) + c.hc_eps)
        for _ in range(c.hc_sinkhorn_iters - 1):
            comb = comb / (comb.sum(dim=-1, keepdim=True) + c.hc_eps)
            comb = comb / (comb.sum(dim=-2, keepdim=True) + c.hc_eps)
        collapsed = (pre[..., None] * streams).sum(dim=1).to(streams.dtype)
        return post, comb, collapsed

    def _head_collapse(self, streams: torch.Tensor) -> torch.Tensor:
        w, c = self.w, self.config
        flat = unweighted_rms_norm(streams.flatten(1).float(), c.rms_norm_eps)
        mixes = F.linear(flat, w["hc_head_fn"].float())
        pre = torch.sigmoid(mixes * w["hc_head_scale"].float() + w["hc_head_base"].float()) + c.hc_eps
        return (pre[..., None] * streams).sum(dim=1).to(streams.dtype)

    def _attention(
        self, i: int, x: torch.Tensor, positions: torch.Tensor, seqs: list[SeqSlice]
    ) -> torch.Tensor:
        c, w, p = self.config, self.w, f"layers.{i}.attn."
        t, heads, d = x.shape[0], c.num_attention_heads, c.head_dim
        q_residual = v4_rms_norm(F.linear(x, w[p + "wq_a.weight"]), w[p + "q_norm.weight"], c.rms_norm_eps)
        q = unweighted_rms_norm(F.linear(q_residual, w[p + "wq_b.weight"]).view(t, heads, d), c.rms_norm_eps)
        kv = v4_rms_norm(F.linear(x, w[p + "wkv.weight"]), w[p + "norm.weight"], c.rms_norm_eps)  # [T, D]
        inv_freq, scale = self.rope["main" if c.layer_types[i] == "sliding_attention" else "compress"]
        cos, sin = rope_cos_sin(positions, inv_freq, scale, x.dtype)
        q = apply_interleaved_rope(q, cos[:, None], sin[:, None])
        kv = apply_interleaved_rope(kv, cos, sin)
        pieces = zip(
            seqs,
            split(x, seqs),
            split(q_residual, seqs),
            split(q, seqs),
            split(kv, seqs),
            split(positions, seqs),
            strict=True,
        )
        outs = [self._sequence_attention(i, s.state[i], *rest) for s, *rest in pieces]
        out = apply_interleaved_rope(torch.cat(outs), cos[:, None], -sin[:, None])  # [T, H, D]
        grouped = out.reshape(t, c.o_groups, -1)
        wo_a = w[p + "wo_a.weight"].view(c.o_groups, c.o_lora_rank, -1)
        return F.linear(torch.einsum("tgi,gri->tgr", grouped, wo_a).flatten(1), w[p + "wo_b.weight"])

    def _sequence_attention(
        self,
        i: int,
        state: LayerState,
        x: torch.Tensor,
        q_residual: torch.Tensor,
        q: torch.Tensor,
        kv: torch.Tensor,
        positions: torch.Tensor,
    ) -> torch.Tensor:
        c, w, p = self.config, self.w, f"layers.{i}."
        window = kv if state.window is None else torch.cat((state.window, kv))
        key_pos = torch.arange(
            int(positions[-1]) + 1 - window.shape[0], int(positions[-1]) + 1, device=kv.device
        )
        visible = (key_pos[None, :] <= positions[:, None]) & (
            key_pos[None, :] > positions[:, None] - c.sliding_window
        )
        state.window = window[-(c.sliding_window - 1) :] if c.sliding_window > 1 else window[:0]
        keys = window
        rope, local = self.rope["compress"], self._layer_weights(p)
        for comp in self.compressors[i]:
            comp_state = state.indexer if "indexer" in comp.prefix else state.compressor
            comp.update(comp_state, x, local, rope, c.rms_norm_eps)
        entries = state.compressor.entries
        if entries is not None:
            if c.layer_types[i] == CSA:
                chosen = indexer_selection(
                    x,
                    q_residual,
                    positions,
                    state.indexer.entries,
                    local,
                    "attn.indexer.",
                    c.index_n_heads,
                    c.index_head_dim,
                    c.index_topk,
                    c.rate(i),
                    rope,
                )
            else:
                chosen = visible_entries(positions, entries.shape[0], c.rate(i))
            keys = torch.cat((window, entries))
            visible = torch.cat((visible, chosen), dim=1)
        return attend(q, keys, visible, w[p + "attn.attn_sink"], c.head_dim**-0.5)

    def _layer_weights(self, prefix: str) -> dict[str, torch.Tensor]:
        """One layer's weights keyed without the ``layers.N.`` prefix (built once per layer)."""
        if prefix not in self.layer_cache:
            self.layer_cache[prefix] = {
                k[len(prefix) :]: v for k, v in self.w.items() if k.startswith(prefix)
            }
        return self.layer_cache[prefix]

    def _moe(self, i: int, x: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        c, w, p = self.config, self.w, f"layers.{i}.ffn."
        scores = F.softplus(F.linear(x, w[p + "gate.weight"])).sqrt()  # [T, E]
        if c.mlp_layer_types[i] == "hash_moe":
            ids = w[p + "gate.tid2eid"][input_ids].long()
        else:
            ids = torch.topk(scores + w[p + "gate.bias"], c.num_experts_per_tok, dim=-1).indices
        weights = scores.gather(1, ids)
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20) * c.routed_scaling_factor
        routed = clamped_experts(x, w[p + "w13"], w[p + "w2"], weights, ids, c.swiglu_limit)
        shared = clamped_swiglu(
            F.linear(x, w[p + "shared_experts.w1.weight"]),
            F.linear(x, w[p + "shared_experts.w3.weight"]),
            c.swiglu_limit,
        )
        return routed + F.linear(shared, w[p + "shared_experts.w2.weight"])


def clamped_swiglu(gate: torch.Tensor, up: torch.Tensor, limit: float) -> torch.Tensor:
    return F.silu(gate.clamp(max=limit)) * up.clamp(min=-limit, max=limit)


def clamped_experts(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    weights: torch.Tensor,
    ids: torch.Tensor,
    limit: float,
) -> torch.Tensor:
    """x [T, hidden]; w13 [E, 2I, hidden]; w2 [E, hidden, I]; weights, ids [T, k] -> [T, hidden]."""
    out = torch.zeros_like(x)
    for expert in torch.unique(ids).tolist():
        token, slot = torch.where(ids == expert)
        gate, up = F.linear(x[token], w13[expert]).chunk(2, dim=-1)
        h = F.linear(clamped_swiglu(gate, up, limit), w2[expert]) * weights[token, slot, None]
        out.index_add_(0, token, h.to(out.dtype))
    return out
