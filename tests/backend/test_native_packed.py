"""The native kernels over packed weights (``kernels/native_packed.c``) against the torch
references (decode with ``quant``, then ``F.linear`` or the per-expert MoE loop): every code
of both formats, scales at their extremes, batch invariance, the shapes the ``fits_*`` checks
send elsewhere, and the layers choosing them.

Tolerance: float32 outputs within 1e-5 of the largest output's magnitude (the kernels and the
references differ only in float32 summation order); bfloat16 outputs within bfloat16 rounding.
FP4 products run their float32 route here (the ``float_route`` fixture); the int8 one is
test_native_packed_int8.py's.
"""

from __future__ import annotations

import itertools
import platform

import pytest
import torch
import torch.nn.functional as F

from codeagent.backend.kernels import dispatch, native, native_build, native_packed
from codeagent.backend.layers import linear, moe
from codeagent.backend.packed_weights import PackedExperts, PackedWeight
from codeagent.backend.quant import E4M3_MAX, dequantize

PROBLEM = native_packed.problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"packed kernels unavailable: {PROBLEM}")
FORMATS = ["fp8", "fp4"]
ACTIVATIONS = [torch.float32, torch.bfloat16]


@pytest.fixture(autouse=True)
def float_route():
    """FP4 products on the float32 (or bf16 pairs) route, whatever the default: the int8 one
    has its own tests (test_native_packed_int8.py)."""
    native_packed.set_int8(False)
    yield
    native_packed.set_int8(None)


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def close(got: torch.Tensor, want: torch.Tensor) -> None:
    """float32 results within 1e-5 of the largest magnitude; bfloat16 within its rounding."""
    scale = want.float().abs().max().item() or 1.0
    tol = 1e-5 if got.dtype == torch.float32 else 2**-7
    torch.testing.assert_close(got.float(), want.float(), atol=tol * scale, rtol=0)


def packed_weight(kind: str, n: int, k: int, seed: int, float_scales: bool = False) -> PackedWeight:
    w = PackedWeight.quantize(randn(n, k, seed=seed, scale=0.1), kind)
    return PackedWeight(w.weight, w.scale.float().sub(127).exp2(), kind) if float_scales else w


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("dtype", ACTIVATIONS)
@pytest.mark.parametrize("float_scales", [False, True])
def test_linear_matches_decode_then_linear_and_ignores_the_batch(kind, dtype, float_scales):
    # 200 rows: a partial block of 128; 320 inputs: two and a half FP8 blocks, ten FP4 groups (bf16
    # activations in pairs where the CPU has AVX512-BF16); FP8 over 336 inputs: never in pairs
    for k in (320, 336) if kind == "fp8" else (320,):
        w = packed_weight(kind, 200, k, seed=1, float_scales=float_scales)
        x = randn(19, k, seed=2).to(dtype)  # more than one group of rows
        got = native_packed.linear(x, w, torch.float32)
        close(got, F.linear(x.float(), w.dequantize(torch.float32)))
        close(native_packed.linear(x, w), F.linear(x.float(), w.dequantize(torch.float32)).to(dtype))
        # several activation rows at once: the same bits alone as in a batch
        for rows in (slice(0, 1), slice(5, 7), slice(0, 3), slice(3, 11)):
            assert torch.equal(native_packed.linear(x[rows], w, torch.float32), got[rows])


@pytest.mark.parametrize("kind", FORMATS)
def test_bf16_pairs_take_every_code_and_scale_exactly(kind):
    """bf16 one-hot activations (K 32: in pairs where the CPU has AVX512-BF16) give every code
    times its scale exactly, from subnormal scales (FP4: the rows whose scaled table would leave
    bf16's normals sum each group unscaled) to 2^125, and non-power-of-two float scales."""
    codes = torch.arange(256, dtype=torch.uint8)
    if kind == "fp8":
        codes[(codes & 0x7F) == 0x7F] = 0
        weight, rows = codes.view(torch.float8_e4m3fn).view(8, 32), 8
    else:
        weight, rows = codes.view(16, 16), 16
    x = torch.eye(32, dtype=torch.bfloat16)
    for exponent in (0, 1, 2, 100, 127, 227, 252):
        scale = torch.full((1, 1) if kind == "fp8" else (rows, 1), exponent, dtype=torch.uint8)
        got = native_packed.linear(x, PackedWeight(weight, scale, kind), torch.float32).t()
        assert torch.equal(got, dequantize(weight, scale, torch.float32)), exponent
    if kind == "fp4":  # scaled and unscaled rows side by side; float scales, one not a power of two
        for scale in (
            torch.tensor([[0], [127], [1], [252], [2], [130], [0], [0]] * 2, dtype=torch.uint8),
            torch.tensor([2.0**-127, 0.75, 2.0**-3, 0.0] * 4).view(16, 1),
        ):
            got = native_packed.linear(x, PackedWeight(weight, scale, kind), torch.float32).t()
            assert torch.equal(got, dequantize(weight, scale, torch.float32))


def test_the_raw_entry_points_take_checkpoint_tensors():
    w = randn(130, 64, seed=3)
    x = randn(2, 64, seed=4)
    fp8 = PackedWeight.quantize(w, "fp8")
    e8m0 = fp8.scale.view(torch.float8_e8m0fnu)
    close(native_packed.linear_fp8(x, fp8.weight, e8m0), F.linear(x, fp8.dequantize(torch.float32)))
    fp4 = PackedWeight.quantize(w, "fp4")
    codes = fp4.weight.view(torch.int8)  # as released
    close(native_packed.linear_fp4(x, codes, fp4.scale), F.linear(x, fp4.dequantize(torch.float32)))


def one_hot_products(kind: str, codes: torch.Tensor, exponent: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each code (a [16, 16] weight of them, one scale exponent) decoded by the kernel (x = the
    identity) and by ``quant``."""
    rows, width = codes.shape
    k = width * (2 if kind == "fp4" else 1)
    if kind == "fp8":
        weight, scale = codes.view(torch.float8_e4m3fn), torch.full((1, 1), exponent, dtype=torch.uint8)
    else:
        weight, scale = codes, torch.full((rows, k // 32), exponent, dtype=torch.uint8)
    w = PackedWeight(weight, scale, kind)
    got = native_packed.linear(torch.eye(k), w).t()  # [rows, k]: w's values
    return got, dequantize(weight, scale, torch.float32)


@pytest.mark.parametrize("exponent", [0, 100, 127, 227])  # scales 2^-127 (subnormal) to 2^100
def test_every_e4m3_code_decodes_as_quant_does(exponent):
    codes = torch.arange(256, dtype=torch.uint8)
    codes[(codes & 0x7F) == 0x7F] = 0  # e4m3's two NaN codes: not decoded as NaN (the limit)
    got, want = one_hot_products("fp8", codes.view(16, 16), exponent)
    assert torch.equal(got, want)
    assert want.abs().max().item() == E4M3_MAX * 2.0 ** (exponent - 127)


@pytest.mark.parametrize("exponent", [0, 100, 127, 227])
def test_every_e2m1_pair_decodes_as_quant_does(exponent):
    codes = torch.arange(256, dtype=torch.uint8).view(16, 16)  # every byte: every pair of codes
    got, want = one_hot_products("fp4", codes, exponent)
    assert torch.equal(got, want)


def test_a_zero_scale_gives_zeros():
    w = PackedWeight.quantize(randn(64, 64, seed=5), "fp8")
    zero = PackedWeight(w.weight, torch.zeros_like(w.scale, dtype=torch.float32), "fp8")
    assert torch.equal(native_packed.linear(randn(3, 64, seed=6), zero), torch.zeros(3, 64))


def test_shapes_the_kernels_do_not_take_are_refused():
    x = randn(2, 64, seed=7)
    fp8 = PackedWeight.quantize(randn(32, 64, seed=8), "fp8")
    fp4 = PackedWeight.quantize(randn(32, 64, seed=8), "fp4")
    assert native_packed.fits_linear(x, fp8) and native_packed.fits_linear(x, fp4)
    assert not native_packed.fits_linear(randn(65, 64, seed=9), fp8)  # more rows than a decode batch
    assert not native_packed.fits_linear(x.to(torch.float16), fp8)
    assert not native_packed.fits_linear(
        randn(2, 40, seed=9), PackedWeight.quantize(randn(8, 40, seed=9), "fp8")
    )
    assert not native_packed.fits_linear_fp8(x, fp8.weight, fp8.scale[:, :0])  # scales of another layout
    assert not native_packed.fits_linear_fp4(x, fp4.weight, fp4.scale.to(torch.bfloat16))


@pytest.mark.parametrize("kind", FORMATS)
def test_the_layer_runs_the_kernel_for_decode_batches_and_decodes_otherwise(kind):
    kernels = dispatch.choose("cpu", "native")
    assert kernels.packed is native_packed
    w = packed_weight(kind, 96, 64, seed=10)
    want = w.dequantize(torch.float32)
    for rows, runs_kernel in ((4, True), (70, False)):  # 70 rows: a prefill chunk, decoded once
        x = randn(rows, 64, seed=11)
        before = (native.calls[f"linear_{kind}"], native.calls[f"dequantize_{kind}"])
        close(linear.linear(x, w, kernels), F.linear(x, want))
        close(linear.head_logits(x, w, kernels), F.linear(x, want))
        after = (native.calls[f"linear_{kind}"], native.calls[f"dequantize_{kind}"])
        assert after == (before[0] + 2 * runs_kernel, before[1] + 2 * (not runs_kernel))
    close(linear.linear(x, w), F.linear(x, want))  # no kernels: the reference


@pytest.mark.parametrize("kind", FORMATS)
def test_grouped_linear_runs_one_packed_product_a_group(kind):
    """DeepSeek-V4's grouped output projection over a packed weight: each group of inputs through
    its own rows, one native product a group (groups of whole 128-row FP8 blocks), as the decoded
    weight's batched product gives; a group that would cut FP8 blocks decodes the weight instead."""
    kernels = dispatch.choose("cpu", "native")
    w = packed_weight(kind, 3 * 128, 64, seed=40)
    x = randn(2, 3, 64, seed=41)
    want = torch.einsum("tgi,gri->tgr", x, w.dequantize(torch.float32).view(3, 128, 64))
    before = native.calls[f"linear_{kind}"]
    close(linear.grouped_linear(x, w, kernels), want)
    assert native.calls[f"linear_{kind}"] == before + 3
    assert w.rows(128, 256).weight.data_ptr() == w.weight[128].data_ptr()  # a view, not a copy
    if kind == "fp8":
        narrow = randn(2, 6, 64, seed=42)  # 64 rows a group: FP8 blocks cut
        close(linear.grouped_linear(narrow, w, kernels), torch.einsum(
            "tgi,gri->tgr", narrow, w.dequantize(torch.float32).view(6, 64, 64)
        ))  # fmt: skip
        assert native.calls["linear_fp8"] == before + 3
        with pytest.raises(ValueError, match="cut the 128-row blocks"):
            w.rows(64, 128)


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("dtype", ACTIVATIONS)
def test_native_decoding_gives_quants_values(kind, dtype):
    for float_scales in (False, True):
        w = packed_weight(kind, 200, 320, seed=14, float_scales=float_scales)
        assert torch.equal(native_packed.dequantize(w, dtype), w.dequantize(dtype))
    experts = PackedExperts.quantize(randn(3, 96, 64, seed=15), kind)
    assert torch.equal(native_packed.dequantize_expert(experts, 2, dtype), experts.expert(2, dtype))


def test_a_packed_linear_layer_keeps_only_its_codes():
    layer = linear.Linear(64, 96, torch.float32, "cpu")
    layer.weight.data.copy_(randn(96, 64, seed=12))
    full = layer.weight.detach().clone()
    layer.pack("fp8")
    assert isinstance(layer.weight, PackedWeight) and not list(layer.parameters())
    x = randn(2, 64, seed=13)
    kernels = dispatch.choose("cpu", "native")
    got = layer.forward(x, kernels)
    close(got, F.linear(x, layer.weight.dequantize(torch.float32)))
    assert (got - F.linear(x, full)).norm() < 0.05 * F.linear(x, full).norm()  # e4m3's rounding


def packed_layer(kind: str, experts: int, hidden: int, inter: int) -> tuple[PackedExperts, PackedExperts]:
    w13 = PackedExperts.quantize(randn(experts, 2 * inter, hidden, seed=20, scale=0.1), kind)
    w2 = PackedExperts.quantize(randn(experts, hidden, inter, seed=21, scale=0.1), kind)
    return w13, w2


def decoded(w: PackedExperts) -> torch.Tensor:
    return torch.stack([w.expert(e, torch.float32) for e in range(w.shape[0])])


def moe_reference(
    x: torch.Tensor,
    w13: PackedExperts,
    w2: PackedExperts,
    weights: torch.Tensor,
    ids: torch.Tensor,
    rounds: bool,
) -> torch.Tensor:
    """The layer in float32, one (token, expert) pair at a time; with ``rounds`` the activation
    between the projections rounded to bfloat16, as a bfloat16 model's reference holds it."""
    gate_up, down = decoded(w13), decoded(w2)
    inter = down.shape[2]
    out = torch.zeros(x.shape[0], down.shape[1])
    for t, j in itertools.product(range(ids.shape[0]), range(ids.shape[1])):
        h = gate_up[ids[t, j]] @ x[t].float()
        a = F.silu(h[:inter]) * h[inter:]
        out[t] += weights[t, j] * (down[ids[t, j]] @ (a.bfloat16().float() if rounds else a))
    return out


@pytest.mark.parametrize(("kind", "inter"), [("fp8", 96), ("fp8", 48), ("fp4", 96)])  # 48: down not in pairs
@pytest.mark.parametrize("dtype", ACTIVATIONS)
def test_moe_matches_the_reference_and_ignores_the_batch(kind, inter, dtype):
    experts, hidden, k, tokens = 6, 64, 3, 19
    w13, w2 = packed_layer(kind, experts, hidden, inter)
    x = randn(tokens, hidden, seed=22).to(dtype)
    weights, ids = moe.softmax_topk(randn(tokens, experts, seed=23), k, normalize=True)
    got = native_packed.moe_packed(x, w13, w2, weights, ids, out_dtype=torch.float32)
    if dtype == torch.bfloat16 and native_packed.bf16_pairs() and inter % 32 == 0:
        # in pairs: the activation rounded to bf16 (where float32 order flips a rounding, by a bf16 step)
        want, unrounded = (
            moe_reference(x, w13, w2, weights, ids, True),
            moe_reference(x, w13, w2, weights, ids, False),
        )
        close(got.to(dtype), want.to(dtype))
        assert (got - want).norm() * 8 < (got - unrounded).norm()
    else:
        close(got, moe.experts_forward(x.float(), decoded(w13), decoded(w2), weights, ids))
    for rows in (slice(0, 1), slice(5, 13)):
        alone = native_packed.moe_packed(x[rows], w13, w2, weights[rows], ids[rows], out_dtype=torch.float32)
        assert torch.equal(alone, got[rows])


@pytest.mark.parametrize("kind", FORMATS)
def test_moe_with_a_limit_clamps_as_deepseek_v4_does(kind):
    experts, hidden, inter, k, tokens, limit = 4, 32, 64, 2, 5, 0.05
    w13, w2 = packed_layer(kind, experts, hidden, inter)
    x = randn(tokens, hidden, seed=24, scale=3.0)  # gates and ups beyond the limit
    weights, ids = moe.softmax_topk(randn(tokens, experts, seed=25), k, normalize=True)
    got = native_packed.moe_packed(x, w13, w2, weights, ids, limit, torch.float32)
    want = moe.packed_experts(x, w13, w2, weights, ids, limit=limit)  # the reference: one expert at a time
    close(got, want)
    assert not torch.allclose(got, moe.packed_experts(x, w13, w2, weights, ids), atol=1e-3)


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("dtype", ACTIVATIONS)
def test_moe_with_the_weight_first_is_deepseek_v4s_expert(kind, dtype):
    """``weight_first``: the routing weight on the activation before the down projection, the
    routed sum in float32, bfloat16 rounded where DeepSeek-V4's reference rounds: that reference
    (``models/deepseek_v4/moe.routed_experts``, one decoded expert at a time) within float32
    summation order, and still the same bits alone as in a batch."""
    from codeagent.backend.models.deepseek_v4.moe import routed_experts

    experts, hidden, inter, k, tokens, limit = 6, 64, 96, 3, 19, 0.5
    w13, w2 = packed_layer(kind, experts, hidden, inter)
    x = randn(tokens, hidden, seed=29, scale=2.0).to(dtype)  # some gates and ups beyond the limit
    weights, ids = moe.softmax_topk(randn(tokens, experts, seed=30), k, normalize=True)
    weights = weights * 1.5  # V4's routed scaling: the weights do not sum to 1
    got = native_packed.moe_packed(x, w13, w2, weights, ids, limit, torch.float32, weight_first=True)
    want = routed_experts(x, w13, w2, weights, ids, limit)
    close(got, want) if dtype == torch.float32 else close(got.to(dtype), want.to(dtype))
    if dtype == torch.bfloat16:  # rounded where the reference rounds: much closer than without
        after = native_packed.moe_packed(x, w13, w2, weights, ids, limit, torch.float32)
        assert (got - want).abs().max() * 8 < (after - want).abs().max()
    for rows in (slice(0, 1), slice(5, 13)):
        alone = native_packed.moe_packed(
            x[rows], w13, w2, weights[rows], ids[rows], limit, torch.float32, weight_first=True
        )
        assert torch.equal(alone, got[rows])


@pytest.mark.parametrize("kind", FORMATS)
def test_experts_forward_runs_packed_experts_natively_for_decode_batches(kind):
    kernels = dispatch.choose("cpu", "native")
    experts, hidden, inter, k = 8, 64, 32, 2
    w13, w2 = packed_layer(kind, experts, hidden, inter)
    for tokens, runs_kernel in ((3, True), (70, False)):
        x = randn(tokens, hidden, seed=26)
        weights, ids = moe.softmax_topk(randn(tokens, experts, seed=27), k, normalize=True)
        before = (native.calls["moe_packed"], native.calls[f"dequantize_{kind}"])
        got = moe.experts_forward(x, w13, w2, weights, ids, kernels)
        close(got, moe.experts_forward(x, decoded(w13), decoded(w2), weights, ids))
        assert native.calls["moe_packed"] == before[0] + runs_kernel
        assert (native.calls[f"dequantize_{kind}"] > before[1]) == (
            not runs_kernel
        )  # experts decoded natively


def test_moe_refuses_what_it_does_not_take():
    w13, w2 = packed_layer("fp8", 2, 32, 32)
    x, ids = randn(1, 32, seed=28), torch.tensor([[0]])
    assert native_packed.fits_moe_packed(x, w13, w2, ids)
    fp4 = packed_layer("fp4", 2, 32, 32)[1]
    assert not native_packed.fits_moe_packed(x, w13, fp4, ids)  # formats mixed
    assert not native_packed.fits_moe_packed(x, w13, w2, torch.zeros(1, 513, dtype=torch.long))
    with pytest.raises(native.NativeError, match="expert id out of range"):
        native_packed.moe_packed(x, w13, w2, torch.ones(1, 1), torch.tensor([[2]]))


@pytest.mark.parametrize("march", ["x86-64", "haswell"])  # the portable decoding; AVX2 + F16C
def test_the_decodings_without_avx512_give_the_same_values(march):
    if platform.machine() != "x86_64":
        pytest.skip("x86-64 targets")
    flags = tuple(f"-march={march}" if f == "-march=native" else f for f in native.FLAGS)
    lib = native.build(native_packed.SOURCE, native_packed.SIGNATURES, flags)
    assert not isinstance(lib, str), lib
    assert lib.ca_packed_int8() == 0
    codes = torch.arange(256, dtype=torch.uint8)
    codes[(codes & 0x7F) == 0x7F] = 0
    for kind, weight, scale in (
        ("fp8", codes.view(16, 16), torch.full((1, 1), 120, dtype=torch.uint8)),
        ("fp4", codes.view(8, 32), torch.tensor([[126, 130]] * 8, dtype=torch.uint8)),
    ):
        k = 16 if kind == "fp8" else 64
        x, out = torch.eye(k), torch.empty(k, weight.shape[0])
        fmt, group = native_packed.FORMATS[kind], 128 if kind == "fp8" else 1
        # int8 asked for (the 1 before the threads): this build has no int8 route, takes the float one
        status = lib.ca_linear_packed(
            k, k, weight.shape[0], x.data_ptr(), weight.data_ptr(), scale.data_ptr(), fmt, 1, group,
            out.data_ptr(), 0, 0, 1, 1,
        )  # fmt: skip
        assert status == 0
        stored = weight.view(torch.float8_e4m3fn) if kind == "fp8" else weight
        assert torch.equal(out.t(), dequantize(stored, scale, torch.float32))


def test_a_model_with_packed_weights_decodes_as_its_reference(qwen3_moe_dir):
    from codeagent.backend.engine import Engine, Request
    from codeagent.backend.layers.sampler import SamplingParams
    from codeagent.backend.loader import load_model

    model = load_model(qwen3_moe_dir).model
    for layer in model.layers:  # routed experts in FP4, the dense MLP in FP8 (the head: FP8 at this width)
        mlp = layer.mlp
        if isinstance(mlp.w13, torch.Tensor):
            w13, w2 = (PackedExperts.quantize(w.detach(), "fp4") for w in (mlp.w13, mlp.w2))
            del mlp.w13, mlp.w2
            mlp.w13, mlp.w2 = w13, w2
        else:
            mlp.w13.pack("fp8")
            mlp.w2.pack("fp8")
    model.lm_head.pack("fp8")
    prompts = [[5, 9, 200, 31], [7, 7, 7, 1, 2, 3, 4, 5, 6]]

    def run(mode: str) -> list[list[int]]:
        model.kernels = dispatch.choose("cpu", mode)
        engine = Engine(model, set())
        return [
            r.token_ids for r in engine.generate([Request(p, SamplingParams(max_tokens=8)) for p in prompts])
        ]

    before = dict(native.calls)
    assert run("native") == run("torch")
    for kernel in ("moe_packed", "linear_fp8"):
        assert native.calls[kernel] > before.get(kernel, 0), kernel


def test_the_bf16_pairs_without_avx512_vbmi_give_the_same_values():
    """Cooper Lake's AVX512-BF16 without VBMI: the other decodings (bias-add and widen-shift-OR,
    FP4 lanes in natural order), every code exactly, with and without scaled tables."""
    if platform.machine() != "x86_64" or "avx512_bf16" not in native_build.cpu_flags().split():
        pytest.skip("needs a CPU with AVX512-BF16")
    flags = tuple("-march=cooperlake" if f == "-march=native" else f for f in native.FLAGS)
    lib = native.build(native_packed.SOURCE, native_packed.SIGNATURES, flags)
    assert not isinstance(lib, str), lib
    assert lib.ca_packed_pairs() == 1 and lib.ca_packed_int8() == 0
    codes = torch.arange(256, dtype=torch.uint8)
    codes[(codes & 0x7F) == 0x7F] = 0
    x = torch.eye(32, dtype=torch.bfloat16)
    for exponent in (0, 120):
        for kind, weight, scale in (
            ("fp8", codes.view(8, 32), torch.full((1, 1), exponent, dtype=torch.uint8)),
            (
                "fp4",
                torch.arange(256, dtype=torch.uint8).view(16, 16),
                torch.full((16, 1), exponent, dtype=torch.uint8),
            ),
        ):
            out = torch.empty(32, weight.shape[0])
            fmt, group = native_packed.FORMATS[kind], 128 if kind == "fp8" else 1
            # int8 asked for (the 1 before the threads): without AVX512-VBMI, the pairs
            status = lib.ca_linear_packed(
                32, 32, weight.shape[0], x.data_ptr(), weight.data_ptr(), scale.data_ptr(), fmt, 1, group,
                out.data_ptr(), 1, 0, 1, 1,
            )  # fmt: skip
            assert status == 0
            stored = weight.view(torch.float8_e4m3fn) if kind == "fp8" else weight
            assert torch.equal(out.t(), dequantize(stored, scale, torch.float32)), (kind, exponent)
