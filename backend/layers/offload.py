"""Routed experts in two homes: the most used on the device, the rest in host memory.

The placement KTransformers and llama.cpp's ``-ot exps=CPU`` users run huge MoEs with: a
layer's attention, router and shared parts, and its most used routed experts, live on the
GPU; the remaining routed experts live in host memory and are computed there by the native
CPU kernels, while the GPU computes its own experts' share of the same tokens.

``ExpertHomes`` holds one layer's split: device experts ``[E_d, ...]`` and host experts
``[E_h, ...]``, allocated where they live when the model is built (the loader then fills
each expert in its home, so the device never holds the host's experts, even briefly), and a
map from an expert's id to its home and its index there. Its
``forward`` sends each (token, expert) pair to the home of the expert: the host's pairs are
copied to host memory and computed on a worker thread (``subset_forward``: the pairs as
one-expert tokens, through the host's kernels) while the device computes its pairs, then
the host's partial output comes back and is added. ``subset_forward`` is also how a rank of
an expert-parallel split computes the experts it holds.

What a home computes is the model's: ``experts`` is the function that runs (token, expert)
pairs over a home's fused ``w13``/``w2`` (Qwen3-MoE's ``layers.moe.experts_forward`` by
default; DeepSeek-V4 passes its clamped-SwiGLU ``routed_experts``, whose experts may be
``packed_weights.PackedExperts`` and whose partial sums are float32: ``out_dtype``). ``home_index``
is the same map as a plain function, for loaders that fill each expert in its home.

``least_used(counts, n)`` picks the host experts from routing counts: a model with experts in
host memory counts its routing while serving (``RoutingCounts``), the runtime saves the
counts when it closes and reads them at the next load; without counts, the highest ids.

Limits: the result equals the one-home layer up to float summation order (the two partial
sums are added last), so greedy tokens match on the tests' prompts but logits may differ in
the last bits; one worker thread per layer call (the host part of one layer overlaps that
layer's device part, not the next layer's); host memory is not pinned, so the copies of
activations to and from a GPU are synchronous.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_left
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codeagent.backend.kernels.dispatch import Kernels
from codeagent.backend.layers.moe import experts_forward

_HOST_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codeagent-host-experts")


ExpertsFn = Callable[..., torch.Tensor]
"""(x [t, H], w13, w2, weights [t, k], ids [t, k], kernels) -> [t, H]: one home's experts run."""


def subset_forward(
    x: torch.Tensor,
    w13: Any,
    w2: Any,
    weights: torch.Tensor,
    local: torch.Tensor,
    mine: torch.Tensor,
    kernels: Kernels,
    experts: ExpertsFn = experts_forward,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The partial MoE output [T, H] (in ``out_dtype``, default x's) of the pairs ``mine`` [T, k]
    selects, whose experts are ``local`` [T, k] indices into ``w13``/``w2``: each pair computed
    as a one-expert token by ``experts``."""
    token, slot = mine.nonzero(as_tuple=True)
    out = torch.zeros(x.shape, dtype=out_dtype or x.dtype, device=x.device)
    if token.numel():
        pairs = experts(x[token], w13, w2, weights[token, slot, None], local[token, slot, None], kernels)
        out.index_add_(0, token, pairs.to(out.dtype))
    return out


def home_index(on_host: list[int], expert: int) -> tuple[bool, int]:
    """(whether ``expert`` lives in host memory, its index in its home) for the sorted host
    experts ``on_host``: the device's experts in id order, then the host's."""
    before = bisect_left(on_host, expert)
    if before < len(on_host) and on_host[before] == expert:
        return True, before
    return False, expert - before


def least_used(counts: torch.Tensor | None, experts: int, n: int) -> list[int]:
    """The ``n`` experts to keep in host memory: the least routed to (ties: the higher id)."""
    if not 0 <= n <= experts:
        raise ValueError(f"cannot keep {n} of {experts} experts in host memory")
    if counts is None:
        return list(range(experts - n, experts))
    order = sorted(range(experts), key=lambda e: (int(counts[e]), -e))
    return sorted(order[:n])


@dataclass
class ExpertHomes:
    device_w13: Any  # [E_d, 2I, H] on the device (a tensor, or what ``experts`` takes)
    device_w2: Any  # [E_d, H, I]
    host_w13: Any  # [E_h, 2I, H] in host memory
    host_w2: Any
    home: torch.Tensor  # [E] bool on the device: True where the expert lives in host memory
    local: torch.Tensor  # [E] long on the device: its index in its home
    host_kernels: Kernels
    experts: ExpertsFn = experts_forward  # what a home computes its pairs with
    out_dtype: torch.dtype | None = None  # of the partial sums (default: the activations')

    @classmethod
    def over(
        cls,
        device: tuple[Any, Any],
        host: tuple[Any, Any],
        on_host: list[int],
        host_kernels: Kernels,
        where: torch.device | str | None = None,
        experts: ExpertsFn = experts_forward,
        out_dtype: torch.dtype | None = None,
    ) -> ExpertHomes:
        """Homes over storage already allocated where it lives (the loader fills it): the
        device's experts in id order, then the host's (``on_host``, sorted). ``where``: the
        device the routing runs on (default: the device tensor's)."""
        experts_total = device[0].shape[0] + host[0].shape[0]
        if sorted(set(on_host)) != sorted(on_host) or len(on_host) != host[0].shape[0]:
            raise ValueError(f"{len(on_host)} host experts named for {host[0].shape[0]} places")
        in_host = torch.zeros(experts_total, dtype=torch.bool)
        in_host[on_host] = True
        local = torch.empty(experts_total, dtype=torch.long)
        local[~in_host] = torch.arange(experts_total - len(on_host))
        local[in_host] = torch.arange(len(on_host))
        where = device[0].device if where is None else where
        return cls(
            device[0],
            device[1],
            host[0],
            host[1],
            in_host.to(where),
            local.to(where),
            host_kernels,
            experts,
            out_dtype,
        )

    def slot(self, expert: int) -> tuple[Any, Any, int]:
        """Where expert ``expert``'s matrices live: (w13, w2, index in them)."""
        index = int(self.local[expert])
        if bool(self.home[expert]):
            return self.host_w13, self.host_w2, index
        return self.device_w13, self.device_w2, index

    @property
    def on_host(self) -> int:
        return int(self.host_w13.shape[0])

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, kernels: Kernels
    ) -> torch.Tensor:
        """The layer's routed output [T, H] for x [T, H] routed to ``ids`` with ``weights`` [T, k]."""
        to_host = self.home[ids]  # [T, k]
        local = self.local[ids]
        pending = None
        if self.on_host and bool(to_host.any()):
            args = (x.to("cpu"), weights.to("cpu"), local.to("cpu"), to_host.to("cpu"))
            pending = _HOST_WORKER.submit(self._host_part, *args)
        out = subset_forward(
            x,
            self.device_w13,
            self.device_w2,
            weights,
            local,
            ~to_host,
            kernels,
            self.experts,
            self.out_dtype,
        )
        if pending is not None:
            out += pending.result().to(out.device, non_blocking=True)
        return out

    def _host_part(
        self, x: torch.Tensor, weights: torch.Tensor, local: torch.Tensor, to_host: torch.Tensor
    ) -> torch.Tensor:
        return subset_forward(
            x,
            self.host_w13,
            self.host_w2,
            weights,
            local,
            to_host,
            self.host_kernels,
            self.experts,
            self.out_dtype,
        )


class RoutingCounts:
    """How often each expert of each layer was routed to, gathered while serving (on the device
    of the routing, so counting never waits for it), kept across runs in a small JSON file so
    the next load places the least used experts in host memory."""

    def __init__(
        self, layers: int, experts: int, device: Any = "cpu", start: torch.Tensor | None = None
    ) -> None:
        self.counts = torch.zeros(layers, experts, dtype=torch.long, device=device)
        if start is not None and tuple(start.shape) == (layers, experts):
            self.counts += start.to(device)

    def add(self, layer: int, ids: torch.Tensor) -> None:
        self.counts[layer] += torch.bincount(ids.reshape(-1), minlength=self.counts.shape[1])

    def save(self, path: Path) -> None:
        """Write the counts (atomically: a file beside, renamed into place)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.counts.cpu().tolist()))
        os.replace(tmp, path)

    @staticmethod
    def read(path: Path, layers: int, experts: int) -> torch.Tensor | None:
        """Counts saved by an earlier run, or None (none yet, unreadable, or another shape)."""
        try:
            counts = torch.tensor(json.loads(path.read_text()), dtype=torch.long)
        except (OSError, ValueError, TypeError):
            return None
        return counts if tuple(counts.shape) == (layers, experts) and bool((counts >= 0).all()) else None
