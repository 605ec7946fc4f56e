"""The gated delta rule's Triton kernels (chunked prefill over flattened sequences, the decode step)
against the token-by-token recurrence, at small shapes: sequences that end inside, at and just past
a chunk, several sequences at once, fewer query/key heads than value heads, Dv split over programs.

The reference is the layer's ``recurrent_gated_delta_rule`` (float32, token by token); the kernels
differ from it by float32 rounding in another order (a chunk's triangular solve and products):
float32 outputs and states within 2e-5 of the largest magnitude (measured here: up to
1.4e-6 for outputs, 2.5e-7 for states);
bfloat16 outputs within bfloat16 rounding (2^-7 of the largest).
"""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

from codeagent.backend.kernels import gated_delta, ops
from codeagent.backend.layers.gated_delta import recurrent_gated_delta_rule


def recurrence(q, k, v, g, beta, state):
    """The layer's token-by-token rule (the specification) for one sequence, q and k repeated to
    the value heads as a model repeats them."""
    group = v.shape[1] // q.shape[1]
    q, k = (x.repeat_interleave(group, dim=1) for x in (q, k))
    return recurrent_gated_delta_rule(q, k, v, g, beta, state)


def inputs(tokens, heads, k_heads, dk, dv, device, seed=0, dtype=torch.float32):
    """q, k unit rows (q scaled by dk^-0.5, as the model gives them), v, g (log decay in
    [-2, 0]: a chunk's cumulative decay reaches past float32's range), beta in (0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(tokens, k_heads, dk, generator=gen), dim=-1) * dk**-0.5
    k = F.normalize(torch.randn(tokens, k_heads, dk, generator=gen), dim=-1)
    v = torch.randn(tokens, heads, dv, generator=gen)
    g = -2 * torch.rand(tokens, heads, generator=gen)
    beta = torch.sigmoid(torch.randn(tokens, heads, generator=gen))
    return [x.to(device=device, dtype=dtype) for x in (q, k, v)] + [x.to(device) for x in (g, beta)]


def states(n, heads, dk, dv, device, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(n, heads, dk, dv, generator=gen)).to(device)


def close(got, want, tol=2e-5):
    scale = (want.abs().max().item() if want.numel() else 0.0) or 1.0
    torch.testing.assert_close(got.double().cpu(), want.double().cpu(), atol=tol * scale, rtol=0)


@pytest.mark.parametrize(
    "lengths,heads,k_heads,dk,dv,chunk,block_v",
    [
        ([150], 2, 2, 16, 16, 64, None),  # two whole chunks and a partial one
        ([64, 1, 65, 20], 2, 1, 32, 32, 16, 16),  # at, below and past chunks; GQA; two Dv blocks
        ([33, 0, 48], 4, 2, 32, 16, 16, None),  # an empty sequence keeps its state
    ],
)
def test_prefill_matches_the_recurrence(device, lengths, heads, k_heads, dk, dv, chunk, block_v):
    q, k, v, g, beta = inputs(sum(lengths), heads, k_heads, dk, dv, device)
    initial = states(len(lengths), heads, dk, dv, device)
    kept = initial.clone()
    cu = [0, *torch.tensor(lengths).cumsum(0).tolist()]
    out, final = gated_delta.prefill(q, k, v, g, beta, initial, cu, chunk=chunk, block_v=block_v)
    assert torch.equal(initial, kept) and out.dtype == v.dtype and final.dtype == torch.float32
    for n, (a, b) in enumerate(pairwise(cu)):
        want_out, want_state = recurrence(q[a:b], k[a:b], v[a:b], g[a:b], beta[a:b], initial[n])
        close(out[a:b], want_out)
        close(final[n], want_state)


def test_a_sequence_gives_the_same_bits_alone_as_in_a_batch(device):
    lengths = [70, 19, 128]
    q, k, v, g, beta = inputs(sum(lengths), 2, 2, 16, 32, device, seed=2)
    initial = states(3, 2, 16, 32, device)
    out, final = gated_delta.prefill(q, k, v, g, beta, initial, [0, 70, 89, 217], chunk=16)
    alone, alone_final = gated_delta.prefill(
        q[70:89], k[70:89], v[70:89], g[70:89], beta[70:89], initial[1:2], torch.tensor([0, 19]), chunk=16
    )
    assert torch.equal(alone, out[70:89]) and torch.equal(alone_final[0], final[1])


def test_bfloat16_activations_within_rounding(device):
    q, k, v, g, beta = inputs(80, 2, 2, 16, 16, device, seed=3, dtype=torch.bfloat16)
    initial = states(1, 2, 16, 16, device)
    out, final = ops.chunk_gated_delta_rule(q, k, v, g, beta, initial[0], chunk=32)
    want_out, want_state = recurrence(q, k, v, g, beta, initial[0])
    assert out.dtype == torch.bfloat16
    close(out, want_out, tol=2**-7)
    close(final, want_state)


@pytest.mark.parametrize("heads,k_heads,dk,dv,block_v", [(2, 2, 16, 16, None), (4, 2, 32, 48, 16)])
def test_decode_step_updates_states_in_place(device, heads, k_heads, dk, dv, block_v):
    batch = 3
    q, k, v, g, beta = inputs(batch, heads, k_heads, dk, dv, device, seed=4)
    pool = states(batch + 2, heads, dk, dv, device)
    view = pool[1 : batch + 1]  # the sequences' slots in a larger pool, updated through the view
    before = view.clone()
    out = gated_delta.decode_step(q, k, v, g, beta, view, block_v=block_v)
    for b in range(batch):
        want_out, want_state = recurrence(
            q[b : b + 1], k[b : b + 1], v[b : b + 1], g[b : b + 1], beta[b : b + 1], before[b]
        )
        close(out[b], want_out[0])
        close(pool[1 + b], want_state)
    untouched = states(batch + 2, heads, dk, dv, device)
    assert torch.equal(pool[0], untouched[0]) and torch.equal(pool[-1], untouched[-1])


def test_prefill_then_decode_continues_the_sequence(device):
    q, k, v, g, beta = inputs(40, 2, 1, 16, 16, device, seed=5)
    initial = states(1, 2, 16, 16, device)
    out, state = ops.chunk_gated_delta_rule(q[:37], k[:37], v[:37], g[:37], beta[:37], initial[0])
    live = state.unsqueeze(0).contiguous()
    steps = [
        ops.gated_delta_step(q[t : t + 1], k[t : t + 1], v[t : t + 1], g[t : t + 1], beta[t : t + 1], live)
        for t in range(37, 40)
    ]
    want_out, want_state = recurrence(q, k, v, g, beta, initial[0])
    close(torch.cat([out, *steps]), want_out)
    close(live[0], want_state)


def test_shapes_the_kernels_do_not_take_are_refused(device):
    q, k, v, g, beta = inputs(4, 3, 2, 16, 16, device)
    with pytest.raises(ValueError, match="gated delta"):  # 3 value heads over 2 query/key heads
        gated_delta.decode_step(q, k, v, g, beta, states(4, 3, 16, 16, device))
    q, k, v, g, beta = inputs(4, 2, 2, 16, 16, device)
    with pytest.raises(ValueError, match="float32"):
        gated_delta.decode_step(q, k, v, g, beta, states(4, 2, 16, 16, device).double())
    with pytest.raises(ValueError, match="cu_seqlens"):
        gated_delta.prefill(q, k, v, g, beta, states(1, 2, 16, 16, device), [0, 3])
    with pytest.raises(ValueError, match="power of two"):
        gated_delta.prefill(q, k, v, g, beta, states(1, 2, 16, 16, device), [0, 4], chunk=24)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_qwen3_next_shapes_on_cuda():
    """Qwen3-Next-80B's linear attention (16 query/key heads, 32 value heads of 128), bf16, the
    tiles the interpreter never compiles: two prompts over chunk boundaries, then a decode step."""
    lengths = [300, 77]
    q, k, v, g, beta = inputs(sum(lengths), 32, 16, 128, 128, "cuda", seed=6, dtype=torch.bfloat16)
    initial = states(2, 32, 128, 128, "cuda")
    out, final = gated_delta.prefill(q, k, v, g, beta, initial, [0, 300, 377])
    for n, (a, b) in enumerate([(0, 300), (300, 377)]):
        want_out, want_state = recurrence(q[a:b], k[a:b], v[a:b], g[a:b], beta[a:b], initial[n])
        close(out[a:b], want_out, tol=2**-7)
        close(final[n], want_state, tol=1e-4)
    step = [x[[299, 376]] for x in (q, k, v, g, beta)]
    want = [recurrence(*(x[i : i + 1] for x in step), final[i])[0][0] for i in range(2)]
    close(gated_delta.decode_step(*step, final), torch.stack(want), tol=2**-7)
