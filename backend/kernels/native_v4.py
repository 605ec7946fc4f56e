"""Native CPU kernels for DeepSeek-V4's decode glue: in ``native_v4.c`` the mHC mixing weights
(sigmoids and Sinkhorn) from the logits, the collapse of the streams into a sublayer's input and
the expansion of its output back into the streams, the interleaved rotary and V4's RMSNorms; in
``native_v4_attention.c`` the attention with a sink over a sequence's keys. One call each in place
of the ~150 torch operators a layer they replace.

Built and loaded as ``native`` builds ``native.c`` (the same compiler, cache folder and OpenMP
runtime), with FMA contraction off. The references are ``models/deepseek_v4/mhc.py``'s
``hc_weights``, ``collapse`` and ``expand``, ``attention.py``'s ``attend``, ``rope.py``'s
``apply_interleaved_rope`` and ``norm.py``'s norms; these differ from them by the exponential and
the order of sums (a few float32 roundings; the rotary gives their bits), and give a token the
same bits alone or in a batch. ``fits`` sends anything but contiguous CPU streams of float32 or
bfloat16 with up to ``MAX_STREAMS`` streams to the references; ``fits_attention`` anything but
bfloat16 heads of a multiple of 32 channels (up to ``MAX_DIM``) in groups of ``GROUP`` on a CPU
with AVX512-BF16; ``fits_rope`` and ``fits_norm`` anything but float32 / bfloat16 CPU tensors.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from codeagent.backend.kernels import native

SOURCE = Path(__file__).with_name("native_v4.c")
ATTENTION_SOURCE = Path(__file__).with_name("native_v4_attention.c")
FLAGS = (*native.FLAGS, "-ffp-contract=off")
MAX_STREAMS = 16  # native_v4.c's MAX_STREAMS
MAX_DIM = 1024  # native_v4_attention.c's MAX_DIM
GROUP = 4  # native_v4_attention.c's GROUP: heads a sink-attention task takes
DTYPES = {torch.float32: 0, torch.bfloat16: 1}

_I, _F, _P = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
SIGNATURES: native.Signatures = {  # native_v4.c's entry points: result, arguments
    "ca_hc_weights": (_I, [_I, _I, _P, _P, _P, _I, _F, _P, _P, _P]),
    "ca_hc_collapse": (None, [_I, _I, _I, _P, _P, _P, _I, _I]),
    "ca_hc_expand": (None, [_I, _I, _I, _P, _I, _P, _P, _P, _P, _I, _I]),
    "ca_interleaved_rope": (None, [_I, _I, _I, _I, _P, _P, _P, _P, _I, _I]),
    "ca_v4_rms_norm": (None, [ctypes.c_long, _I, _P, _P, _P, _F, _I, _I]),
}
ATTENTION_SIGNATURES: native.Signatures = {  # native_v4_attention.c's
    "ca_sink_attention": (_I, [_I, _I, _I, _I, _P, _P, _P, _P, _F, _P, _I]),
    "ca_has_sink_attention": (_I, []),
}

LIBRARY = native.Library(SOURCE, SIGNATURES, FLAGS)
ATTENTION = native.Library(ATTENTION_SOURCE, ATTENTION_SIGNATURES, FLAGS)
_lib = LIBRARY.lib


def problem() -> str | None:
    """Why these kernels are unavailable here, or None (builds them on first call). The sink
    attention's library is checked apart (``has_attention``): without it the model runs that
    layer's reference and keeps the rest."""
    return LIBRARY.problem()


def fits(streams: torch.Tensor) -> bool:
    """Whether these kernels take streams [T, n, D]: CPU, float32 or bfloat16, contiguous."""
    return (
        streams.dim() == 3
        and streams.device.type == "cpu"
        and streams.dtype in DTYPES
        and 0 < streams.shape[1] <= MAX_STREAMS
        and streams.is_contiguous()
    )


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).contiguous()


def hc_weights(
    logits: torch.Tensor, scale: torch.Tensor, base: torch.Tensor, n: int, iters: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits [T, (2 + n) * n] -> pre [T, n], post [T, n], comb [T, n, n] (float32)."""
    t = logits.shape[0]
    logits, scale, base = _f32(logits), _f32(scale), _f32(base)
    pre, post = torch.empty(t, n), torch.empty(t, n)
    comb = torch.empty(t, n, n)
    native.calls["hc_weights"] += 1
    status = _lib().ca_hc_weights(
        t, n, logits.data_ptr(), scale.data_ptr(), base.data_ptr(), iters, eps,
        pre.data_ptr(), post.data_ptr(), comb.data_ptr(),
    )  # fmt: skip
    native.check("hc_weights", status, {-2: f"more than {MAX_STREAMS} streams"})
    return pre, post, comb


def collapse(streams: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """streams [T, n, D], pre [T, n] -> [T, D] in the streams' dtype."""
    t, n, d = streams.shape
    pre = _f32(pre)
    out = torch.empty(t, d, dtype=streams.dtype)
    native.calls["hc_collapse"] += 1
    _lib().ca_hc_collapse(
        t,
        n,
        d,
        streams.data_ptr(),
        pre.data_ptr(),
        out.data_ptr(),
        DTYPES[streams.dtype],
        torch.get_num_threads(),
    )
    return out


def expand(out: torch.Tensor, streams: torch.Tensor, post: torch.Tensor, comb: torch.Tensor) -> torch.Tensor:
    """A sublayer's output out [T, D] back into streams [T, n, D]: post_k out + sum_j comb[j, k] X_j."""
    t, n, d = streams.shape
    y = (
        out.contiguous()
        if out.dtype in (torch.float32, streams.dtype)
        else out.to(torch.float32).contiguous()
    )
    post, comb = _f32(post), _f32(comb)
    result = torch.empty_like(streams)
    native.calls["hc_expand"] += 1
    _lib().ca_hc_expand(
        t, n, d, y.data_ptr(), DTYPES[y.dtype], streams.data_ptr(), post.data_ptr(), comb.data_ptr(),
        result.data_ptr(), DTYPES[streams.dtype], torch.get_num_threads(),
    )  # fmt: skip
    return result


@functools.cache
def has_attention() -> bool:
    """Whether ``sink_attention`` runs here (its library builds and has AVX512-BF16)."""
    return ATTENTION.problem() is None and bool(ATTENTION.lib().ca_has_sink_attention())


def fits_attention(q: torch.Tensor, keys: torch.Tensor) -> bool:
    """Whether ``sink_attention`` takes q [T, H, D] over keys [L, D]: CPU, both bfloat16, D a
    multiple of 32 up to ``MAX_DIM``, H a multiple of ``GROUP``, and AVX512-BF16 here."""
    return (
        q.dim() == 3
        and keys.dim() == 2
        and q.device.type == "cpu"
        and keys.device.type == "cpu"
        and q.dtype == keys.dtype == torch.bfloat16
        and q.shape[2] == keys.shape[1]
        and q.shape[2] % 32 == 0
        and q.shape[2] <= MAX_DIM
        and q.shape[1] % GROUP == 0
        and has_attention()
    )


def sink_attention(
    q: torch.Tensor, keys: torch.Tensor, visible: torch.Tensor, sinks: torch.Tensor, scale: float
) -> torch.Tensor:
    """q [T, H, D]; keys (= values) [L, D], both bfloat16; visible [T, L] bool; sinks [H] -> [T, H, D]."""
    t, heads, d = q.shape
    if visible.shape != (t, keys.shape[0]) or sinks.numel() != heads:
        raise ValueError(
            f"sink_attention: visible {tuple(visible.shape)}, sinks {tuple(sinks.shape)} for q {tuple(q.shape)}, keys {tuple(keys.shape)}"
        )
    q, keys = q.contiguous(), keys.contiguous()
    seen = visible.to(torch.uint8).contiguous()
    sinks = _f32(sinks)
    out = torch.empty_like(q)
    native.calls["sink_attention"] += 1
    status = ATTENTION.lib().ca_sink_attention(
        t, heads, d, keys.shape[0], q.data_ptr(), keys.data_ptr(), seen.data_ptr(), sinks.data_ptr(), scale,
        out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    native.check(
        "sink_attention",
        status,
        {
            -1: "out of memory",
            -2: f"needs AVX512-BF16, bfloat16 heads of a multiple of 32 up to {MAX_DIM}, {GROUP} a task",
        },
    )
    return out


def fits_rope(x: torch.Tensor, cos: torch.Tensor) -> bool:
    """Whether ``interleaved_rope`` takes x [T, D] or [T, M, D] with cos [T, r] or [T, 1, r]:
    CPU, float32 or bfloat16, contiguous, r even and at most D."""
    r = cos.shape[-1]
    return (
        x.dim() in (2, 3)
        and x.device.type == "cpu"
        and x.dtype in DTYPES
        and x.is_contiguous()
        and cos.numel() == x.shape[0] * r
        and r % 2 == 0
        and 0 < r <= x.shape[-1]
    )


def interleaved_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``rope.apply_interleaved_rope``: the last r channels of x [T, (M,) D] rotated pairwise by
    cos, sin [T, r] (broadcast over M) -> x's shape and dtype."""
    t, d, r = x.shape[0], x.shape[-1], cos.shape[-1]
    if sin.shape != cos.shape:
        raise ValueError(f"interleaved_rope: sin {tuple(sin.shape)} for cos {tuple(cos.shape)}")
    m = x.shape[1] if x.dim() == 3 else 1
    cos, sin = _f32(cos), _f32(sin)
    out = torch.empty_like(x)
    native.calls["interleaved_rope"] += 1
    _lib().ca_interleaved_rope(
        t,
        m,
        d,
        r,
        x.data_ptr(),
        cos.data_ptr(),
        sin.data_ptr(),
        out.data_ptr(),
        DTYPES[x.dtype],
        torch.get_num_threads(),
    )
    return out


def fits_norm(x: torch.Tensor, weight: torch.Tensor | None) -> bool:
    """Whether ``rms_norm`` takes x [..., D] (and a float32 weight [D], or none): CPU, float32 or
    bfloat16."""
    return (
        x.dim() >= 1
        and x.device.type == "cpu"
        and x.dtype in DTYPES
        and x.shape[-1] > 0
        and (weight is None or (weight.dtype == torch.float32 and weight.shape == (x.shape[-1],)))
    )


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """``norm.rms_norm`` (a float32 weight) or ``norm.unweighted_rms_norm`` (None) over the last
    dimension -> x's shape and dtype."""
    x = x.contiguous()
    d = x.shape[-1]
    out = torch.empty_like(x)
    native.calls["v4_rms_norm"] += 1
    _lib().ca_v4_rms_norm(
        x.numel() // d, d, x.data_ptr(), None if weight is None else weight.contiguous().data_ptr(),
        out.data_ptr(), eps, DTYPES[x.dtype], torch.get_num_threads(),
    )  # fmt: skip
    return out
