"""V4-Flash's output head at batch 1, timed apart from the layers: the streams' final collapse
(mHC's head ``fn`` [n, n*D] in float32), the final RMSNorm and the LM head [vocab, D] in bf16, as
the release ships it and the loader keeps it (``layers.linear.head_logits``: the native bf16
kernel for a decode row). Built, timed and freed before the layers are built, so its 1 GB never
shares memory with them. The embedding row a token reads (8 KB) is left out.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from codeagent.backend.kernels.dispatch import Kernels
from codeagent.backend.layers.linear import head_logits
from codeagent.backend.models.deepseek_v4.mhc import head_collapse
from codeagent.backend.models.deepseek_v4.norm import rms_norm


@torch.inference_mode()
def time_head(raw: dict[str, Any], kernels: Kernels, steps: int) -> dict[str, float]:
    """Median seconds of the head on one token's streams, and the bytes it reads."""
    hidden, n, vocab = raw["hidden_size"], raw["hc_mult"], raw["vocab_size"]
    eps, hc_eps = raw.get("rms_norm_eps", 1e-6), raw.get("hc_eps", 1e-6)
    generator = torch.Generator().manual_seed(1)
    head = torch.empty(vocab, hidden, dtype=torch.bfloat16).normal_(0.0, 0.02, generator=generator)
    fn = torch.empty(n, n * hidden).normal_(0.0, 0.02, generator=generator)
    base, scale, norm = torch.zeros(n), torch.ones(1), torch.ones(hidden)
    streams = torch.randn(1, n, hidden, generator=generator).to(torch.bfloat16)

    def run() -> torch.Tensor:
        h = head_collapse(streams, fn, base, scale, hc_eps, eps, kernels)
        return head_logits(rms_norm(h, norm, eps, kernels), head, kernels).float()

    run()
    samples = []
    for _ in range(steps):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return {
        "seconds": statistics.median(samples),
        "bytes": float(head.nbytes + fn.nbytes + norm.nbytes),
        "vocab": vocab,
    }
