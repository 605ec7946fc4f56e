"""Which layouts a model fits on given hardware, and the smallest one that does.

For each candidate layout (``tp`` = 1, 2, 4, 8, ... up to the GPUs given; with ``ep`` as
well where ``tp`` > 1), rank 0 (the largest) needs

    weights (inventory.py) + workspace + KV cache (kv.py) for the context asked

to fit one device's memory. The workspace is

    activations = chunk x 4 B x (2 x widest + 4 x residual)
    logits      = sequences x vocabulary x 4 B x 2
    reserve     = 2 GiB a GPU (+ 0.5 GiB for NCCL's buffers when tp > 1), 1 GiB on a CPU

and, for Qwen3-Next / Qwen3.5-MoE, the running sequences' own DeltaNet states

    states      = sequences x DeltaNet layers x (value heads x key dim x value dim x 4 B
                  + conv channels x (kernel - 1) x the dtype's bytes)

(fixed per sequence, whatever its length; not in the KV pool), where ``chunk`` is the engine's largest prefill chunk (``max_batch_tokens``, 2048 tokens),
``widest`` a token's widest intermediate (query heads x head dim plus keys and values; top-k
experts x 2 x their width; a dense MLP's 2 x width; the indexer's heads x dim; Qwen3-Next's
gated queries and its DeltaNet input projection), ``residual``
the hidden size (times ``hc_mult`` for DeepSeek-V4's mHC streams), all counted in float32
(the widest the runtime's temporaries get) and not divided by ``tp`` (the residual stream
is replicated; a conservative bound). ``sequences`` is the engine's 64 running sequences,
whose last-token logits are float32 and gathered whole on every rank (logits and the
sampler's probabilities). The reserve covers the CUDA context, cuBLAS and Triton
workspaces and the caching allocator's fragmentation (the interpreter, torch and the
tokenizer on a CPU).

On a CPU, ``tp`` ranks share the host: each gets ``memory / tp``. The longest context is
what the memory left after weights and workspace holds, in whole blocks, capped by the
model's window. ``suggest`` looks further (up to 64 GPUs of the same kind, or H100s when a
CPU is too small) for the refusal's "what would fit". Qwen3-Next runs in one process only
(no ``--tp`` / ``--ep`` yet): its layouts of more than one rank are refused with that reason.

Limits: the attention kernels are assumed not to materialise [heads, chunk, context]
scores (the Triton paged kernels do not; torch's CPU attention works in blocks); the
engine's own pool sizing (85 % of free GPU memory, min(4 GiB, 30 %) on a CPU, or
``--kv-cache-gb``) may give the KV cache less than the planner's longest context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from codeagent.backend.distributed.layout import Layout, LayoutError
from codeagent.backend.planning import PlanError
from codeagent.backend.planning.checkpoint import Stored, estimated, from_headers
from codeagent.backend.planning.families import QWEN3, QWEN3_NEXT, family
from codeagent.backend.planning.hardware import GPUS, Hardware
from codeagent.backend.planning.inventory import RankWeights, checkpoint_totals, rank_weights
from codeagent.backend.planning.kv import KVCost, kv_cost, meta_model
from codeagent.backend.planning.source import ModelSource
from codeagent.backend.quant import keep_quantized_default

GIB = 1 << 30
PREFILL_CHUNK = 2048  # the engine's max_batch_tokens
SEQUENCES = 64  # the engine's max_seqs
GPU_RESERVE, NCCL_RESERVE, CPU_RESERVE = 2 * GIB, GIB // 2, GIB
DEFAULT_CONTEXT = 128 * 1024
MAX_TP = 64
GPUS_PER_NODE = 8


@dataclass(frozen=True, slots=True)
class Workspace:
    activations: int
    logits: int
    reserve: int
    states: int = 0  # the running sequences' own recurrent states (Qwen3-Next's DeltaNet layers)

    @property
    def total(self) -> int:
        return self.activations + self.logits + self.reserve + self.states


@dataclass(frozen=True, slots=True)
class Candidate:
    """Rank 0 of one layout: what it holds and whether that fits one device."""

    layout: Layout
    memory: int  # of the device (or the CPU's share) a rank runs on
    window: int  # the model's context window
    workspace: Workspace
    weights: RankWeights | None = None  # None when the layout cannot split the model
    kv: KVCost | None = None
    problem: str | None = None  # why the layout cannot split it (LayoutError's words)

    @property
    def fixed(self) -> int:
        return (self.weights.total if self.weights else 0) + self.workspace.total

    def needed(self, context: int) -> int:
        return self.fixed + (self.kv.bytes_for(context) if self.kv else 0)

    def fits(self, context: int) -> bool:
        return self.problem is None and self.needed(context) <= self.memory

    @property
    def longest(self) -> int:
        if self.kv is None:
            return 0
        return min(self.window, self.kv.tokens_in(self.memory - self.fixed))


@dataclass(frozen=True, slots=True)
class Planned:
    """What every candidate of one model shares: the model built on the meta device, its checkpoint
    tensors, the dtype and whether quantized experts stay packed."""

    source: ModelSource
    meta: Any  # the model on the meta device: its config and KV streams
    entries: list[Stored]
    dtype: torch.dtype
    keep_packed: bool

    @classmethod
    def build(cls, source: ModelSource, dtype: torch.dtype) -> Planned:
        try:
            keep_packed = keep_quantized_default()
        except ValueError as err:
            raise PlanError(str(err)) from None
        meta = meta_model(source.config, dtype)
        entries = from_headers(source.folder) if source.folder else estimated(source.config, meta.config)
        return cls(source, meta, entries, dtype, keep_packed)

    @property
    def window(self) -> int:
        return int(self.meta.config.max_position_embeddings)

    def candidate(self, layout: Layout, memory: int, kind: str) -> Candidate:
        workspace = workspace_for(self.meta.config, layout, kind, self.dtype)
        if layout.tp > 1 and family(self.meta.config) == QWEN3_NEXT:
            problem = "Qwen3-Next runs in one process (no --tp / --ep yet)"
            return Candidate(layout, memory, self.window, workspace, problem=problem)
        try:
            weights = rank_weights(self.entries, self.meta.config, layout, self.dtype, self.keep_packed)
            kv = kv_cost(self.meta, layout)
        except LayoutError as err:
            return Candidate(layout, memory, self.window, workspace, problem=str(err))
        return Candidate(layout, memory, self.window, workspace, weights, kv)


@dataclass(frozen=True, slots=True)
class Plan:
    source: ModelSource
    hardware: Hardware
    dtype: torch.dtype
    context: int
    window: int
    checkpoint: dict[str, int]  # the whole checkpoint's bytes by stored format
    not_loaded: int  # of those, tensors the runtime skips (MTP)
    candidates: list[Candidate]
    planned: Planned  # what the candidates were computed from

    @property
    def chosen(self) -> Candidate | None:
        """The smallest layout that fits the context asked."""
        return next((c for c in self.candidates if c.fits(self.context)), None)


def workspace_for(config: Any, layout: Layout, kind: str, dtype: torch.dtype = torch.bfloat16) -> Workspace:
    """The activation, logits, reserve (and recurrent state) bytes of one rank (see the module docstring)."""
    c = config
    architecture = family(c)
    streams = getattr(c, "hc_mult", 1)
    kv_width = 2 * getattr(c, "num_key_value_heads", 0) * c.head_dim
    gated = 2 if architecture == QWEN3_NEXT else 1  # Qwen3-Next's q_proj also gives each head's gate
    widths = [
        gated * c.num_attention_heads * c.head_dim + kv_width,
        c.num_experts_per_tok * 2 * c.moe_intermediate_size,
        getattr(c, "index_n_heads", 0) * getattr(c, "index_head_dim", 0),
    ]
    states = 0
    if architecture == QWEN3_NEXT:
        widths.append(_delta_channels(c) + c.linear_num_value_heads * (c.linear_value_head_dim + 2))
        states = SEQUENCES * delta_state_bytes(c, dtype)
    if architecture in (QWEN3, QWEN3_NEXT) and not all(c.is_sparse(i) for i in range(c.num_hidden_layers)):
        widths.append(2 * c.intermediate_size)  # dense MLP layers
    activations = PREFILL_CHUNK * 4 * (2 * max(widths) + 4 * c.hidden_size * streams)
    logits = SEQUENCES * c.vocab_size * 4 * 2
    reserve = CPU_RESERVE if kind == "cpu" else GPU_RESERVE + (NCCL_RESERVE if layout.tp > 1 else 0)
    return Workspace(activations, logits, reserve, states)


def _delta_channels(c: Any) -> int:
    """A DeltaNet layer's convolved channels: queries, keys and values."""
    return (
        2 * c.linear_num_key_heads * c.linear_key_head_dim
        + c.linear_num_value_heads * c.linear_value_head_dim
    )


def delta_state_bytes(c: Any, dtype: torch.dtype) -> int:
    """One sequence's DeltaNet states, all layers: the float32 recurrent state [value heads, key
    dim, value dim] and the conv window [channels, kernel - 1] in the model dtype, a layer."""
    layers = sum(1 for kind in c.layer_types if kind != "full_attention")
    recurrent = c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim * 4
    conv = _delta_channels(c) * (c.linear_conv_kernel_dim - 1) * dtype.itemsize
    return layers * (recurrent + conv)


def layouts(hardware: Hardware, tp: int | None = None, ep: bool = False) -> list[Layout]:
    """The layouts to try, smallest first: ``--tp`` alone when given, else 1, 2, 4, ... GPUs."""
    if tp is not None:
        if tp > hardware.count and hardware.kind == "cuda":
            raise PlanError(f"--tp {tp} needs {tp} GPUs; the plan has {hardware.count}")
        return [Layout(tp, ep and tp > 1)]
    out, size = [Layout(1)], 2
    while hardware.kind == "cuda" and size <= min(hardware.count, MAX_TP):
        out += [Layout(size, True)] if ep else [Layout(size), Layout(size, True)]
        size *= 2
    return out


def make_plan(
    source: ModelSource,
    hardware: Hardware,
    dtype: torch.dtype,
    context: int | None = None,
    tp: int | None = None,
    ep: bool = False,
) -> Plan:
    """Every candidate layout of ``source`` on ``hardware`` at ``context`` tokens (default: 128K, or the window)."""
    planned = Planned.build(source, dtype)
    context = min(DEFAULT_CONTEXT, planned.window) if context is None else context
    if context < 1:
        raise PlanError(f"the context must be at least one token, not {context}")
    if context > planned.window:
        raise PlanError(
            f"a {context:,}-token context is longer than the model's window ({planned.window:,} tokens)"
        )
    candidates = [_candidate(planned, layout, hardware) for layout in layouts(hardware, tp, ep)]
    totals, skipped = checkpoint_totals(planned.entries, planned.meta.config)
    return Plan(source, hardware, dtype, context, planned.window, totals, skipped, candidates, planned)


def _candidate(planned: Planned, layout: Layout, hardware: Hardware) -> Candidate:
    memory = hardware.memory // layout.tp if hardware.kind == "cpu" else hardware.memory
    return planned.candidate(layout, memory, hardware.kind)


def suggest(plan: Plan) -> tuple[Hardware, Candidate] | None:
    """The smallest layout not tried that would fit ``plan``'s model and context: on GPUs of the
    same kind, or on H100s in bfloat16 when the plan was for a CPU; None when even ``MAX_TP``
    would not."""
    cuda = plan.hardware.kind == "cuda"
    base = plan.hardware if cuda else Hardware("cuda", 1, GPUS["H100"], "H100", plan.hardware.host)
    planned = plan.planned if cuda else Planned.build(plan.source, torch.bfloat16)
    tried = {c.layout.tp for c in plan.candidates} if cuda else set()
    size = 1
    while size <= MAX_TP:
        if size not in tried:
            for layout in (Layout(size), Layout(size, True)) if size > 1 else (Layout(1),):
                candidate = _candidate(planned, layout, base.with_count(size))
                if candidate.fits(plan.context):
                    return base.with_count(size), candidate
        size *= 2
    return None
