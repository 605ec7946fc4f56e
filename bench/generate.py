"""``codeagent bench generate``: decode speed of the engine against transformers on a small random MoE.

``Engine.generate`` against transformers ``generate`` (with its KV cache) on the same
random Qwen3-MoE (hidden 512, 8 layers, 32 experts top-4, fp32), same prompt, greedy, in
one run. transformers is a test dependency: this scenario says so when it is missing.
``reference_generate`` is the transformers side, shared with ``bench.engine``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from codeagent.bench.checkpoint import qwen3_config
from codeagent.bench.machine import machine


def bench_generate(prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
    try:
        from transformers import Qwen3MoeConfig as RefConfig
        from transformers import Qwen3MoeForCausalLM as RefModel
    except ImportError as err:
        raise RuntimeError(
            "the generate benchmark compares with transformers: pip install -e '.[test]'"
        ) from err
    from codeagent.backend.engine import Request
    from codeagent.backend.layers.sampler import SamplingParams
    from codeagent.backend.runtime import build_engine, load

    config = qwen3_config(hidden=512, layers=8, experts=32, width=256, vocab=32000)
    torch.manual_seed(0)
    reference = RefModel(RefConfig(**{k: v for k, v in config.items() if k != "architectures"})).eval()
    prompt = torch.randint(0, config["vocab_size"], (prompt_tokens,)).tolist()
    with tempfile.TemporaryDirectory(prefix="codeagent-bench-gen-") as tmp:
        reference.save_pretrained(tmp)
        engine = build_engine(load(Path(tmp), "float32", "cpu"), set())
        ours = engine.generate([Request(prompt, SamplingParams(max_tokens=new_tokens))])[0]
    started = time.perf_counter()
    theirs = reference_generate(reference, prompt, new_tokens)
    reference_s = time.perf_counter() - started
    ours_tps = (new_tokens - 1) / ours.decode_s
    return {
        "scenario": "generate",
        "model": "random Qwen3-MoE, hidden 512, 8 layers, 32 experts top-4, fp32",
        "parameters": sum(p.numel() for p in reference.parameters()),
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "ours_prefill_s": round(ours.prefill_s, 3),
        "ours_decode_tokens_per_s": round(ours_tps, 2),
        "transformers_tokens_per_s_incl_prefill": round(new_tokens / reference_s, 2),
        "ours_tokens_per_s_incl_prefill": round(new_tokens / (ours.prefill_s + ours.decode_s), 2),
        "same_tokens": theirs == ours.token_ids,
        "torch_threads": torch.get_num_threads(),
        "machine": machine(),
    }


def reference_generate(reference: Any, prompt: list[int], new_tokens: int) -> list[int]:
    """transformers ``generate``, greedy, exactly ``new_tokens`` new tokens: the reference side of a bench."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = reference.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
    return out[0, len(prompt) :].tolist()
