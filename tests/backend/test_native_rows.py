"""The row kernels a step runs between its products (``kernels/native_rows.c``) that the older
tests (test_native_kernels.py: RMSNorm, norm with rotary) do not cover: the residual add fused
with the norm, and the router's softmax top-k, each against its torch reference."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.kernels import native, native_rows
from codeagent.backend.layers import moe, norm

pytestmark = pytest.mark.skipif(native.problem() is not None, reason=f"native kernels: {native.problem()}")


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_add_rms_norm_is_the_torch_add_then_the_native_norm(dtype):
    x, residual, weight = (
        randn(5, 96, seed=1, dtype=dtype),
        randn(5, 96, seed=2, dtype=dtype),
        randn(96, seed=3, dtype=dtype),
    )
    got, summed = native.add_rms_norm(x, residual, weight, 1e-6)
    assert torch.equal(summed, residual + x)  # rounded as torch's add rounds
    assert torch.equal(got, native.rms_norm(residual + x, weight, 1e-6))
    want, _ = norm.add_rms_norm(x, residual, weight, 1e-6)  # the torch reference
    torch.testing.assert_close(got, want, rtol=1e-2 if dtype == torch.bfloat16 else 1e-5, atol=1e-5)
    # in place over the residual, as a decode program runs it
    out = torch.empty_like(x)
    native.add_rms_norm_call(x, residual, weight, 1e-6, residual, out).run()
    assert torch.equal(residual, summed) and torch.equal(out, got)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("normalize", [True, False])
def test_softmax_topk_matches_the_reference_and_ignores_the_batch(dtype, normalize):
    generator = torch.Generator().manual_seed(4)  # distinct values in either dtype: no ties to order
    logits = torch.stack([torch.randperm(128, generator=generator) for _ in range(37)]).to(dtype) / 32
    weights, ids = native.softmax_topk(logits, 8, normalize)
    want_weights, want_ids = moe.softmax_topk(logits, 8, normalize)  # torch's softmax and topk
    assert weights.dtype == dtype and ids.dtype == torch.int64
    assert torch.equal(ids, want_ids)
    if dtype == torch.float32:
        torch.testing.assert_close(weights, want_weights, rtol=1e-6, atol=1e-7)
    else:  # the float32 values differ in their last bit at most, so bfloat16 ones by at most one step
        assert (weights.float() - want_weights.float()).abs().max() <= want_weights.float().abs().max() / 128
    if normalize:
        torch.testing.assert_close(weights.float().sum(-1), torch.ones(37), rtol=2e-2, atol=0)
    for rows in (slice(0, 1), slice(5, 9), slice(36, 37)):
        alone = native.softmax_topk(logits[rows], 8, normalize)
        assert torch.equal(alone[0], weights[rows]) and torch.equal(alone[1], ids[rows])


def test_softmax_topk_picks_equal_probabilities_lower_id_first():
    logits = torch.tensor([[0.0, 2.0, 1.0, 2.0, 2.0, -1.0]])
    weights, ids = native.softmax_topk(logits, 4, False)
    assert ids.tolist() == [[1, 3, 4, 2]]
    assert weights[0, 0] == weights[0, 1] == weights[0, 2] > weights[0, 3]


def test_softmax_topk_refuses_what_it_cannot_take():
    assert native.fits_softmax_topk(torch.zeros(2, 128), 8)
    assert not native.fits_softmax_topk(torch.zeros(2, 4), 8)  # k above the experts
    assert not native.fits_softmax_topk(torch.zeros(2, native_rows.MAX_EXPERTS + 1), 8)
    assert not native.fits_softmax_topk(torch.zeros(2, 128, dtype=torch.float16), 8)
    with pytest.raises(ValueError, match="softmax_topk"):
        native.softmax_topk_call(
            torch.zeros(2, 4), 8, True, torch.empty(2, 8), torch.empty(2, 8, dtype=torch.int64)
        )
