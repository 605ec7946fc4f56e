"""Benchmarks of the embedded runtime on random-weight models built on the spot.

- ``load``: writes a random Qwen3-MoE checkpoint of about ``--size-gb`` (bf16, sharded) and
  measures, in fresh processes, the peak resident memory of loading it against the
  baseline of the same process importing torch and the loader.
- ``generate``: decode speed of ``Engine.generate`` against transformers ``generate`` (with
  its KV cache) on the same small random MoE, same prompt, greedy, in one run. transformers
  is a test dependency: this scenario says so when it is missing.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

LOAD_SCRIPT = """
import resource, sys, time, torch
from codeagent.backend.loader import load_model
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] != "-":
    started = time.perf_counter()
    load_model(__import__("pathlib").Path(sys.argv[1]), dtype=torch.bfloat16)
    print(time.perf_counter() - started)
else:
    print(0.0)
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def qwen3_config(hidden: int, layers: int, experts: int, width: int, vocab: int) -> dict[str, Any]:
    return {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": width * 4,
        "moe_intermediate_size": width,
        "num_hidden_layers": layers,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "head_dim": hidden // 16,
        "num_experts": experts,
        "num_experts_per_tok": 4,
        "norm_topk_prob": True,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "tie_word_embeddings": False,
        "max_position_embeddings": 4096,
        "initializer_range": 0.02,
    }


def layer_tensors(c: dict[str, Any], layer: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    h, d, w = c["hidden_size"], c["head_dim"], c["moe_intermediate_size"]
    p = f"model.layers.{layer}."

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape) * 0.02).to(dtype)

    out = {
        p + "input_layernorm.weight": torch.ones(h, dtype=dtype),
        p + "post_attention_layernorm.weight": torch.ones(h, dtype=dtype),
        p + "self_attn.q_proj.weight": rand(16 * d, h),
        p + "self_attn.k_proj.weight": rand(4 * d, h),
        p + "self_attn.v_proj.weight": rand(4 * d, h),
        p + "self_attn.o_proj.weight": rand(h, 16 * d),
        p + "self_attn.q_norm.weight": torch.ones(d, dtype=dtype),
        p + "self_attn.k_norm.weight": torch.ones(d, dtype=dtype),
        p + "mlp.gate.weight": rand(c["num_experts"], h),
    }
    for e in range(c["num_experts"]):
        out[p + f"mlp.experts.{e}.gate_proj.weight"] = rand(w, h)
        out[p + f"mlp.experts.{e}.up_proj.weight"] = rand(w, h)
        out[p + f"mlp.experts.{e}.down_proj.weight"] = rand(h, w)
    return out


def write_checkpoint(folder: Path, config: dict[str, Any], dtype: torch.dtype = torch.bfloat16) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    h, v = config["hidden_size"], config["vocab_size"]
    save_file(
        {
            "model.embed_tokens.weight": (torch.randn(v, h) * 0.02).to(dtype),
            "lm_head.weight": (torch.randn(v, h) * 0.02).to(dtype),
            "model.norm.weight": torch.ones(h, dtype=dtype),
        },
        folder / "model-embed.safetensors",
    )
    for layer in range(config["num_hidden_layers"]):
        save_file(layer_tensors(config, layer, dtype), folder / f"model-layer{layer:03d}.safetensors")
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def _measure(folder: Path | None) -> tuple[float, int, int]:
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(folder) if folder else "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, rss = proc.stdout.strip().splitlines()
    before, peak = map(int, rss.split())
    return float(seconds), before * 1024, peak * 1024


def bench_load(size_gb: float) -> dict[str, Any]:
    layers = max(1, round(size_gb * 2**30 / (64 * 3 * 1024 * 512 * 2)))
    config = qwen3_config(hidden=1024, layers=layers, experts=64, width=512, vocab=32000)
    with tempfile.TemporaryDirectory(prefix="codeagent-bench-load-") as tmp:
        size = write_checkpoint(Path(tmp) / "model", config)
        _, _, baseline = _measure(None)
        seconds, _, peak = _measure(Path(tmp) / "model")
    return {
        "scenario": "load",
        "checkpoint_bytes": size,
        "layers": layers,
        "load_s": round(seconds, 2),
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
        "peak_minus_baseline_over_checkpoint": round((peak - baseline) / size, 3),
        "machine": machine(),
    }


def bench_generate(prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
    try:
        from transformers import Qwen3MoeConfig as RefConfig
        from transformers import Qwen3MoeForCausalLM as RefModel
    except ImportError as err:
        raise RuntimeError(
            "the generate benchmark compares with transformers: pip install -e '.[test]'"
        ) from err
    from codeagent.backend.engine import Engine, Request
    from codeagent.backend.layers.sampler import SamplingParams
    from codeagent.backend.loader import load_model

    config = qwen3_config(hidden=512, layers=8, experts=32, width=256, vocab=32000)
    torch.manual_seed(0)
    reference = RefModel(RefConfig(**{k: v for k, v in config.items() if k != "architectures"})).eval()
    prompt = torch.randint(0, config["vocab_size"], (prompt_tokens,)).tolist()
    with tempfile.TemporaryDirectory(prefix="codeagent-bench-gen-") as tmp:
        reference.save_pretrained(tmp)
        engine = Engine(load_model(Path(tmp)).model, eos_token_ids=set())
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


def machine() -> str:
    """The CPU's model name (or architecture), torch's thread count and version, for a bench's JSON."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
