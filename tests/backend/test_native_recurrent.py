"""The native kernels for linear attention (``kernels/native_recurrent.c``) against the torch
rules: the gated delta decode step (states in place, fewer query/key heads than value heads),
the causal convolution's step and prompt forms; batch invariance (a sequence's bits alone and in
a batch), the prompt form giving the step's bits, the shapes the ``fits_*`` checks refuse, and
``dispatch`` handing the kernels to a model.

Tolerance: float32 results within 1e-5 of the largest magnitude (the kernels and the references
differ in float32 summation order); bfloat16 outputs within bfloat16 rounding (2^-7 of the
largest); states, kept in float32, within 1e-5 whatever the activations.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from codeagent.backend.kernels import dispatch, native, native_recurrent
from codeagent.backend.layers import gated_delta

PROBLEM = native_recurrent.problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"recurrent kernels unavailable: {PROBLEM}")
ACTIVATIONS = [torch.float32, torch.bfloat16]


def delta_rule_step(q, k, v, g, beta, states):
    """The layer's step, q and k repeated to the value heads as a model repeats them."""
    group = v.shape[1] // q.shape[1]
    q, k = (x.repeat_interleave(group, dim=1) for x in (q, k))
    return gated_delta.gated_delta_step(q, k, v, g, beta, states)


def delta_inputs(batch, heads, k_heads, dk, dv, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(batch, k_heads, dk, generator=gen), dim=-1) * dk**-0.5
    k = F.normalize(torch.randn(batch, k_heads, dk, generator=gen), dim=-1)
    v = torch.randn(batch, heads, dv, generator=gen)
    g = -2 * torch.rand(batch, heads, generator=gen)
    beta = torch.sigmoid(torch.randn(batch, heads, generator=gen))
    states = 0.3 * torch.randn(batch, heads, dk, dv, generator=gen)
    return q.to(dtype), k.to(dtype), v.to(dtype), g, beta, states


def close(got, want, dtype=torch.float32):
    scale = want.float().abs().max().item() or 1.0
    tol = 1e-5 if dtype == torch.float32 else 2**-7
    torch.testing.assert_close(got.float(), want.float(), atol=tol * scale, rtol=0)


@pytest.mark.parametrize("dtype", ACTIVATIONS)
@pytest.mark.parametrize("heads,k_heads,dk,dv", [(2, 2, 16, 16), (4, 2, 24, 40), (6, 3, 128, 64)])
def test_gated_delta_step_follows_the_rule_for_many_steps(dtype, heads, k_heads, dk, dv):
    *_, states = delta_inputs(3, heads, k_heads, dk, dv, dtype)
    want_states = states.clone()
    for step in range(6):
        q, k, v, g, beta, _ = delta_inputs(3, heads, k_heads, dk, dv, dtype, seed=10 + step)
        assert native_recurrent.fits_gated_delta_step(q, k, v, g, beta, states)
        got = native_recurrent.gated_delta_step(q, k, v, g, beta, states)
        want = delta_rule_step(q, k, v, g, beta, want_states)
        assert got.dtype == dtype
        close(got, want, dtype)
        close(states, want_states)


def test_gated_delta_step_gives_a_sequence_the_same_bits_alone_as_in_a_batch():
    q, k, v, g, beta, states = delta_inputs(5, 4, 2, 32, 32, torch.bfloat16, seed=1)
    batched = states.clone()
    out = native_recurrent.gated_delta_step(q, k, v, g, beta, batched)
    for b in range(5):
        alone = states[b : b + 1].clone()
        got = native_recurrent.gated_delta_step(
            q[b : b + 1], k[b : b + 1], v[b : b + 1], g[b : b + 1], beta[b : b + 1], alone
        )
        assert torch.equal(got[0], out[b]) and torch.equal(alone[0], batched[b])


@pytest.mark.parametrize("dtype", ACTIVATIONS)
def test_conv_step_follows_the_rule_and_shifts_the_states(dtype):
    gen = torch.Generator().manual_seed(2)
    weight = torch.randn(48, 4, generator=gen).to(dtype)
    states = torch.randn(3, 48, 3, generator=gen).to(dtype)
    want_states = states.clone()
    for _ in range(5):
        x = torch.randn(3, 48, generator=gen).to(dtype)
        assert native_recurrent.fits_conv(x, weight, states)
        close(
            native_recurrent.causal_conv1d_step(x, weight, states),
            gated_delta.causal_conv1d_step(x, weight, want_states),
            dtype,
        )
        assert torch.equal(states, want_states)  # inputs moved, not recomputed


DTYPE_MIXES = [(torch.float32,) * 3, (torch.bfloat16,) * 3, (torch.bfloat16, torch.float32, torch.float32)]


@pytest.mark.parametrize("dtype,weight_dtype,state_dtype", DTYPE_MIXES)
def test_conv_prompt_gives_the_steps_bits_and_leaves_the_last_inputs(dtype, weight_dtype, state_dtype):
    gen = torch.Generator().manual_seed(3)
    wide = torch.randn(11, 64, generator=gen).to(dtype)
    x = wide[:, 16:56]  # a column slice of a wider projection: rows strided
    weight = torch.randn(40, 1, 4, generator=gen).to(weight_dtype)  # as nn.Conv1d keeps it
    state = torch.randn(40, 3, generator=gen).to(state_dtype)
    stepped = state[None].clone()
    assert native_recurrent.fits_conv(x, weight, state)
    out, after = native_recurrent.causal_conv1d(x, weight, state.clone())
    steps = [native_recurrent.causal_conv1d_step(x[t : t + 1], weight, stepped) for t in range(11)]
    assert torch.equal(out, torch.cat(steps)) and torch.equal(after, stepped[0])
    want, want_state = gated_delta.causal_conv1d(x, weight.view(40, 4), state)
    assert out.dtype == dtype and torch.equal(after, want_state)
    close(out, want, dtype)


def test_the_silu_of_the_convolution_is_float32_exact_over_the_whole_range():
    """The kernel's own exponential (clamped to [-87, 88]) against float64's SiLU: within 3e-7
    relative (two float32 roundings), zero where the true value underflows."""
    x = torch.cat([torch.linspace(-120, 120, 20001), torch.tensor([0.0, -0.0, 1e-30, -1e-30, 87.5, -87.5])])
    identity = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(x.numel(), 4).contiguous()
    out, _ = native_recurrent.causal_conv1d(x[None], identity, torch.zeros(x.numel(), 3))
    torch.testing.assert_close(out[0].double(), F.silu(x.double()), rtol=3e-7, atol=1e-30)


def test_conv_step_gives_a_sequence_the_same_bits_alone_as_in_a_batch():
    gen = torch.Generator().manual_seed(4)
    x, weight = torch.randn(6, 256, generator=gen), torch.randn(256, 4, generator=gen)
    states = torch.randn(6, 256, 3, generator=gen)
    batched = states.clone()
    out = native_recurrent.causal_conv1d_step(x, weight, batched)
    for b in range(6):
        alone = states[b : b + 1].clone()
        assert torch.equal(native_recurrent.causal_conv1d_step(x[b : b + 1], weight, alone)[0], out[b])
        assert torch.equal(alone[0], batched[b])


def test_shapes_the_kernels_do_not_take_are_refused():
    q, k, v, g, beta, states = delta_inputs(2, 4, 2, 16, 16, torch.float32)
    assert not native_recurrent.fits_gated_delta_step(q.half(), k.half(), v.half(), g, beta, states)
    assert not native_recurrent.fits_gated_delta_step(q, k, v, g, beta, states.double())
    assert not native_recurrent.fits_gated_delta_step(q, k, v, g, beta, states.transpose(2, 3))
    three = delta_inputs(2, 3, 2, 16, 16, torch.float32)  # 3 value heads over 2 query/key heads
    assert not native_recurrent.fits_gated_delta_step(*three)
    wide = delta_inputs(1, 1, 1, 16, native_recurrent.MAX_DIM + 16, torch.float32)
    assert not native_recurrent.fits_gated_delta_step(*wide)
    x, weight = torch.randn(2, 8), torch.randn(8, 4)
    assert not native_recurrent.fits_conv(x, weight, torch.randn(2, 8, 2))  # a window of the wrong size
    assert not native_recurrent.fits_conv(
        x, torch.randn(8, 20), torch.randn(2, 8, 19)
    )  # wider than MAX_WIDTH
    assert not native_recurrent.fits_conv(x.t().contiguous().t(), weight, torch.randn(2, 8, 3))


def test_native_mode_hands_the_kernels_to_a_model():
    kernels = dispatch.choose("cpu", "native")
    assert kernels.recurrent is native_recurrent and kernels.native is native
    assert dispatch.choose("cpu", "torch").recurrent is None
