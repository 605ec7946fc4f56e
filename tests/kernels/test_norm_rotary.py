"""RMSNorm and rotary kernels against the layers' torch references."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.kernels import norm, rotary
from codeagent.backend.layers.norm import add_rms_norm
from codeagent.backend.layers.norm import rms_norm as qwen_rms_norm
from codeagent.backend.layers.rotary import apply_rotary, cos_sin, inverse_frequencies
from codeagent.backend.models.deepseek_v4 import norm as v4_norm
from codeagent.backend.models.deepseek_v4 import rope as v4
from codeagent.backend.models.deepseek_v4.config import RopeSpec


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 64), (5, 3, 48), (7, 100)])
def test_rms_norm_matches_both_roundings(randn, shape, dtype):
    x, w = randn(*shape, dtype=dtype), randn(shape[-1], dtype=dtype, seed=1)
    tol = {"atol": 1e-6, "rtol": 1e-6} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    torch.testing.assert_close(norm.rms_norm(x, w, 1e-6), qwen_rms_norm(x, w, 1e-6), **tol)
    got = norm.rms_norm(x, w, 1e-6, rounding=norm.WEIGHT_FIRST)
    torch.testing.assert_close(got, v4_norm.rms_norm(x, w, 1e-6), **tol)
    got = norm.rms_norm(x, None, 1e-6, rounding=norm.SCALE_IN_DTYPE)
    torch.testing.assert_close(got, v4_norm.unweighted_rms_norm(x, 1e-6), **tol)
    torch.testing.assert_close(norm.rms_norm(x, None, 1e-6), qwen_rms_norm(x, None, 1e-6), **tol)


def test_rms_norm_reads_a_strided_view(randn):
    fused = randn(4, 3 * 32)
    q = fused[:, :64].view(4, 2, 32)  # per-head norm on a slice of a fused projection
    w = randn(32, seed=3)
    torch.testing.assert_close(norm.rms_norm(q, w, 1e-6), qwen_rms_norm(q, w, 1e-6), atol=1e-6, rtol=1e-6)


def test_rms_norm_with_residual_add(randn):
    x, r, w = randn(6, 80), randn(6, 80, seed=1), randn(80, seed=2)
    normed, summed = norm.rms_norm(x, w, 1e-6, residual=r)
    want_normed, want_summed = add_rms_norm(x, r, w, 1e-6)  # the layer's reference
    torch.testing.assert_close(summed, want_summed, atol=0, rtol=0)
    torch.testing.assert_close(normed, want_normed, atol=1e-6, rtol=1e-6)


def test_rms_norm_of_no_rows(randn):
    assert norm.rms_norm(randn(0, 16), randn(16), 1e-6).shape == (0, 16)


@pytest.mark.parametrize("heads", [1, 4])
def test_rotate_half_matches_the_reference(randn, heads, device):
    positions = torch.tensor([0, 5, 17, 4095], device=device)
    cos, sin = cos_sin(positions, inverse_frequencies(32, 1e6))
    x = randn(4, heads, 32)
    torch.testing.assert_close(
        rotary.apply_rotary(x, cos, sin), apply_rotary(x, cos, sin), atol=1e-6, rtol=1e-6
    )


def test_partial_rotate_half_leaves_the_tail(randn, device):
    cos, sin = cos_sin(torch.arange(3, device=device), inverse_frequencies(16, 1e4))
    x = randn(3, 2, 40)
    got = rotary.apply_rotary(x, cos, sin)
    torch.testing.assert_close(got[..., :16], apply_rotary(x[..., :16], cos, sin), atol=1e-6, rtol=1e-6)
    assert torch.equal(got[..., 16:], x[..., 16:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_interleaved_rope_on_the_last_channels_and_back(randn, dtype, device):
    spec = RopeSpec(dim=8, theta=160000.0, yarn_factor=16.0, original_max_position=4096)
    cos, sin = v4.rope_cos_sin(torch.arange(5, device=device) * 7, v4.inverse_frequencies(spec).to(device))
    q, kv = randn(5, 3, 24, dtype=dtype), randn(5, 24, dtype=dtype, seed=1)
    tol = {"atol": 1e-6, "rtol": 1e-6} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    want = v4.apply_interleaved_rope(q, cos[:, None], sin[:, None])
    torch.testing.assert_close(
        rotary.apply_rotary(q, cos[:, None], sin[:, None], interleaved=True), want, **tol
    )
    torch.testing.assert_close(
        rotary.apply_rotary(kv, cos, -sin, interleaved=True), v4.apply_interleaved_rope(kv, cos, -sin), **tol
    )
