"""FP4 products with int8 activations (``native_packed.c``'s ``fp4_i8_dots``, AVX512-VNNI with
-VBMI) against a torch evaluation of the same integer math, and against the float32 route.

- Against the same math (``int8_reference``: activations quantized per 32 inputs exactly as
  the kernel does, the integer group sums exact, the scales multiplied in float32, the rest
  in float64): within float32 accumulation, bounded per output element by (blocks + 5) float32
  roundings of the sum of the terms' magnitudes (each lane's sum is rounded once a block of
  128 inputs, then the 16 lanes are summed in 4 steps).
- Against the float32 route: within the activations' rounding, bounded per output element by
  sum |w_i| * (amax of i's group) / 254 (each quantized input is off by at most half a step,
  amax / 254), plus the float32 routes' own rounding.
- Batch invariance: a row's result alone equals its result in any batch, bit for bit.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from codeagent.backend.kernels import native_packed
from codeagent.backend.layers import moe
from codeagent.backend.packed_weights import PackedExperts, PackedWeight
from codeagent.backend.quant import dequantize

PROBLEM = native_packed.problem()
pytestmark = [
    pytest.mark.skipif(PROBLEM is not None, reason=f"packed kernels unavailable: {PROBLEM}"),
    pytest.mark.skipif(PROBLEM is None and not native_packed.int8_built(), reason="no AVX512-VNNI/VBMI here"),
]
EPS = 2.0**-24  # float32's unit roundoff


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [T, K] float32 -> (codes [T, K/32, 32] as float64, scales [T, K/32] float32), as
    ``i8_quantize``: amax per group, codes rint(x * (127 / amax)), scale amax / 127."""
    groups = x.float().view(x.shape[0], -1, 32)
    amax = groups.abs().amax(-1)
    nonzero = amax > 0
    inv = torch.where(nonzero, torch.tensor(127.0) / amax, torch.zeros_like(amax))
    codes = torch.round(groups * inv[..., None]).clamp(-127, 127)
    return codes.double(), torch.where(nonzero, amax / torch.tensor(127.0), torch.zeros_like(amax))


def weight_parts(w: PackedWeight) -> tuple[torch.Tensor, torch.Tensor]:
    """(twice each e2m1 value [N, K/32, 32] float64, each group's scale [N, K/32] float32; a UE8M0
    byte 0 reads as 0, as the kernel reads it)."""
    n, k = w.shape
    unit = torch.full((n, k // 32), 127, dtype=torch.uint8)
    doubled = dequantize(w.weight, unit, torch.float64) * 2
    if w.scale.dtype == torch.float32:
        scale = w.scale
    else:
        e = w.scale.view(torch.uint8).float()
        scale = torch.where(e > 0, (e - 127).exp2(), torch.zeros_like(e))
    return doubled.view(n, -1, 32), scale


def int8_reference(x: torch.Tensor, w: PackedWeight) -> tuple[torch.Tensor, torch.Tensor]:
    """(x @ W^T by the kernel's int8 math in float64 [T, N], the float32 accumulation bound [T, N])."""
    q, sx = quantize_rows(x)
    wi, sw = weight_parts(w)
    sums = torch.einsum("tgi,ngi->tng", q, wi)  # exact: integers below 2^53
    combined = (sw[None] * (sx * 0.5)[:, None]).double()  # float32 products, as the kernel's
    terms = sums * combined
    blocks = -(-w.shape[1] // 128)
    return terms.sum(-1), (blocks + 5) * EPS * terms.abs().sum(-1)


def rounding_bound(x: torch.Tensor, w: PackedWeight) -> torch.Tensor:
    """|int8 route - float32 route| <= sum_i |w_i| amax(i's group) / 254, per output element."""
    groups = x.float().view(x.shape[0], -1, 32)
    step = groups.abs().amax(-1, keepdim=True).expand_as(groups).reshape(x.shape[0], -1) / 254
    return step.double() @ w.dequantize(torch.float64).abs().t()


def packed_weight(n: int, k: int, seed: int, float_scales: bool = False) -> PackedWeight:
    w = PackedWeight.quantize(randn(n, k, seed=seed, scale=0.1), "fp4")
    return PackedWeight(w.weight, w.scale.float().sub(127).exp2(), "fp4") if float_scales else w


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("float_scales", [False, True])
def test_linear_is_the_int8_math_and_ignores_the_batch(dtype, float_scales):
    # 352 inputs: two blocks of 128 and a last one of 3 groups (160: one, and 1 group); 11 rows:
    # more than one group of 4
    for k in (160, 352):
        w = packed_weight(70, k, seed=1, float_scales=float_scales)
        x = randn(11, k, seed=2).to(dtype)
        x[3, 32:64] = 0  # an all-zero group
        got = native_packed.linear(x, w, torch.float32, int8=True)
        want, bound = int8_reference(x, w)
        assert ((got.double() - want).abs() <= bound).all()
    for rows in (slice(0, 1), slice(4, 6), slice(0, 3), slice(2, 11)):
        assert torch.equal(native_packed.linear(x[rows], w, torch.float32, int8=True), got[rows])
    floats = native_packed.linear(x, w, torch.float32, int8=False)
    slack = 1e-5 * floats.abs().max()  # the float32 routes' own rounding
    assert ((got - floats).abs().double() <= rounding_bound(x, w) + slack).all()
    assert not torch.equal(got, floats)


def test_every_code_maps_to_its_integer():
    """Each row one scale exponent, every byte (every pair of codes) in a row, x a ramp: the
    products are the reference's for every code and UE8M0 scales 2^-126 to 2^100."""
    codes = torch.arange(256, dtype=torch.uint8).view(8, 32)  # 64 inputs a row
    for exponent in (1, 100, 127, 227):
        w = PackedWeight(codes, torch.full((8, 2), exponent, dtype=torch.uint8), "fp4")
        x = torch.linspace(-1, 1, 64).view(1, 64).repeat(3, 1) * torch.tensor([[1.0], [1e-3], [37.0]])
        want, bound = int8_reference(x, w)
        got = native_packed.linear(x, w, torch.float32, int8=True)
        assert ((got.double() - want).abs() <= bound).all(), exponent


def test_the_switch_chooses_the_route_and_fp8_ignores_it():
    w = packed_weight(40, 64, seed=3)
    x = randn(2, 64, seed=4)
    floats = native_packed.linear(x, w, int8=False)
    native_packed.set_int8(False)
    try:
        assert torch.equal(native_packed.linear(x, w), floats)
        native_packed.set_int8(True)
        assert torch.equal(native_packed.linear(x, w), native_packed.linear(x, w, int8=True))
    finally:
        native_packed.set_int8(None)
    fp8 = PackedWeight.quantize(randn(40, 64, seed=5), "fp8")
    assert torch.equal(native_packed.linear(x, fp8, int8=True), native_packed.linear(x, fp8, int8=False))


def experts_reference(
    x: torch.Tensor, w13: PackedExperts, w2: PackedExperts, weights: torch.Tensor, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer by the int8 math, one pair at a time: gate and up, silu(gate) * up (rounded to
    bfloat16 for bfloat16 x), quantized, down; and the float32 accumulation bound."""
    inter = w2.shape[2]
    out = torch.zeros(x.shape[0], w2.shape[1], dtype=torch.float64)
    bound = torch.zeros_like(out)
    for t, j in itertools.product(range(ids.shape[0]), range(ids.shape[1])):
        e = int(ids[t, j])
        gate_up, _ = int8_reference(x[t : t + 1], PackedWeight(w13.weight[e], w13.scale[e], "fp4"))
        h = gate_up.float()[0]
        a = F.silu(h[:inter]) * h[inter:]
        a = a.bfloat16().float() if x.dtype == torch.bfloat16 else a
        down, slack = int8_reference(a[None], PackedWeight(w2.weight[e], w2.scale[e], "fp4"))
        out[t] += float(weights[t, j]) * down[0]
        bound[t] += float(weights[t, j]) * slack[0]
    return out, bound


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_moe_is_the_int8_math_and_ignores_the_batch(dtype):
    experts, hidden, inter, k, tokens = 5, 96, 64, 2, 7
    w13 = PackedExperts.quantize(randn(experts, 2 * inter, hidden, seed=20, scale=0.1), "fp4")
    w2 = PackedExperts.quantize(randn(experts, hidden, inter, seed=21, scale=0.1), "fp4")
    x = randn(tokens, hidden, seed=22).to(dtype)
    weights, ids = moe.softmax_topk(randn(tokens, experts, seed=23), k, normalize=True)
    got = native_packed.moe_packed(x, w13, w2, weights, ids, out_dtype=torch.float32, int8=True)
    want, bound = experts_reference(x, w13, w2, weights, ids)
    # gate and up within float32 rounding of the reference's: an activation whose quantization
    # (or bfloat16 rounding) sits on a boundary may take the neighbouring step; none does here
    assert ((got.double() - want).abs() <= bound + 4 * EPS * want.abs().max()).all()
    for rows in (slice(0, 1), slice(2, 6)):
        alone = native_packed.moe_packed(
            x[rows], w13, w2, weights[rows], ids[rows], out_dtype=torch.float32, int8=True
        )
        assert torch.equal(alone, got[rows])
    floats = native_packed.moe_packed(x, w13, w2, weights, ids, out_dtype=torch.float32, int8=False)
    assert not torch.equal(got, floats)
    slack = 1e-5 * floats.abs().max()  # the float32 routes' own rounding
    assert ((got - floats).abs().double() <= float_route_bound(x, w13, w2, weights, ids) + slack).all()


def float_route_bound(
    x: torch.Tensor, w13: PackedExperts, w2: PackedExperts, weights: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """|int8 route - float32 route| for a layer, per output element, from the two roundings:
    gate and up off by at most ``rounding_bound``, carried through silu (slope within [-0.1,
    1.1]) and the product, the bfloat16 rounding of either route's activation (2^-9 relative
    each), then the down projection's quantization and the activations' difference."""
    inter = w2.shape[2]
    out = torch.zeros(x.shape[0], w2.shape[1], dtype=torch.float64)
    for t, j in itertools.product(range(ids.shape[0]), range(ids.shape[1])):
        e = int(ids[t, j])
        up_gate = PackedWeight(w13.weight[e], w13.scale[e], "fp4")
        down = PackedWeight(w2.weight[e], w2.scale[e], "fp4")
        h = F.linear(x[t : t + 1].double(), up_gate.dequantize(torch.float64))[0]
        dh = rounding_bound(x[t : t + 1], up_gate)[0] * (1 + 1e-5)
        g, u, dg, du = h[:inter], h[inter:], dh[:inter], dh[inter:]
        a = F.silu(g).abs() + 1.1 * dg
        da = 1.1 * dg * (u.abs() + du) + a * du
        if x.dtype == torch.bfloat16:
            da = da + 2.0**-8 * (a * (u.abs() + du))
        reach = (F.silu(g) * u).abs() + da  # the largest the activation can be, either route
        step = reach.view(-1, 32).amax(-1, keepdim=True).expand(-1, 32).reshape(-1) / 254
        out[t] += float(weights[t, j]) * (down.dequantize(torch.float64).abs() @ (da + step))
    return out


def test_the_layers_take_int8_by_default_unless_the_environment_says_off(monkeypatch):
    from codeagent.backend.kernels import dispatch

    w13 = PackedExperts.quantize(randn(4, 64, 64, seed=30, scale=0.1), "fp4")
    w2 = PackedExperts.quantize(randn(4, 64, 32, seed=31, scale=0.1), "fp4")
    x = randn(2, 64, seed=32)
    weights, ids = moe.softmax_topk(randn(2, 4, seed=33), 2, normalize=True)
    routes = {
        on: native_packed.moe_packed(x, w13, w2, weights, ids, out_dtype=torch.float32, int8=on)
        for on in (True, False)
    }
    try:
        for value, on in (("", True), ("auto", True), ("off", False)):
            monkeypatch.setenv(native_packed.INT8_ENV, value)
            native_packed.set_int8(None)  # read the environment again
            kernels = dispatch.choose("cpu", "native")
            assert ("int8 activations" in kernels.name) == on
            assert torch.equal(moe.experts_forward(x, w13, w2, weights, ids, kernels), routes[on])
        monkeypatch.setenv(native_packed.INT8_ENV, "on")
        native_packed.set_int8(None)
        with pytest.raises(ValueError, match="expected auto or off"):
            dispatch.choose("cpu", "native")
    finally:
        native_packed.set_int8(None)
