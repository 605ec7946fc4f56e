"""The engine bench's random models: one family's built with transformers (seed 0), saved, and
loaded by our runtime, so the same weights serve both sides (``prepared``); and ``Runs``, the
factory of fresh engines over the loaded model that every scenario times.

Families: a random Qwen3-MoE (hidden 512, 8 layers, 32 experts top-4, vocab 32000) and a
random Qwen3-Next of the same width (8 layers in the released 3 Gated DeltaNet : 1 gated
attention pattern, 64 experts top-8 + a shared expert). Limits: CPU and float32 for ours as
loaded here (the decode scenario loads its other dtypes itself); the folder is removed when
the context ends.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codeagent.backend.runtime import Loaded, build_engine, load
from codeagent.bench.checkpoint import qwen3_config
from codeagent.bench.machine import machine

BLOCK = 32  # tokens a KV block holds in the bench's engines
QWEN3_NEXT: dict[str, Any] = {  # the engine bench's size in Qwen3-Next's released pattern
    "vocab_size": 32000,
    "hidden_size": 512,
    "num_hidden_layers": 8,  # layer_types: three linear-attention layers, then one full
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "intermediate_size": 1024,
    "moe_intermediate_size": 256,
    "shared_expert_intermediate_size": 256,
    "num_experts": 64,
    "num_experts_per_tok": 8,
    "norm_topk_prob": True,
    "linear_num_key_heads": 4,
    "linear_num_value_heads": 8,
    "linear_key_head_dim": 64,
    "linear_value_head_dim": 64,
    "linear_conv_kernel_dim": 4,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
}


class Runs:
    """Engines over one loaded model: each scenario times a fresh one (the runtime's engine factory)."""

    def __init__(self, loaded: Loaded, disk: Path) -> None:
        self.loaded, self.disk = loaded, disk

    def engine(self, disk: bool = False) -> Any:
        from codeagent.backend.engine import CacheConfig

        cache = CacheConfig(block_size=BLOCK, memory_bytes=2 * 2**30, disk_folder=self.disk if disk else None)
        return build_engine(self.loaded, set(), cache)

    @staticmethod
    def ttft(engine: Any, prompt: list[int], max_tokens: int = 1) -> Any:
        from codeagent.backend.engine import Request
        from codeagent.backend.layers.sampler import SamplingParams

        return engine.generate([Request(prompt, SamplingParams(max_tokens=max_tokens, ignore_eos=True))])[0]


@dataclass
class Prepared:
    """A family's random model: transformers' (the reference) and ours loaded from its save."""

    family: str
    reference: Any
    reference_class: Any
    description: str
    folder: Path
    run: Runs

    def header(self) -> dict[str, Any]:
        from codeagent.backend.kernels.dispatch import kernels_in_use

        return {
            "benchmark": "engine",
            "family": self.family,
            "model": self.description,
            "parameters": sum(p.numel() for p in self.reference.parameters()),
            "machine": machine(),
            "kernels": kernels_in_use(),
            "date": time.strftime("%Y-%m-%d"),
            "kv_bytes_per_token": self.run.engine().block_bytes // BLOCK,
        }


@contextmanager
def prepared(family: str, positions: int) -> Iterator[Prepared]:
    """``family``'s random model saved in a temporary folder and loaded in float32 (removed after)."""
    model, model_class, description = reference(family, max(4096, positions))
    with tempfile.TemporaryDirectory(prefix="codeagent-bench-engine-") as tmp:
        folder = Path(tmp) / "model"
        model.save_pretrained(folder)
        run = Runs(load(folder, "float32", "cpu"), Path(tmp) / "kv")
        yield Prepared(family, model, model_class, description, folder, run)


def reference(family: str, positions: int) -> tuple[Any, Any, str]:
    """transformers' random model of ``family`` (seed 0), its class, and its description."""
    try:
        import transformers
    except ImportError as err:
        raise RuntimeError(
            "the engine benchmark compares with transformers: pip install -e '.[test]'"
        ) from err
    torch.manual_seed(0)
    if family == "qwen3-next":
        config = transformers.Qwen3NextConfig(**QWEN3_NEXT, max_position_embeddings=positions)
        return (
            transformers.Qwen3NextForCausalLM(config).eval(),
            transformers.Qwen3NextForCausalLM,
            "random Qwen3-Next, hidden 512, 8 layers (3 Gated DeltaNet : 1 gated attention), "
            "64 experts top-8 + a shared expert, vocab 32000 (float32 unless noted)",
        )
    config = qwen3_config(hidden=512, layers=8, experts=32, width=256, vocab=32000)
    config["max_position_embeddings"] = positions
    settings = {k: v for k, v in config.items() if k != "architectures"}
    return (
        transformers.Qwen3MoeForCausalLM(transformers.Qwen3MoeConfig(**settings)).eval(),
        transformers.Qwen3MoeForCausalLM,
        "random Qwen3-MoE, hidden 512, 8 layers, 32 experts top-4, vocab 32000 (float32 unless noted)",
    )
