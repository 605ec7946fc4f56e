"""Native CPU kernels for linear-attention layers (``native_recurrent.c``): Qwen3-Next's gated delta
rule at decode, and its short causal convolution (SiLU) as one token's step and over a prompt.

- ``gated_delta_step``: B sequences, one token each, every (sequence, value head) state
  [Dk, Dv] float32 updated in place, as ``layers.gated_delta.gated_delta_step``; the state is read
  and written once (decode is bound by streaming the states: 2 MiB a sequence and layer at
  Qwen3-Next-80B's 32 heads of 128 x 128);
- ``causal_conv1d_step``: B sequences' one new input each, the window states shifted in place, as
  ``layers.gated_delta.causal_conv1d_step``;
- ``causal_conv1d``: one sequence's prompt, its window state left holding the last K - 1 inputs,
  as ``layers.gated_delta.causal_conv1d``; its outputs are the very bits the step gives token by
  token.

Built and loaded as ``native`` builds ``native.c`` (the same compiler, cache folder and OpenMP
runtime), with FMA contraction off (``-ffp-contract=off``) so that each element's arithmetic is
fixed whatever the vectorizer chooses. Numerics: activations float32 or bfloat16 (outputs in
the same dtype), g and beta taken as float32, everything computed in float32 over a fixed order
and rounded once, so a sequence's result is the same bits alone or in a batch; they differ from
the references by float32 summation order (the convolution rounds where its reference does: the
inputs, the sum and the SiLU to the weight's dtype, a window value through the state's dtype; its
SiLU takes the kernel's own exponential, within two float32 roundings). Limits: head sizes up to
``MAX_DIM``, windows up to ``MAX_WIDTH``, value heads a multiple of query/key heads (value head h reads query/key head
h // (H / Hk), as ``repeat_interleave`` gives), states and weights contiguous; the ``fits_*``
checks send anything else to the references. The chunked prefill of the delta rule is not here
(compute-bound: the references' batched products).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from codeagent.backend.kernels import native

SOURCE = Path(__file__).with_name("native_recurrent.c")
FLAGS = (*native.FLAGS, "-ffp-contract=off")
MAX_DIM = 256  # native_recurrent.c's MAX_DIM
MAX_WIDTH = 16  # native_recurrent.c's MAX_WIDTH
DTYPES = {torch.float32: 0, torch.bfloat16: 1}

_I, _L, _P = ctypes.c_int, ctypes.c_long, ctypes.c_void_p
SIGNATURES: native.Signatures = {  # native_recurrent.c's entry points: result, arguments
    "ca_gated_delta_step": (_I, [_I, _I, _I, _I, _I, _P, _P, _P, _P, _P, _P, _P, _I, _I]),
    "ca_conv_step": (_I, [_I, _I, _I, _P, _L, _P, _P, _P, _I, _I, _I, _I]),
    "ca_conv": (_I, [_I, _I, _I, _P, _L, _P, _P, _P, _I, _I, _I, _I]),
}
_REASONS = {-2: "sizes over the kernel's limits"}


LIBRARY = native.Library(SOURCE, SIGNATURES, FLAGS)
_lib = LIBRARY.lib


def problem() -> str | None:
    """Why these kernels are unavailable here, or None (builds them on first call)."""
    return LIBRARY.problem()


def _on_cpu(*tensors: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" for t in tensors)


def fits_gated_delta_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    states: torch.Tensor,
) -> bool:
    """Whether ``gated_delta_step`` takes this step: CPU, one activation dtype it knows, head sizes
    within the limits, contiguous float32 states of the values' shape."""
    if q.dim() != 3 or v.dim() != 3:
        return False
    b, heads, dv = v.shape
    dk = q.shape[-1]
    return (
        _on_cpu(q, k, v, g, beta, states)
        and v.dtype in DTYPES
        and q.dtype == k.dtype == v.dtype
        and q.shape == k.shape
        and q.shape[0] == b
        and q.shape[1] > 0
        and heads % q.shape[1] == 0
        and 0 < dk <= MAX_DIM
        and 0 < dv <= MAX_DIM
        and g.shape == beta.shape == (b, heads)
        and states.dtype == torch.float32
        and states.shape == (b, heads, dk, dv)
        and states.is_contiguous()
    )


def gated_delta_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    states: torch.Tensor,
) -> torch.Tensor:
    """q, k [B, Hk, Dk]; v [B, H, Dv]; g (log decay), beta [B, H]; states [B, H, Dk, Dv] float32,
    updated in place -> out [B, H, Dv] in v's dtype."""
    b, heads, dv = v.shape
    k_heads, dk = q.shape[1:]
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    g, beta = g.to(torch.float32).contiguous(), beta.to(torch.float32).contiguous()
    out = torch.empty_like(v)
    native.calls["gated_delta_step"] += 1
    status = _lib().ca_gated_delta_step(
        b,
        k_heads,
        heads,
        dk,
        dv,
        q.data_ptr(),
        k.data_ptr(),
        v.data_ptr(),
        g.data_ptr(),
        beta.data_ptr(),
        states.data_ptr(),
        out.data_ptr(),
        DTYPES[v.dtype],
        torch.get_num_threads(),
    )
    native.check("gated_delta_step", status, _REASONS)
    return out


def fits_conv(x: torch.Tensor, weight: torch.Tensor, state: torch.Tensor) -> bool:
    """Whether ``causal_conv1d`` / ``causal_conv1d_step`` take this: CPU, float32 or bfloat16
    tensors, x [rows, C] with its channels contiguous, weight [C, K] ([C, 1, K] as a Conv1d
    keeps it) with K up to ``MAX_WIDTH``, a contiguous state of the x's rows' [C, K - 1] windows
    (state [C, K - 1] for a prompt, [B, C, K - 1] for B sequences' steps)."""
    if x.dim() != 2 or weight.dim() not in (2, 3) or state.dim() not in (2, 3):
        return False
    c, width = weight.shape[0], weight.shape[-1]
    windows = (c, width - 1) if state.dim() == 2 else (x.shape[0], c, width - 1)
    return (
        _on_cpu(x, weight, state)
        and all(t.dtype in DTYPES for t in (x, weight, state))
        and x.shape[1] == c
        and x.stride(1) == 1
        and weight.numel() == c * width
        and weight.is_contiguous()
        and 0 < width <= MAX_WIDTH
        and state.shape == windows
        and state.is_contiguous()
    )


def causal_conv1d_step(x: torch.Tensor, weight: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """x [B, C] (one new input a sequence); weight [C, K]; states [B, C, K - 1] (the last K - 1
    inputs, oldest first), shifted in place -> silu(conv) [B, C] in x's dtype."""
    return _conv("conv_step", x, weight, states)


def causal_conv1d(
    x: torch.Tensor, weight: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence's prompt: x [T, C]; weight [C, K]; state [C, K - 1] (the inputs before x, oldest
    first), left holding the last K - 1 inputs -> (silu(conv) [T, C] in x's dtype, state)."""
    return _conv("conv", x, weight, state), state


def _conv(kernel: str, x: torch.Tensor, weight: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    rows, c = x.shape
    width = weight.shape[-1]
    out = torch.empty(rows, c, dtype=x.dtype)
    native.calls[kernel] += 1
    status = getattr(_lib(), f"ca_{kernel}")(
        rows,
        c,
        width,
        x.data_ptr(),
        x.stride(0),
        weight.data_ptr(),
        state.data_ptr(),
        out.data_ptr(),
        DTYPES[x.dtype],
        DTYPES[weight.dtype],
        DTYPES[state.dtype],
        torch.get_num_threads(),
    )
    native.check(kernel, status, _REASONS)
    return out
