"""Qwen3-Next (``Qwen3NextForCausalLM``) and Qwen3.5-MoE's text model: a hybrid of Gated DeltaNet
(linear attention) and gated full-attention layers.

Per layer, as ``layer_types`` says: (1 + w) RMSNorm -> Gated DeltaNet (``deltanet.py``) or
gated attention (``attention.py``) -> residual -> (1 + w) RMSNorm -> sparse MoE with a
shared expert, or a dense MLP where the config makes the layer dense (``moe.py``) ->
residual. Embedding, final (1 + w) RMSNorm, LM head (tied to the embedding if the config
says). One forward takes a flattened batch (``models/base.py``): prefill, chunked prefill and
decode are the same call, and every sequence continues its own state.

A sequence's state (``Qwen3NextState``) is, per layer, the attention layer's KV rows
(``KVCache`` over the engine's pool, or growing tensors standalone) or the DeltaNet layer's
conv and recurrent states (``DeltaState``, plain tensors of the sequence's own). The pool
holds the attention layers' KV rows and, per DeltaNet layer, a conv-state row and a
recurrent-state row in one block of ``state_every`` (16): the states after that block's last
token, written by the forward that crosses its end (``snapshots.py``: design, exactness,
cost). A sequence resumes from cached blocks (``resumes_from_blocks``), in memory or from
the disk tier, at the last cached block holding written states: ``new_state(paged,
cached_tokens)`` starts from them. ``prefix_states=False`` drops the state rows and with
them prefix caching: sequences then always start cold.

Weights: ``weights.py`` (both families' key spellings). An FP8 release (128 x 128 block
scales) keeps its routed experts and the projections whose parts are whole blocks packed
(``packed.py``; ``keep_quantized``, default ``CODEAGENT_KEEP_QUANTIZED``; a config that
declares its quantization builds those matrices on the meta device, so no full-precision copy
of them is allocated), DeltaNet's ``in_proj`` and the routers dequantized; ``--pack fp8|fp4`` converts a bf16 or float32
checkpoint after loading (``backend/packing.py``). Limits: one process (no ``--tp`` /
``--ep``), no ``--cpu-experts``; the FP8 spelling is checked on synthetic checkpoints, not on a
downloaded release; the multi-token-prediction weights (``mtp.*``) and a release's vision
tower are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from codeagent.backend.cache.paged import KVStream, SeqBlocks, growing_rows
from codeagent.backend.kernels.dispatch import Kernels
from codeagent.backend.layers.attention import KVCache
from codeagent.backend.layers.linear import Linear, empty_param, head_logits
from codeagent.backend.layers.rotary import cos_sin, inverse_frequencies
from codeagent.backend.models.base import CausalLMModule, SeqSlice, Step, last_rows
from codeagent.backend.models.qwen3_next import weights
from codeagent.backend.models.qwen3_next.attention import GatedAttention, OffsetRMSNorm
from codeagent.backend.models.qwen3_next.config import FULL, Qwen3NextConfig
from codeagent.backend.models.qwen3_next.deltanet import DeltaState, GatedDeltaNet
from codeagent.backend.models.qwen3_next.moe import DenseMlp, SparseMoe
from codeagent.backend.models.qwen3_next.packed import materialize
from codeagent.backend.models.qwen3_next.snapshots import Snapshots, state_streams
from codeagent.backend.quant import keep_quantized_default

LayerState = KVCache | DeltaState
STATE_EVERY = 16  # the DeltaNet states saved at the end of one block in 16 (snapshots.py)


@dataclass(slots=True)
class Qwen3NextState:
    layers: list[LayerState]  # per layer: KV rows (full attention) or conv + recurrent state
    length: int = 0  # tokens consumed so far


class DecoderLayer(nn.Module):
    def __init__(self, c: Qwen3NextConfig, index: int, dtype: torch.dtype, device: Any) -> None:
        super().__init__()
        self.full = c.layer_types[index] == FULL
        self.input_norm = OffsetRMSNorm(c.hidden_size, c.rms_norm_eps, dtype, device)
        self.mixer: nn.Module = (
            GatedAttention(c, dtype, device) if self.full else GatedDeltaNet(c, dtype, device)
        )
        self.post_norm = OffsetRMSNorm(c.hidden_size, c.rms_norm_eps, dtype, device)
        self.mlp: nn.Module = (
            SparseMoe(c, dtype, device)
            if c.is_sparse(index)
            else DenseMlp(c.hidden_size, c.intermediate_size, dtype, device)
        )

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, states: list[Any], step: Step
    ) -> torch.Tensor:
        h = self.input_norm.forward(x)
        if self.full:
            x = x + self.mixer.forward(h, cos, sin, states, step)
        else:
            x = x + self.mixer.forward(h, states, step)
        return x + self.mlp.forward(self.post_norm.forward(x), step.kernels)


class Qwen3NextForCausalLM(CausalLMModule):
    config_class = Qwen3NextConfig
    block_multiple = 1

    def __init__(
        self,
        config: Qwen3NextConfig,
        dtype: torch.dtype = torch.float32,
        device: Any = "cpu",
        kernels: Kernels | None = None,
        prefix_states: bool = True,
        state_every: int = STATE_EVERY,
        keep_quantized: bool | None = None,
    ) -> None:
        super().__init__(config, device, kernels)
        # a quantized release's matrices stay packed where they can (weights.py, packed.py)
        self.keep_quantized = keep_quantized_default() if keep_quantized is None else keep_quantized
        self.resumes_from_blocks = prefix_states  # the DeltaNet states saved in the pool (module doc)
        self.state_every = state_every  # one block in this many holds them
        # a declared release: its matrices built on meta, allocated packed or plain as they load
        deferred = self.keep_quantized and config.quantized and torch.device(device).type != "meta"
        build = torch.device("meta") if deferred else device
        self.embed = empty_param(config.vocab_size, config.hidden_size, dtype=dtype, device=build)
        self.layers = nn.ModuleList(
            DecoderLayer(config, i, dtype, build) for i in range(config.num_hidden_layers)
        )
        self.norm = OffsetRMSNorm(config.hidden_size, config.rms_norm_eps, dtype, build)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, dtype, build)
        self.inv_freq = inverse_frequencies(config.rotary_dim, config.rope_theta)
        if deferred:
            materialize(self, torch.device(device))

    def _attention_layers(self) -> list[int]:
        return [i for i, kind in enumerate(self.config.layer_types) if kind == FULL]

    def _delta_layers(self) -> list[int]:
        return [i for i, kind in enumerate(self.config.layer_types) if kind != FULL]

    def cache_streams(self, block_size: int) -> list[KVStream]:
        """Per full-attention layer, every token's keys and values [KVH, D]; per DeltaNet layer (with
        ``prefix_states``), its conv and recurrent states at each block's end (``snapshots.py``)."""
        c, dtype = self.config, self.embed.dtype
        shape = (c.num_key_value_heads, c.head_dim)
        kv = [KVStream(f"{i}.{kv}", 1, shape, dtype) for i in self._attention_layers() for kv in "kv"]
        if not self.resumes_from_blocks:
            return kv
        channels = 2 * c.linear_num_key_heads * c.linear_key_head_dim
        channels += c.linear_num_value_heads * c.linear_value_head_dim
        return kv + state_streams(
            self._delta_layers(),
            channels,
            c.linear_conv_kernel_dim,
            c.linear_num_value_heads,
            c.linear_key_head_dim,
            c.linear_value_head_dim,
            dtype,
            block_size,
            self.state_every,
        )

    def new_state(self, paged: SeqBlocks | None = None, cached_tokens: int = 0) -> Qwen3NextState:
        """A sequence's state: KV rows standalone or over its engine blocks, and DeltaNet states,
        zeros or (``cached_tokens`` > 0, a block boundary) those saved at the end of the block
        before ``cached_tokens``."""
        saving = paged is not None and self.resumes_from_blocks
        if cached_tokens and not saving:
            raise ValueError(
                "Qwen3-Next cannot resume from cached tokens without its states saved in the engine's pool"
            )
        rows = paged.rows if paged is not None else growing_rows
        layers: list[LayerState] = []
        for i, layer in enumerate(self.layers):
            if layer.full:
                layers.append(KVCache(rows(f"{i}.k", cached_tokens), rows(f"{i}.v", cached_tokens)))
                continue
            state: DeltaState = layer.mixer.fresh_state()  # type: ignore[operator]
            if saving:
                assert paged is not None
                state.saved = Snapshots(paged, i)
                if cached_tokens:
                    state.resume(cached_tokens)
            layers.append(state)
        return Qwen3NextState(layers, cached_tokens)

    def logits(
        self, input_ids: torch.Tensor, positions: torch.Tensor, seqs: list[SeqSlice], step: Step
    ) -> torch.Tensor:
        x = F.embedding(input_ids, self.embed)  # [T, hidden]
        cos, sin = cos_sin(positions, self.inv_freq)  # [T, rotary_dim]
        for index, layer in enumerate(self.layers):
            x = layer.forward(x, cos, sin, [s.state.layers[index] for s in seqs], step)  # type: ignore[operator]
        for s in seqs:
            s.state.length += s.num_tokens
        h = self.norm.forward(x[last_rows(step, x.device)])  # [N, hidden]
        return head_logits(h, self.lm_head.weight, self.kernels).float()

    def load_weights(self, stream: Iterable[tuple[str, Any]]) -> None:
        """Fill the parameters from checkpoint (key, tensor) pairs (``weights.py``)."""
        weights.load(self, stream)


class Qwen3_5MoeForCausalLM(Qwen3NextForCausalLM):
    """Qwen3.5-MoE's text model (its ``ForCausalLM``, or the text part of a release's
    ``ForConditionalGeneration``): the same layers, read by the same config and weights code."""
