"""Our packed variants for ``bench cpu``: the loaded bf16 model quantized in place.

- ``fp8``: attention's projections, the routed experts and the LM head in FP8 e4m3 with
  128 x 128 block scales (DeepSeek's and Qwen's FP8 layout), against llama.cpp's Q8_0;
- ``fp4``: the routed experts in FP4 e2m1 with a UE8M0 scale per 32 (DeepSeek-V4's experts),
  attention and the head in FP8, against Q4_K_M (which keeps its own mix of 4 and 6 bits).

The router, norms and embedding stay bf16 (small, or read one row a token). Conversion uses
what the layers offer (``Linear.pack``, ``PackedExperts.quantize``), so the engine then runs
the native packed kernels where they take the batch. ``pack`` returns each converted weight's
bytes before and after, so the roofline's bytes per token follow the packed sizes.

Limits: a stand-in for the backend's own opt-in load-time conversion; it reaches into the
Qwen3-MoE model's layers (``attn.qkv``, ``attn.o``, ``mlp.w13``/``w2``, ``lm_head``) and
refuses a model whose experts are split between homes (``--cpu-experts``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from codeagent.backend.quant import PackedExperts

VARIANTS = {"fp8": ("fp8", "fp8"), "fp4": ("fp8", "fp4")}  # name -> (dense and head, experts)


@dataclass(frozen=True, slots=True)
class Converted:
    kind: str  # "dense" (read whole every step) or "expert" (routed: a share read)
    before: int  # bytes in bf16
    after: int  # bytes packed, scales included


def pack(model: torch.nn.Module, variant: str) -> list[Converted]:
    """Quantize ``model`` (a loaded bf16 Qwen3-MoE) in place as ``variant`` says."""
    dense, experts = VARIANTS[variant]
    out: list[Converted] = []
    for layer in model.layers:  # type: ignore[union-attr]
        for linear in (layer.attn.qkv, layer.attn.o):
            before = linear.weight.nbytes
            linear.pack(dense)
            out.append(Converted("dense", before, linear.weight.nbytes))
        mlp = layer.mlp
        if getattr(mlp, "homes", None) is not None or not isinstance(mlp.w13, torch.Tensor):
            raise RuntimeError(f"cannot pack {type(mlp).__name__}: only routed experts in one home")
        w13, w2 = (PackedExperts.quantize(w.detach(), experts) for w in (mlp.w13, mlp.w2))
        out += [Converted("expert", w.nbytes, p.nbytes) for w, p in ((mlp.w13, w13), (mlp.w2, w2))]
        del mlp.w13, mlp.w2
        mlp.w13, mlp.w2 = w13, w2
    before = model.lm_head.weight.nbytes  # type: ignore[union-attr]
    model.lm_head.pack(dense)  # type: ignore[union-attr, operator]
    out.append(Converted("dense", before, model.lm_head.weight.nbytes))  # type: ignore[union-attr]
    return out


def saved_bytes(converted: list[Converted], expert_share: float) -> float:
    """Bytes a decode step reads fewer than in bf16: dense weights whole, experts by share."""
    return sum((c.before - c.after) * (expert_share if c.kind == "expert" else 1.0) for c in converted)
