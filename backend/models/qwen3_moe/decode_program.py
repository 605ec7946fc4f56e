"""Qwen3-MoE's decode step on the CPU as one bound list of native calls.

A CPU decode step of one sequence is bound by reading the weights, yet around its ~30 kernel
calls the layer-by-layer path (``model.py``) spends about a millisecond a step on Python:
module and dispatch code, tensor allocations, argument marshalling and a few torch ops (6% of
a bfloat16 step of the CPU bench's model, 10-19% of an FP8 or FP4 one). A ``DecodeProgram``
does that work once: it allocates every activation buffer, picks each kernel as the layers'
dispatch does (``bound_linear``, ``bound_experts``) and binds its call to those buffers
(``NativeCall``). A step then writes only what changes (the tokens' embedding rows, their cos/sin
rows, the sequences' block tables and lengths) into fixed buffers, runs the calls in order, and
advances the caches' lengths. A program serves decode steps of one batch size (one to
``MAX_SEQUENCES`` sequences, one new token each); the model keeps one per size it meets. It is the CPU's counterpart of a captured CUDA graph, built from
the model explicitly rather than recorded.

The calls are the layer-by-layer path's, in its order, on the same values (the residual adds
fused into the next norm, ``add_rms_norm``, which rounds the sum as torch's add does), so the
logits are bit-identical (``tests/backend/test_decode_program.py``). ``program_for`` hands the
model's ``logits`` the program for a step, or None where the step or the model cannot take one
(the layer-by-layer path then runs, as it does for prefill, prefix-sharing batches and GPUs).

Limits: decode steps of up to ``MAX_SEQUENCES`` sequences, none sharing a prompt's blocks with
another (those read the shared rows once on the layer path, ``layers/shared_prefix.py``); one
process (no tensor parallelism), sparse layers only (a dense MLP's SiLU gate has no native
kernel), no experts in host memory beside a GPU, every product on a native kernel (bfloat16 or
float32, or FP8 / FP4 / INT6 packed: bfloat16 products take up to 8 rows where the CPU
multiplies in pairs, else 3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from codeagent.backend.cache.paged import PagedRows
from codeagent.backend.cache.tables import BlockTables
from codeagent.backend.kernels.native_build import NativeCall, calls
from codeagent.backend.layers import shared_prefix
from codeagent.backend.layers.attention import KVCache
from codeagent.backend.layers.linear import bound_linear
from codeagent.backend.layers.moe import bound_experts

if TYPE_CHECKING:
    from codeagent.backend.models.qwen3_moe.model import Qwen3MoeForCausalLM


MAX_SEQUENCES = 8  # the most sequences a program's step takes (bf16 products in pairs take 8 rows)


class Refused(Exception):
    """The model (or this step) cannot run as a program: why."""


class DecodeProgram:
    """One model's decode step for ``n`` sequences over one KV pool, bound."""

    def __init__(
        self, model: Qwen3MoeForCausalLM, n: int, caches: list[KVCache], block_size: int, width: int
    ) -> None:
        """``caches``: a sequence's (any over the pool's tensors); ``width``: the block-table room."""
        kernels = model.kernels
        native = kernels.native
        if native is None or kernels.triton is not None:
            raise Refused("the native CPU kernels are not this model's")
        if model.group.size != 1:
            raise Refused("the model is split over ranks")
        c, dtype = model.config, model.embed.dtype
        first = model.layers[0].attn
        heads, kv_heads, d = first.heads, first.kv_heads, first.head_dim
        hidden, top_k = c.hidden_size, c.num_experts_per_tok

        def buffer(*shape: int, like: torch.dtype = dtype) -> torch.Tensor:
            return torch.zeros(*shape, dtype=like)

        def native_product(call: NativeCall | None, what: str) -> NativeCall:
            if call is None:
                raise Refused(f"{what} runs no native kernel")
            return call

        self.model, self.n, self.block_size = model, n, block_size
        self.x, self.h, self.o, self.mlp = (buffer(n, hidden) for _ in range(4))
        self.qkv = buffer(n, (heads + 2 * kv_heads) * d)
        self.q, self.k, self.attn = buffer(n, heads, d), buffer(n, kv_heads, d), buffer(n, heads, d)
        self.router = buffer(n, c.num_experts)
        self.weights, self.ids = buffer(n, top_k, like=torch.float32), buffer(n, top_k, like=torch.int64)
        self.logits = buffer(n, model.lm_head.weight.shape[0])
        self.freqs = buffer(n, d, like=torch.float32)
        self.cos, self.sin = buffer(n, d, like=torch.float32), buffer(n, d, like=torch.float32)
        self.tables, self.lengths = buffer(n, width, like=torch.int64), buffer(n, like=torch.int64)
        self.pools = [(cache.k.tensor, cache.v.tensor) for cache in caches]  # type: ignore[attr-defined]
        q_cols, k_cols = heads * d, kv_heads * d
        v_rows = self.qkv[:, q_cols + k_cols :].view(n, kv_heads, d)  # rows apart: the kernel takes it
        calls: list[NativeCall] = []
        for index, layer in enumerate(model.layers):
            attn, moe = layer.attn, layer.mlp
            if not hasattr(moe, "gate") or moe.homes is not None or moe.ep:
                raise Refused(f"layer {index} is not a sparse MoE layer with every expert here")
            if (attn.heads, attn.kv_heads, attn.head_dim) != (heads, kv_heads, d):
                raise Refused(f"layer {index}'s attention differs from layer 0's")
            k_pool, v_pool = self.pools[index]
            if not native.fits_decode_attention(self.q, k_pool):
                raise Refused(f"layer {index}'s KV pool does not fit the native decode attention")
            norm = layer.input_norm
            if index == 0:
                calls.append(native.rms_norm_call(self.x, norm.weight, norm.eps, self.h))
            else:
                calls.append(
                    native.add_rms_norm_call(self.mlp, self.x, norm.weight, norm.eps, self.x, self.h)
                )
            product = bound_linear(self.h, attn.qkv.weight, self.qkv, kernels)
            calls.append(native_product(product, f"layer {index}'s qkv projection"))
            for rows, qk_norm, out in (
                (self.qkv[:, :q_cols], attn.q_norm, self.q),
                (self.qkv[:, q_cols : q_cols + k_cols], attn.k_norm, self.k),
            ):
                if not native.fits_norm_rope(rows, qk_norm.weight):
                    raise Refused(f"layer {index}'s q/k norm does not fit the native kernel")
                calls.append(
                    native.norm_rope_call(rows, qk_norm.weight, self.cos, self.sin, qk_norm.eps, out)
                )
            calls.append(
                native.decode_attention_call(
                    self.q,
                    self.k,
                    v_rows,
                    k_pool,
                    v_pool,
                    self.tables,
                    block_size,
                    self.lengths,
                    attn.scale,
                    self.attn,
                )
            )
            product = bound_linear(self.attn.view(n, heads * d), attn.o.weight, self.o, kernels)
            calls.append(native_product(product, f"layer {index}'s output projection"))
            post = layer.post_norm
            calls.append(native.add_rms_norm_call(self.o, self.x, post.weight, post.eps, self.x, self.h))
            product = bound_linear(self.h, moe.gate.weight, self.router, kernels)
            calls.append(native_product(product, f"layer {index}'s router"))
            if not native.fits_softmax_topk(self.router, top_k):
                raise Refused(f"layer {index}'s router does not fit the native kernel")
            calls.append(native.softmax_topk_call(self.router, top_k, moe.normalize, self.weights, self.ids))
            product = bound_experts(self.h, moe.w13, moe.w2, self.weights, self.ids, self.mlp, kernels)
            calls.append(native_product(product, f"layer {index}'s experts"))
        final = model.norm
        calls.append(native.add_rms_norm_call(self.mlp, self.x, final.weight, final.eps, self.x, self.h))
        product = bound_linear(self.h, model.lm_head.weight, self.logits, kernels)
        calls.append(native_product(product, "the LM head"))
        self.calls = tuple(calls)
        self.threads = torch.get_num_threads()
        self.half = d // 2
        self._tables = self.tables.numpy()
        self._lengths = self.lengths.numpy()

    def serves(self, seqs: list[list[KVCache]], tables: BlockTables) -> bool:
        """Whether this program can run a step of these sequences (their caches) and tables."""
        if (
            len(seqs) != self.n
            or torch.get_num_threads() != self.threads
            or tables.block_size != self.block_size
        ):
            return False
        if max(len(table) for table in tables.tables) > self._tables.shape[1]:
            return False
        return all(
            isinstance(cache.k, PagedRows) and cache.k.tensor is k and cache.v.tensor is v  # type: ignore[attr-defined]
            for caches in seqs
            for cache, (k, v) in zip(caches, self.pools, strict=True)
        )

    def run(
        self, input_ids: torch.Tensor, positions: torch.Tensor, seqs: list[list[KVCache]], tables: BlockTables
    ) -> torch.Tensor:
        """One decode step (input_ids, positions [n]): logits [n, V] float32; the new key and
        value rows land in the pool."""
        model = self.model
        torch.index_select(model.embed, 0, input_ids, out=self.x)
        torch.mul(positions.float()[:, None], model.inv_freq[None, :], out=self.freqs[:, : self.half])
        self.freqs[:, self.half :] = self.freqs[:, : self.half]
        torch.cos(self.freqs, out=self.cos)
        torch.sin(self.freqs, out=self.sin)
        for row, (table, cached) in enumerate(zip(tables.tables, tables.cached, strict=True)):
            self._tables[row, : len(table)] = table
            self._lengths[row] = cached + 1
        calls["decode_program"] += 1
        for call in self.calls:
            call.run()
        for caches in seqs:
            for cache in caches:
                cache.k.length += 1  # type: ignore[attr-defined]
                cache.v.length += 1  # type: ignore[attr-defined]
        return self.logits.to(torch.float32, copy=True)  # the caller's own (masks write into it)


def program_for(
    model: Qwen3MoeForCausalLM, seqs: list[list[KVCache]], sizes: list[int], tables: BlockTables | None
) -> DecodeProgram | None:
    """The model's program for this step (built on the first step of its batch size that can take
    one, kept in ``model.decode_programs``), or None: not a decode step over the pool that a
    program takes, switched off (``model.use_decode_program``), or the model cannot run one for
    that size (``model.program_refusals`` says why)."""
    if (
        not model.use_decode_program
        or tables is None
        or any(size != 1 for size in sizes)
        or not takes(tables)
    ):
        return None
    n = len(seqs)
    if n in model.program_refusals:
        return None
    program = model.decode_programs.get(n)
    if program is None or not program.serves(seqs, tables):
        if not isinstance(seqs[0][0].k, PagedRows):
            return None
        width = table_width(max(len(table) for table in tables.tables))
        try:
            program = DecodeProgram(model, n, seqs[0], tables.block_size, width)
        except Refused as refused:
            model.program_refusals[n] = str(refused)
            return None
        if not program.serves(seqs, tables):  # sequences over different pools
            return None
        model.decode_programs[n] = program
    return program


def takes(tables: BlockTables) -> bool:
    """Whether a decode step over these tables may run as a program: up to ``MAX_SEQUENCES``
    sequences, none sharing a prompt's blocks the layer path would read once for them."""
    n = len(tables.tables)
    return n <= MAX_SEQUENCES and (n == 1 or not tables.shared_groups(shared_prefix.SHARED_MIN_TOKENS))


def table_width(blocks: int) -> int:
    """Room for a block table of ``blocks``: the next power of two from 64 (a longer table
    builds a wider program)."""
    return max(64, 1 << (blocks - 1).bit_length())
