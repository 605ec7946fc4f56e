"""DeepSeek-V4's native decode kernels (``kernels/native_v4.c``) against their references: the
mHC kernels against ``models/deepseek_v4/mhc.py``'s (the mixing weights, sigmoids and Sinkhorn,
the collapse and the expansion, in float32 and bfloat16 streams) and the attention with a sink
against ``attention.attend``; batch invariance (a token's bits alone and in a batch); the shapes
the ``fits`` checks refuse; ``dispatch`` handing the kernels to a model and the layer functions
taking them.

Tolerance: float32 within 1e-5 (the kernels take their own exponential and sum the einsum's
terms in their own order), bfloat16 outputs within one bfloat16 rounding (2^-7, relative).
"""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.kernels import dispatch, native_v4
from codeagent.backend.models.deepseek_v4 import mhc

PROBLEM = native_v4.problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"mHC kernels unavailable: {PROBLEM}")
N = 4


def inputs(tokens: int, d: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    streams = torch.randn(tokens, N, d, generator=gen).to(dtype)
    logits = 3 * torch.randn(tokens, (2 + N) * N, generator=gen)
    scale = torch.rand(3, generator=gen) + 0.5
    base = torch.randn((2 + N) * N, generator=gen)
    return streams, logits, scale, base


def reference_weights(logits, scale, base, iters, eps):
    pre, post, comb = logits.split([N, N, N * N], dim=-1)
    pre_b, post_b, comb_b = base.split([N, N, N * N])
    return (
        torch.sigmoid(pre * scale[0] + pre_b) + eps,
        2 * torch.sigmoid(post * scale[1] + post_b),
        mhc.sinkhorn(comb.unflatten(-1, (N, N)) * scale[2] + comb_b.view(N, N), iters, eps),
    )


@pytest.mark.parametrize("iters", [1, 20])
def test_weights_match_the_reference_and_comb_is_doubly_stochastic(iters):
    _, logits, scale, base = inputs(5, 64, torch.float32)
    got = native_v4.hc_weights(logits, scale, base, N, iters, 1e-6)
    want = reference_weights(logits, scale, base, iters, 1e-6)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    if iters == 20:
        comb = got[2]
        torch.testing.assert_close(comb.sum(dim=-2), torch.ones(5, N), atol=1e-4, rtol=0)
        torch.testing.assert_close(
            comb.sum(dim=-1), torch.ones(5, N), atol=1e-2, rtol=0
        )  # rows converge slower


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tokens", [1, 3, 40])  # 40 x 4 x 512 values: split over the threads
def test_collapse_and_expand_match_the_references_and_ignore_the_batch(dtype, tokens):
    streams, logits, scale, base = inputs(tokens, 512, dtype, seed=tokens)
    pre, post, comb = native_v4.hc_weights(logits, scale, base, N, 20, 1e-6)
    y = torch.randn(tokens, 512, generator=torch.Generator().manual_seed(9)).to(dtype)
    tol = 1e-5 if dtype == torch.float32 else 2**-7
    got_u = native_v4.collapse(streams, pre)
    torch.testing.assert_close(got_u.float(), mhc.collapse(streams, pre).float(), atol=tol, rtol=tol)
    got_x = native_v4.expand(y, streams, post, comb)
    assert got_x.dtype == dtype and got_x.shape == streams.shape
    torch.testing.assert_close(got_x.float(), mhc.expand(y, streams, post, comb).float(), atol=tol, rtol=tol)
    got_f = native_v4.expand(y.float(), streams, post, comb)  # a float32 output into the streams
    torch.testing.assert_close(
        got_f.float(), mhc.expand(y.float(), streams, post, comb).float(), atol=tol, rtol=tol
    )
    for row in range(tokens):  # each token alone: the very same bits
        assert torch.equal(native_v4.collapse(streams[row : row + 1], pre[row : row + 1])[0], got_u[row])
        alone = native_v4.expand(
            y[row : row + 1], streams[row : row + 1], post[row : row + 1], comb[row : row + 1]
        )
        assert torch.equal(alone[0], got_x[row])


def test_fits_refuses_what_the_kernels_do_not_take():
    streams = torch.randn(2, N, 64)
    assert native_v4.fits(streams)
    assert not native_v4.fits(streams.half())
    assert not native_v4.fits(streams.transpose(1, 2))  # not contiguous
    assert not native_v4.fits(torch.randn(2, 17, 64))  # more than MAX_STREAMS
    assert not native_v4.fits(torch.randn(N, 64))
    with pytest.raises(RuntimeError, match="streams"):
        native_v4.hc_weights(torch.randn(1, 19 * 17), torch.ones(3), torch.zeros(19 * 17), 17, 2, 1e-6)


def test_dispatch_hands_them_to_a_model_and_the_layer_functions_take_them():
    kernels = dispatch.choose("cpu", "native")
    assert kernels.v4 is native_v4
    streams, _, scale, base = inputs(2, 256, torch.bfloat16, seed=5)
    fn = torch.randn((2 + N) * N, N * 256, generator=torch.Generator().manual_seed(6)) * 0.02
    calls = dict(native_v4.native.calls)
    got = mhc.hc_weights(streams, fn, base, scale, 20, 1e-6, 1e-6, kernels)
    want = mhc.hc_weights(streams, fn, base, scale, 20, 1e-6, 1e-6)  # the references throughout
    assert native_v4.native.calls["hc_weights"] == calls.get("hc_weights", 0) + 1
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)
    u = mhc.collapse(streams, got[0], kernels)
    assert native_v4.native.calls["hc_collapse"] == calls.get("hc_collapse", 0) + 1
    torch.testing.assert_close(u.float(), mhc.collapse(streams, got[0]).float(), atol=2**-7, rtol=2**-7)


@pytest.mark.skipif(
    PROBLEM is None and not native_v4.has_attention(), reason="sink attention needs AVX512-BF16"
)
@pytest.mark.parametrize("tokens", [1, 3])
@pytest.mark.parametrize("length", [37, 1])  # an odd count of keys; one key
def test_sink_attention_matches_attend_and_ignores_the_batch(tokens, length):
    from codeagent.backend.models.deepseek_v4.attention import attend

    gen = torch.Generator().manual_seed(tokens)
    heads, d = 8, 64
    q = torch.randn(tokens, heads, d, generator=gen).to(torch.bfloat16)
    keys = torch.randn(length, d, generator=gen).to(torch.bfloat16)
    visible = torch.rand(tokens, length, generator=gen) < 0.6
    visible[0, 0] = True
    visible[-1] = tokens == 1  # a row seeing nothing: all of its softmax goes to the sink, out 0
    sinks = torch.randn(heads, generator=gen)
    got = native_v4.sink_attention(q, keys, visible, sinks, d**-0.5)
    want = attend(q, keys, visible, sinks, d**-0.5)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), atol=2**-7, rtol=2**-7)
    if tokens > 1:
        assert not got[-1].any()
    for row in range(tokens):
        alone = native_v4.sink_attention(q[row : row + 1], keys, visible[row : row + 1], sinks, d**-0.5)
        assert torch.equal(alone[0], got[row])
    assert native_v4.fits_attention(q, keys)
    assert not native_v4.fits_attention(q[..., :48], keys[:, :48])  # not a multiple of 32
    assert not native_v4.fits_attention(q[:, :6], keys)  # heads not in groups of 4
    assert not native_v4.fits_attention(q.float(), keys.float())
    with pytest.raises(RuntimeError, match="multiple of 32"):
        native_v4.sink_attention(q[..., :48], keys[:, :48], visible, sinks, 1.0)
    kernels = dispatch.choose("cpu", "native")
    before = native_v4.native.calls["sink_attention"]
    torch.testing.assert_close(
        attend(q, keys, visible, sinks, d**-0.5, kernels).float(), got.float(), atol=0, rtol=0
    )
    assert native_v4.native.calls["sink_attention"] == before + 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("heads", [None, 5])  # x [T, D] with cos [T, r]; x [T, H, D] with cos [T, 1, r]
def test_interleaved_rope_gives_the_references_bits(dtype, heads):
    from codeagent.backend.models.deepseek_v4.rope import apply_interleaved_rope, rope_cos_sin

    gen = torch.Generator().manual_seed(3)
    shape = (4, 48) if heads is None else (4, heads, 48)
    x = torch.randn(*shape, generator=gen).to(dtype)
    cos, sin = rope_cos_sin(torch.tensor([0, 7, 300, 9000]), 1.0 / 10000 ** (torch.arange(0, 16, 2) / 16))
    if heads is not None:
        cos, sin = cos[:, None], sin[:, None]
    for s in (sin, -sin):  # rotated, and rotated back
        got = native_v4.interleaved_rope(x, cos, s)
        assert torch.equal(got, apply_interleaved_rope(x, cos, s))  # the same products and sums
    kernels = dispatch.choose("cpu", "native")
    before = native_v4.native.calls["interleaved_rope"]
    assert torch.equal(apply_interleaved_rope(x, cos, sin, kernels), apply_interleaved_rope(x, cos, sin))
    assert native_v4.native.calls["interleaved_rope"] == before + 1
    strided = torch.randn(*shape[:-1], 96).to(dtype)[..., ::2]  # x's shape, not contiguous
    assert native_v4.fits_rope(strided.contiguous(), cos) and not native_v4.fits_rope(strided, cos)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("width", [64, 40])  # 16 lanes, or in order
def test_rms_norms_match_the_references_and_ignore_the_batch(dtype, width):
    from codeagent.backend.models.deepseek_v4 import norm

    gen = torch.Generator().manual_seed(width)
    x = (3 * torch.randn(5, 3, width, generator=gen)).to(dtype)
    weight = torch.randn(width, generator=gen)
    tol = 1e-5 if dtype == torch.float32 else 2**-7
    for w, reference in ((weight, norm.rms_norm(x, weight, 1e-6)), (None, norm.unweighted_rms_norm(x, 1e-6))):
        got = native_v4.rms_norm(x, w, 1e-6)
        assert got.dtype == dtype and got.shape == x.shape
        torch.testing.assert_close(got.float(), reference.float(), atol=tol, rtol=tol)
        assert torch.equal(native_v4.rms_norm(x[2:3], w, 1e-6), got[2:3])  # alone: the same bits
    kernels = dispatch.choose("cpu", "native")
    before = native_v4.native.calls["v4_rms_norm"]
    norm.rms_norm(x, weight, 1e-6, kernels)
    norm.unweighted_rms_norm(x, 1e-6, kernels)
    assert native_v4.native.calls["v4_rms_norm"] == before + 2
    assert not native_v4.fits_norm(x, weight.half())
