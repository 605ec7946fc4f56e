"""Linear layers whose weights are allocated uninitialised (the loader fills them), so
building a model costs no time and no memory beyond the weights themselves.

A weight may also be kept packed (``packed_weights.PackedWeight``: FP8 with 128 x 128 block scales, or
FP4 with a scale per 32 inputs), as a release ships it or as an opt-in conversion writes it
(``Linear.pack``): decode-sized CPU products then run the native packed kernels
(``kernels/native_packed``), which never decode the weight into memory; anything else (a GPU,
a prefill-sized batch, a shape they do not take) multiplies by the decoded weight, decoded
for that call only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codeagent.backend.kernels.dispatch import REFERENCE, Kernels
from codeagent.backend.kernels.native_build import NativeCall
from codeagent.backend.packed_weights import PackedWeight

Weight = torch.Tensor | PackedWeight


class Linear(nn.Module):
    def __init__(
        self, in_features: int, out_features: int, dtype: torch.dtype, device: torch.device | str
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(
            torch.empty(out_features, in_features, dtype=dtype, device=device), requires_grad=False
        )

    def forward(self, x: torch.Tensor, kernels: Kernels = REFERENCE) -> torch.Tensor:
        return linear(x, self.weight, kernels)

    def pack(self, kind: str) -> None:
        """Keep the (loaded) weight quantized to ``kind`` ("fp8" or "fp4") from now on, in place of
        its full-precision copy."""
        packed = PackedWeight.quantize(self.weight, kind)
        del self.weight
        self.weight = packed


def linear(x: torch.Tensor, weight: Weight, kernels: Kernels = REFERENCE) -> torch.Tensor:
    """``F.linear`` without bias; decode-sized CPU products run the native kernel."""
    if isinstance(weight, PackedWeight):
        return packed_linear(x, weight, kernels)
    if _native_fits(x, weight, kernels):
        return kernels.native.linear(x, weight)  # type: ignore[union-attr]
    return F.linear(x, weight)


def bound_linear(x: torch.Tensor, weight: Weight, out: torch.Tensor, kernels: Kernels) -> NativeCall | None:
    """The native call ``linear`` (and ``head_logits``) would make for this product, bound into
    ``out`` (x contiguous) for a decode program; None where they would not run a native kernel."""
    if isinstance(weight, PackedWeight):
        packed = kernels.packed
        return (
            packed.linear_call(x, weight, out)
            if packed is not None and packed.fits_linear(x, weight)
            else None
        )
    if _native_fits(x, weight, kernels):
        return kernels.native.linear_call(x, weight, out)  # type: ignore[union-attr]
    return None


def _native_fits(x: torch.Tensor, weight: torch.Tensor, kernels: Kernels) -> bool:
    """Whether the native kernel takes this product: on CPU, 1 to 3 rows of bfloat16 or float32,
    or up to 8 of bfloat16 where the kernel multiplies bf16 in pairs (AVX512-BF16). From 4 rows of
    bfloat16 on the BLAS (AMX / AVX512-BF16) beats the float32 route, and from 16 rows the pairs;
    at one float32 row the kernel streams 2.4x faster than the BLAS on the Zen 4 host (55 against
    23 GB/s; the timings: ``docs/bench/cpu-choices.md``)."""
    native = kernels.native
    if native is None or x.dim() != 2 or x.dtype not in (torch.bfloat16, torch.float32):
        return False
    rows = x.shape[0]
    pairs = x.dtype == torch.bfloat16 and native.bf16_pairs()
    return (rows < 4 or (rows <= 8 and pairs)) and native.fits_linear(x, weight)


def packed_linear(x: torch.Tensor, weight: PackedWeight, kernels: Kernels = REFERENCE) -> torch.Tensor:
    """x [..., K] @ weight^T for a packed weight: the native packed kernel where it takes the
    product, else the weight decoded for this call (natively on CPU, some ten times faster than
    torch's float8 conversion) and the BLAS."""
    packed = kernels.packed
    if packed is not None and packed.fits_linear(x, weight):
        return packed.linear(x, weight)
    if packed is not None and packed.fits_dequantize(weight, x.dtype):
        return F.linear(x, packed.dequantize(weight, x.dtype))
    return F.linear(x, weight.dequantize(x.dtype))


def plain_or_packed(x: torch.Tensor, weight: Weight, kernels: Kernels = REFERENCE) -> torch.Tensor:
    """``F.linear`` for a plain weight (no kernel chosen: a caller's numerics as they were), and
    ``packed_linear`` for a packed one (an opt-in conversion, ``backend/packing.py``)."""
    if isinstance(weight, PackedWeight):
        return packed_linear(x, weight, kernels)
    return F.linear(x, weight)


def grouped_linear(x: torch.Tensor, weight: Weight, kernels: Kernels = REFERENCE) -> torch.Tensor:
    """x [T, G, K], weight [G*R, K] taken as G blocks of R rows -> [T, G, R]: each group of inputs
    through its own rows (DeepSeek-V4's grouped output projection). A packed weight whose groups
    cut no scale block runs one ``packed_linear`` a group (at decode sizes the native kernel, never
    a decoded copy); otherwise one batched product, a packed weight decoded for the call."""
    groups = x.shape[1]
    rows = weight.shape[0] // groups
    if isinstance(weight, PackedWeight) and weight.splits(rows):
        parts = [
            packed_linear(x[:, g], weight.rows(g * rows, (g + 1) * rows), kernels) for g in range(groups)
        ]
        return torch.stack(parts, dim=1)
    return torch.einsum("tgi,gri->tgr", x, decoded(weight, x.dtype, kernels).view(groups, rows, -1))


def decoded(weight: Weight, dtype: torch.dtype, kernels: Kernels = REFERENCE) -> torch.Tensor:
    """A plain weight as it is; a packed one decoded whole into ``dtype`` for the call (natively
    where the packed kernels run), for products that are not a plain linear (an einsum)."""
    if isinstance(weight, torch.Tensor):
        return weight
    packed = kernels.packed
    if packed is not None and packed.fits_dequantize(weight, dtype):
        return packed.dequantize(weight, dtype)
    return weight.dequantize(dtype)


def empty_param(*shape: int, dtype: torch.dtype, device: torch.device | str) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape, dtype=dtype, device=device), requires_grad=False)


def head_logits(h: torch.Tensor, weight: Weight, kernels: Kernels = REFERENCE) -> torch.Tensor:
    """h [N, hidden] -> logits [N, vocab] through ``weight`` [vocab, hidden].

    Decode-sized products on CPU run the native kernel where it takes them; otherwise, for 8
    to 32 rows on CPU, the BLAS's tall-skinny product ``weight @ h.T`` beats the linear kernel,
    which turns compute-bound there (``docs/bench/cpu-choices.md``); elsewhere the plain linear.
    A packed head runs ``packed_linear``."""
    if isinstance(weight, PackedWeight):
        return packed_linear(h, weight, kernels)
    if _native_fits(h, weight, kernels):
        return kernels.native.linear(h, weight)  # type: ignore[union-attr]
    if h.device.type == "cpu" and 8 <= h.shape[0] <= 32:
        return torch.mm(weight, h.t()).t()
    return F.linear(h, weight)
