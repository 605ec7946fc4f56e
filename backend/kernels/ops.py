"""The kernels' entry points, as the layers call them (imported on first use by ``dispatch``)."""

from __future__ import annotations

from codeagent.backend.kernels.fused_moe import QuantizedExperts, fused_moe
from codeagent.backend.kernels.moe_routing import softmax_topk, sqrt_softplus_route
from codeagent.backend.kernels.norm import rms_norm
from codeagent.backend.kernels.rotary import apply_rotary

__all__ = [
    "QuantizedExperts",
    "apply_rotary",
    "fused_moe",
    "rms_norm",
    "softmax_topk",
    "sqrt_softplus_route",
]
