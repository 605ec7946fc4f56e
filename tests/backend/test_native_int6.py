"""INT6 products (``native_int6.c``) against the reference (``quant_int6.dequantize_int6``, then a
float product), and the routes against one another.

- The int8 route: within the activations' rounding, bounded per output element by
  sum |w_i| * (amax of i's group) / 254 (each quantized input is off by at most half a step,
  amax / 254), plus float32 rounding; the vectorised route (AVX512-VNNI) and the portable one
  give the same bits; a row's result does not depend on its batch.
- The float route: the reference's values within float32 rounding.
- Through the layers: a packed ``Linear`` runs the kernel at decode sizes and the decoded weight
  beyond them, and ``CODEAGENT_FP4_INT8=off`` (``set_int8(False)``) takes the float route.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from codeagent.backend.kernels import native, native_int6, native_packed
from codeagent.backend.kernels.dispatch import choose
from codeagent.backend.layers.linear import Linear
from codeagent.backend.packed_weights import PackedWeight
from codeagent.backend.quant_int6 import dequantize_int6, quantize_int6

PROBLEM = native_int6.problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"INT6 kernels unavailable: {PROBLEM}")
EPS = 2.0**-24


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def weight(n: int = 130, k: int = 384) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    codes, scale = quantize_int6(randn(n, k, seed=1, scale=0.05))
    return codes, scale, dequantize_int6(codes, scale)


def activation_bound(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """[T, N]: sum over inputs of |w| times half an int8 step of the input's group."""
    t, k = x.shape
    half_step = (x.float().view(t, k // 32, 32).abs().amax(-1) / 254).repeat_interleave(32, dim=1)
    return half_step @ w.abs().t()


@pytest.mark.parametrize("rows", [1, 3, 8, 9, 20])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_route_is_within_the_activations_rounding(rows, dtype):
    codes, scale, w = weight()
    x = randn(rows, 384, seed=rows).to(dtype)
    got = native_int6.linear(x, codes, scale, 384, out_dtype=torch.float32)
    exact = x.double() @ w.double().t()
    magnitude = x.double().abs() @ w.double().abs().t()
    bound = activation_bound(x, w).double() + 64 * EPS * magnitude
    assert bool(((got.double() - exact).abs() <= bound).all())
    assert float((got.double() - exact).abs().max()) > 0  # the rounding is there: this is the int8 route


@pytest.mark.skipif(PROBLEM is None and not native_int6.vector_built(), reason="no AVX512-VNNI here")
@pytest.mark.parametrize("rows", [1, 2, 5, 8, 13])
def test_vector_and_portable_routes_give_the_same_bits(rows):
    codes, scale, _ = weight()
    x = randn(rows, 384, seed=10 + rows).bfloat16()
    for out in (torch.float32, torch.bfloat16):
        vector = native_int6.linear(x, codes, scale, 384, out, route="int8")
        portable = native_int6.linear(x, codes, scale, 384, out, route="int8-portable")
        assert torch.equal(vector, portable)


@pytest.mark.parametrize("route", ["int8", "float"])
def test_a_rows_result_does_not_depend_on_its_batch(route):
    codes, scale, _ = weight()
    x = randn(11, 384, seed=4)
    batch = native_int6.linear(x, codes, scale, 384, route=route)
    for s in (0, 5, 10):
        alone = native_int6.linear(x[s : s + 1], codes, scale, 384, route=route)
        assert torch.equal(alone[0], batch[s])


def test_float_route_is_the_reference_within_float32_rounding():
    codes, scale, w = weight()
    x = randn(6, 384, seed=5)
    got = native_int6.linear(x, codes, scale, 384, route="float")
    exact = x.double() @ w.double().t()
    assert bool(((got.double() - exact).abs() <= 64 * EPS * (x.double().abs() @ w.double().abs().t())).all())


def test_dequantize_is_the_reference():
    codes, scale, w = weight()
    assert torch.equal(native_int6.dequantize(codes, scale, 384, torch.float32), w)
    assert torch.equal(native_int6.dequantize(codes, scale, 384, torch.bfloat16), w.bfloat16())


def test_what_the_kernel_takes():
    codes, scale, _ = weight()
    packed, x = PackedWeight(codes, scale, "int6"), torch.zeros(1, 384)
    assert native_packed.fits_linear(x, packed)
    assert not native_packed.fits_linear(torch.zeros(65, 384), packed)  # beyond MAX_ROWS
    assert not native_packed.fits_linear(x.half(), packed)
    assert not native_packed.fits_linear(x, PackedWeight(codes, scale.float(), "int6"))
    assert native_packed.fits_dequantize(packed, torch.bfloat16)
    with pytest.raises(native.NativeError, match="too many token rows"):
        native_int6.linear(torch.zeros(65, 384), codes, scale, 384)


def test_a_packed_linear_runs_the_kernel_then_the_decoded_weight():
    kernels = choose("cpu", "native")
    layer = Linear(256, 200, torch.bfloat16, "cpu")
    layer.weight.data.copy_(randn(200, 256, seed=6, scale=0.05).bfloat16())
    layer.pack("int6")
    assert isinstance(layer.weight, PackedWeight) and layer.weight.format == "int6"
    decoded = layer.weight.dequantize(torch.bfloat16)
    before = dict(native.calls)
    x = randn(4, 256, seed=7).bfloat16()
    small = layer(x, kernels)
    assert native.calls["linear_int6"] == before.get("linear_int6", 0) + 1
    assert torch.equal(small, native_int6.linear(x, layer.weight.weight, layer.weight.scale, 256))
    big = randn(80, 256, seed=8).bfloat16()  # a prefill: the weight decoded for the call
    assert torch.equal(layer(big, kernels), F.linear(big, decoded))
    assert native.calls["dequantize_int6"] == before.get("dequantize_int6", 0) + 1


def test_int8_off_takes_the_float_route():
    codes, scale, _ = weight()
    packed = PackedWeight(codes, scale, "int6")
    x = randn(2, 384, seed=9)
    try:
        native_packed.set_int8(False)
        off = native_packed.linear(x, packed)
        native_packed.set_int8(True)
        on = native_packed.linear(x, packed)
    finally:
        native_packed.set_int8(None)
    assert torch.equal(off, native_int6.linear(x, codes, scale, 384, route="float"))
    assert torch.equal(on, native_int6.linear(x, codes, scale, 384, route="int8"))
    assert not torch.equal(on, off)


def test_a_build_without_avx512_gives_the_same_bits():
    """The portable route compiled for a plain x86-64 (no AVX-512, no VNNI): the vector build's
    results exactly, and the dequantized values."""
    import platform

    from codeagent.backend.kernels import native_build

    if platform.machine() != "x86_64":
        pytest.skip("x86-64 targets")
    flags = tuple("-march=x86-64" if f == "-march=native" else f for f in native_build.FLAGS)
    lib = native_build.build(native_int6.SOURCE, native_int6.SIGNATURES, flags)
    assert not isinstance(lib, str), lib
    assert lib.ca_int6_vector() == 0
    codes, scale, w = weight()
    x = randn(3, 384, seed=11).bfloat16()
    out = torch.empty(3, 130)
    status = lib.ca_linear_int6(
        3, 384, 130, x.data_ptr(), codes.data_ptr(), scale.data_ptr(), out.data_ptr(), 1, 0, 2, 1
    )
    assert status == 0
    assert torch.equal(out, native_int6.linear(x, codes, scale, 384, torch.float32))
    decoded = torch.empty(130, 384)
    lib.ca_dequantize_int6(130, 384, codes.data_ptr(), scale.data_ptr(), decoded.data_ptr(), 0, 1)
    assert torch.equal(decoded, w)
