"""Sort token-expert pairs by expert and pad each expert's run to the GEMM tile (Triton).

Pairs are numbered p = t * k + j (token t's j-th choice). The output is a list of pair
numbers grouped by expert, each group padded with the sentinel P = T * k up to a multiple
of ``block_m``, and, per tile of ``block_m`` rows, the expert it belongs to (-1 past the
end). Sizes are worst-case bounds known on the host, cdiv(P, block_m) + min(E, P) tiles,
so nothing waits for the device and a grid over that bound can be launched at once (tiles
past the end return immediately); an expert with no pairs takes no tile.

One program does it all in three passes over the pairs, CHUNK at a time: count per
expert (a one-hot [E, CHUNK] sum), exclusive cumsum of the padded counts, then scatter
each pair to its expert's start plus its rank (one-hot cumsum: stable, so pairs keep
token order within an expert, as the reference's stable argsort). Limits: serial in one
program, so it costs O(P * E / CHUNK) steps: ``fused_moe`` uses it up to
``ONE_PROGRAM_PAIRS`` pairs (decode, small prefill chunks) and the torch version beyond
(``align_ref``: a dozen launches, still no host sync), where the GEMMs dwarf either.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

ONE_PROGRAM_PAIRS = 2048


@triton.jit
def _align_kernel(
    ids_ptr,
    sorted_ptr,
    block_expert_ptr,
    P,
    E,
    num_slots,
    num_tiles,
    BLOCK_M: tl.constexpr,
    BLOCK_E: tl.constexpr,
    CHUNK: tl.constexpr,
):
    experts = tl.arange(0, BLOCK_E)
    counts = tl.zeros([BLOCK_E], dtype=tl.int32)
    for start in range(0, P, CHUNK):
        offs = start + tl.arange(0, CHUNK)
        ids = tl.load(ids_ptr + offs, mask=offs < P, other=-1)
        counts += tl.sum((ids[None, :] == experts[:, None]).to(tl.int32), axis=1)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    ends = tl.cumsum(padded, axis=0)
    starts = ends - padded
    seen = tl.zeros([BLOCK_E], dtype=tl.int32)
    for start in range(0, P, CHUNK):
        offs = start + tl.arange(0, CHUNK)
        ids = tl.load(ids_ptr + offs, mask=offs < P, other=-1)
        onehot = (ids[None, :] == experts[:, None]).to(tl.int32)  # [E, CHUNK]
        rank = tl.cumsum(onehot, axis=1) - 1
        dest = tl.sum(onehot * ((starts + seen)[:, None] + rank), axis=0)
        tl.store(sorted_ptr + dest, offs, mask=offs < P)
        seen += tl.sum(onehot, axis=1)
    # padding slots get the sentinel (disjoint from the pairs' slots, so no ordering needed)
    for start in range(0, num_slots, CHUNK):
        slot = start + tl.arange(0, CHUNK)
        inside = (ends[:, None] <= slot[None, :]).to(tl.int32)
        owner = tl.sum(inside, axis=0)  # experts ending at or before the slot
        owner_start = tl.sum(tl.where(experts[:, None] == owner[None, :], starts[:, None], 0), axis=0)
        owner_count = tl.sum(tl.where(experts[:, None] == owner[None, :], counts[:, None], 0), axis=0)
        pad = (owner >= E) | (slot - owner_start >= owner_count)
        tl.store(sorted_ptr + slot, tl.full([CHUNK], 0, tl.int32) + P, mask=pad & (slot < num_slots))
    for start in range(0, num_tiles, CHUNK):
        tile = start + tl.arange(0, CHUNK)
        owner = tl.sum((ends[:, None] <= (tile * BLOCK_M)[None, :]).to(tl.int32), axis=0)
        tl.store(block_expert_ptr + tile, tl.where(owner >= E, -1, owner), mask=tile < num_tiles)


def max_tiles(pairs: int, experts: int, block_m: int) -> int:
    return triton.cdiv(pairs, block_m) + min(experts, pairs)


def align(ids: torch.Tensor, num_experts: int, block_m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [T, k] -> sorted pair numbers [tiles * block_m] int32, expert per tile [tiles] int32."""
    flat = ids.reshape(-1).to(torch.int32)
    p = flat.numel()
    tiles = max_tiles(p, num_experts, block_m)
    sorted_pairs = torch.empty(tiles * block_m, dtype=torch.int32, device=ids.device)
    block_expert = torch.empty(tiles, dtype=torch.int32, device=ids.device)
    block_e = triton.next_power_of_2(num_experts)
    _align_kernel[(1,)](
        flat,
        sorted_pairs,
        block_expert,
        p,
        num_experts,
        tiles * block_m,
        tiles,
        BLOCK_M=block_m,
        BLOCK_E=block_e,
        CHUNK=max(16, min(128, 8192 // block_e)),
    )
    return sorted_pairs, block_expert


def align_ref(ids: torch.Tensor, num_experts: int, block_m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same layout in torch (device ops only, no host sync)."""
    flat = ids.reshape(-1).long()
    p, device = flat.numel(), ids.device
    tiles = max_tiles(p, num_experts, block_m)
    counts = torch.bincount(flat, minlength=num_experts)
    padded = (counts + block_m - 1) // block_m * block_m
    ends = torch.cumsum(padded, 0)
    starts = ends - padded
    order = torch.argsort(flat, stable=True)
    first = torch.cumsum(counts, 0) - counts
    expert = flat[order]
    dest = starts[expert] + torch.arange(p, device=device) - first[expert]
    sorted_pairs = torch.full((tiles * block_m,), p, dtype=torch.int32, device=device)
    sorted_pairs[dest] = order.to(torch.int32)
    owner = torch.searchsorted(ends, torch.arange(tiles, device=device) * block_m, right=True)
    block_expert = torch.where(owner >= num_experts, -1, owner).to(torch.int32)
    return sorted_pairs, block_expert
