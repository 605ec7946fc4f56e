"""Sampling on the device (Triton): greedy, temperature, top-k, top-p, min-p, one launch per step.

One program per row of logits [N, V] (float32), each row with its own parameters. No sort:
thresholds are found by bisection over the logits' order-preserving 32-bit keys, each
step one pass over the row (V up to a few hundred thousand, in BLOCK chunks):

- greedy (temperature 0): argmax, ties to the lowest id, like ``torch.argmax``;
- x = logits / temperature; top-k keeps x >= the k-th largest value (ties kept, as the
  reference's ``masked_fill(x < kth)``): 32 bisection passes counting keys;
- probabilities p over the top-k survivors (softmax); min-p drops p < min_p * max p;
  top-p keeps an entry iff the mass of strictly larger probabilities is <= top_p (the
  reference's "smallest prefix reaching top_p" of the sorted row): 32 bisection passes
  summing p above a key;
- the token: argmax over the kept entries of x + Gumbel noise, which draws from
  softmax(kept x) exactly (Gumbel-max), with Philox uniforms from a per-row seed.

Seeds come from each sequence's ``torch.Generator`` (one 31-bit draw per step), so
seeded requests are reproducible, but the draws differ from ``torch.multinomial``'s:
same distribution, different tokens. ``keep_mask`` exposes the filtering for tests.
Limits: ties in the top-p cut keep every tied entry (the reference keeps those its sort
puts first); a row with top-k and top-p makes ~70 passes over V.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codeagent.backend.kernels.common import INTERPRETING


@triton.jit
def _key(x):
    """Signed int64 keys in the order of the float32 values x."""
    bits = x.to(tl.int32, bitcast=True)
    return tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(tl.int64)


@triton.jit
def _sample_kernel(
    logits_ptr, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr, seed_ptr, out_ptr, mask_ptr,
    V, stride, STORE_MASK: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    base = logits_ptr + row * stride
    offs = tl.arange(0, BLOCK)
    temperature = tl.load(temp_ptr + row)
    if temperature == 0.0:
        best_v = float("-inf")
        best_i = 0
        for start in range(0, V, BLOCK):
            x = tl.load(base + start + offs, mask=start + offs < V, other=float("-inf"))
            chunk_max = tl.max(x, axis=0)
            chunk_arg = tl.argmax(x, axis=0) + start
            best_i = tl.where(chunk_max > best_v, chunk_arg, best_i)
            best_v = tl.maximum(best_v, chunk_max)
        tl.store(out_ptr + row, best_i)
    else:
        k = tl.load(top_k_ptr + row)
        top_p = tl.load(top_p_ptr + row)
        min_p = tl.load(min_p_ptr + row)
        seed = tl.load(seed_ptr + row)
        lo_key = tl.full([], 2**40, tl.int64)
        hi_key = tl.full([], -(2**40), tl.int64)
        top = float("-inf")
        for start in range(0, V, BLOCK):
            ok = start + offs < V
            x = tl.div_rn(tl.load(base + start + offs, mask=ok, other=0.0), temperature)
            key = _key(x)
            lo_key = tl.minimum(lo_key, tl.min(tl.where(ok, key, 2**40), axis=0))
            hi_key = tl.maximum(hi_key, tl.max(tl.where(ok, key, -(2**40)), axis=0))
            top = tl.maximum(top, tl.max(tl.where(ok, x, float("-inf")), axis=0))
        kth = lo_key  # top-k: the largest key with at least k entries at or above it
        if k > 0:
            lo, hi = lo_key, hi_key + 1
            for _ in range(33):
                mid = lo + (hi - lo) // 2
                count = 0
                for start in range(0, V, BLOCK):
                    ok = start + offs < V
                    key = _key(tl.div_rn(tl.load(base + start + offs, mask=ok, other=0.0), temperature))
                    count += tl.sum((ok & (key >= mid)).to(tl.int32), axis=0)
                big = count >= k
                lo = tl.where(big, mid, lo)
                hi = tl.where(big, hi, mid)
            kth = lo
        total = 0.0
        for start in range(0, V, BLOCK):
            ok = start + offs < V
            x = tl.div_rn(tl.load(base + start + offs, mask=ok, other=0.0), temperature)
            total += tl.sum(tl.where(ok & (_key(x) >= kth), tl.exp(x - top), 0.0), axis=0)
        cut = kth  # top-p: the smallest key whose strictly larger mass is <= top_p
        if top_p < 1.0:
            lo, hi = kth - 1, hi_key
            for _ in range(33):
                mid = lo + (hi - lo) // 2
                mass = 0.0
                for start in range(0, V, BLOCK):
                    ok = start + offs < V
                    x = tl.div_rn(tl.load(base + start + offs, mask=ok, other=0.0), temperature)
                    key = _key(x)
                    mass += tl.sum(
                        tl.where(ok & (key >= kth) & (key > mid), tl.exp(x - top) / total, 0.0), axis=0
                    )
                small = mass <= top_p
                hi = tl.where(small, mid, hi)
                lo = tl.where(small, lo, mid)
            cut = tl.maximum(hi, kth)
        best_v = float("-inf")
        best_i = 0
        for start in range(0, V, BLOCK):
            ok = start + offs < V
            x = tl.div_rn(tl.load(base + start + offs, mask=ok, other=0.0), temperature)
            keep = ok & (_key(x) >= cut) & (tl.exp(x - top) / total >= min_p * (1.0 / total))
            if STORE_MASK:
                tl.store(mask_ptr + row * V + start + offs, keep.to(tl.int8), mask=ok)
            u = tl.rand(seed, start + offs)
            noisy = tl.where(keep, x - tl.log(-tl.log(u)), float("-inf"))
            chunk_max = tl.max(noisy, axis=0)
            chunk_arg = tl.argmax(noisy, axis=0) + start
            best_i = tl.where(chunk_max > best_v, chunk_arg, best_i)
            best_v = tl.maximum(best_v, chunk_max)
        tl.store(out_ptr + row, best_i)


def _launch(logits: torch.Tensor, params: list, seeds: list[int], store_mask: bool):
    n, vocab = logits.shape
    logits = logits.float().contiguous()
    device = logits.device
    temp = torch.tensor([p.temperature for p in params], dtype=torch.float32)
    top_k = torch.tensor([p.top_k if 0 < p.top_k < vocab else 0 for p in params], dtype=torch.int32)
    top_p = torch.tensor([p.top_p for p in params], dtype=torch.float32)
    min_p = torch.tensor([p.min_p for p in params], dtype=torch.float32)
    out = torch.empty(n, dtype=torch.int32, device=device)
    mask = torch.zeros(n, vocab, dtype=torch.int8, device=device) if store_mask else out
    block = min(triton.next_power_of_2(vocab), 1024 if INTERPRETING else 4096)
    if n:
        _sample_kernel[(n,)](
            logits, temp.to(device), top_k.to(device), top_p.to(device), min_p.to(device),
            torch.tensor(seeds, dtype=torch.int64).to(device), out, mask, vocab, logits.stride(0),
            STORE_MASK=store_mask, BLOCK=block,
        )  # fmt: skip
    return out, mask


def _seed(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def sample(logits: torch.Tensor, params: list, generators: list[torch.Generator | None]) -> list[int]:
    """logits [N, V] -> one token id per row (``layers.sampler.sample``'s contract)."""
    seeds = [0 if p.temperature == 0 else _seed(g) for p, g in zip(params, generators, strict=True)]
    return _launch(logits, params, seeds, store_mask=False)[0].tolist()


def keep_mask(logits: torch.Tensor, params: list) -> torch.Tensor:
    """[N, V] bool: the entries each row's filters keep (temperature > 0 rows)."""
    return _launch(logits, params, [0] * len(params), store_mask=True)[1].bool()
