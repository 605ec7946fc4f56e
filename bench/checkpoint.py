"""Small random Qwen3-MoE models for the CPU benches: a ``config.json`` and a checkpoint on disk.

``qwen3_config`` spells a Qwen3-MoE configuration at the sizes a bench asks for (16 query
heads, 4 KV heads, 4 experts per token, a 4096-token window; a bench may change any of
them, ``bench cpu`` sets Qwen3-30B-A3B's); ``write_checkpoint`` writes random weights for it as sharded safetensors (one shard per layer, one for the embeddings
and head), as a released checkpoint is laid out, so the loader reads it as it would a real
one. Values are normal(0, 0.02) and norms 1: only shapes and sizes matter to the benches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file


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
    q, kv = c["num_attention_heads"], c["num_key_value_heads"]
    p = f"model.layers.{layer}."

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape) * 0.02).to(dtype)

    out = {
        p + "input_layernorm.weight": torch.ones(h, dtype=dtype),
        p + "post_attention_layernorm.weight": torch.ones(h, dtype=dtype),
        p + "self_attn.q_proj.weight": rand(q * d, h),
        p + "self_attn.k_proj.weight": rand(kv * d, h),
        p + "self_attn.v_proj.weight": rand(kv * d, h),
        p + "self_attn.o_proj.weight": rand(h, q * d),
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
