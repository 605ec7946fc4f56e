"""Models of released configurations, built directly on a device with random weights.

For speed measurements, where the values of the weights do not matter but their shapes,
dtypes and placement do. ``random_model(raw, dtype, device)`` picks the family's class
from the registry (as the loader does), builds it uninitialised on the device, then fills
every tensor in place, one after another: matrices normal(0, 0.02), norm weights 1, other
vectors (DeepSeek-V4's sinks, router biases, mHC bases and scales) normal(0, 0.1), and
V4's hash-routing tables ``k`` distinct random experts per token (zeros would send every
token to expert 0 and make those layers look cheap). No checkpoint files and no copy on
the host: the peak is the weights themselves.

``CONFIGS`` holds Qwen3-Coder-30B-A3B, DeepSeek-V4-Flash and Qwen3-Next-80B-A3B in their ``config.json``
spellings, written from the published model shapes, not read from a checkpoint: only
the shapes matter here. ``TINY`` holds the same families at tiny shapes (V4's heavy
compression rate cut to 8 so that tiny contexts reach it), for checks on a CPU.
``cut_layers`` keeps the first N layers at full width.

Limits: every weight is stored dense in the model's dtype, so V4's routed experts are bf16
(12.9 GB per Flash layer) rather than the release's FP4, which the loader keeps packed: one
80 GB GPU holds only a few full-width V4 layers. Random routers route about
uniformly; trained ones are skewed, so a batch of real tokens touches fewer experts.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch

from codeagent.backend.models.registry import model_class

QWEN3_CODER = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "vocab_size": 151936,
    "hidden_size": 2048,
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "moe_intermediate_size": 768,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "norm_topk_prob": True,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "rms_norm_eps": 1e-6,
    "rope_theta": 10_000_000.0,
    "max_position_embeddings": 262144,
    "tie_word_embeddings": False,
}

V4_FLASH = {
    "architectures": ["DeepseekV4ForCausalLM"],
    "model_type": "deepseek_v4",
    "vocab_size": 129280,
    "hidden_size": 4096,
    "num_hidden_layers": 43,
    "num_attention_heads": 64,
    "num_key_value_heads": 1,
    "head_dim": 512,
    "qk_rope_head_dim": 64,
    "q_lora_rank": 1024,
    "o_groups": 8,
    "o_lora_rank": 1024,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 6,
    "moe_intermediate_size": 2048,
    "routed_scaling_factor": 1.5,
    "scoring_func": "sqrtsoftplus",
    "swiglu_limit": 10.0,
    "compress_ratios": [0, 0] + [4, 128] * 20 + [4],  # 2 window, then 21 CSA and 20 HCA alternating
    "num_hash_layers": 3,
    "sliding_window": 128,
    "index_n_heads": 64,
    "index_head_dim": 128,
    "index_topk": 512,
    "hc_mult": 4,
    "hc_sinkhorn_iters": 20,
    "hc_eps": 1e-6,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "compress_rope_theta": 160000.0,
    "rope_scaling": {
        "type": "yarn",
        "factor": 16.0,
        "original_max_position_embeddings": 65536,
        "beta_fast": 32,
        "beta_slow": 1,
    },
    "max_position_embeddings": 1048576,
    "tie_word_embeddings": False,
}

QWEN3_NEXT = {
    "architectures": ["Qwen3NextForCausalLM"],
    "model_type": "qwen3_next",
    "vocab_size": 151936,
    "hidden_size": 2048,
    "num_hidden_layers": 48,
    "full_attention_interval": 4,  # three Gated DeltaNet layers, then one gated attention
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "head_dim": 256,
    "partial_rotary_factor": 0.25,
    "intermediate_size": 5120,
    "moe_intermediate_size": 512,
    "shared_expert_intermediate_size": 512,
    "num_experts": 512,
    "num_experts_per_tok": 10,
    "norm_topk_prob": True,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 32,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10_000_000.0,
    "max_position_embeddings": 262144,
    "tie_word_embeddings": False,
}

CONFIGS: dict[str, dict[str, Any]] = {
    "qwen3-coder-30b-a3b": QWEN3_CODER,
    "deepseek-v4-flash": V4_FLASH,
    "qwen3-next-80b-a3b": QWEN3_NEXT,
}

TINY: dict[str, dict[str, Any]] = {
    "qwen3-coder-30b-a3b": {
        **QWEN3_CODER,
        "vocab_size": 512,
        "hidden_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "moe_intermediate_size": 32,
        "num_experts": 8,
        "num_experts_per_tok": 2,
    },
    "deepseek-v4-flash": {
        **V4_FLASH,
        "vocab_size": 512,
        "hidden_size": 64,
        "num_hidden_layers": 5,
        "num_attention_heads": 4,
        "head_dim": 32,
        "qk_rope_head_dim": 8,
        "q_lora_rank": 32,
        "o_groups": 2,
        "o_lora_rank": 16,
        "n_routed_experts": 8,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "compress_ratios": [0, 0, 4, 8, 4],
        "sliding_window": 8,
        "index_n_heads": 4,
        "index_head_dim": 16,
        "index_topk": 4,
    },
    "qwen3-next-80b-a3b": {
        **QWEN3_NEXT,
        "vocab_size": 512,
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 32,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
        "linear_key_head_dim": 16,
        "linear_value_head_dim": 16,
    },
}

MATRIX_STD = 0.02
VECTOR_STD = 0.1
HASH_ROWS_PER_FILL = 8192  # bounds the scratch of one hash-table fill ([rows, experts] floats)


def config_for(name: str, tiny: bool = False, layers: int | None = None) -> dict[str, Any]:
    """The ``config.json`` dict of a named configuration, tiny or full-size, cut to ``layers``."""
    if name not in CONFIGS:
        raise ValueError(f"unknown configuration {name!r}; known: {', '.join(CONFIGS)}")
    raw = copy.deepcopy(TINY[name] if tiny else CONFIGS[name])
    return raw if layers is None else cut_layers(raw, layers)


def cut_layers(raw: dict[str, Any], layers: int) -> dict[str, Any]:
    """The first ``layers`` layers of a configuration, at full width."""
    total = raw["num_hidden_layers"]
    if not 1 <= layers <= total:
        raise ValueError(f"the configuration has {total} layers; keep between 1 and {total}, not {layers}")
    out = copy.deepcopy(raw)
    out["num_hidden_layers"] = layers
    if "compress_ratios" in out:
        out["compress_ratios"] = out["compress_ratios"][:layers]
    if "mlp_only_layers" in out:
        out["mlp_only_layers"] = [i for i in out["mlp_only_layers"] if i < layers]
    return out


def parse_config(raw: dict[str, Any]) -> Any:
    """The family's typed config for a ``config.json`` dict."""
    return model_class(raw["architectures"][0]).config_class.from_dict(raw)


def random_model(raw: dict[str, Any], dtype: torch.dtype, device: str | torch.device, seed: int = 0) -> Any:
    """The family's model for ``raw``, allocated on ``device`` and filled with random weights."""
    cls = model_class(raw["architectures"][0])
    config = cls.config_class.from_dict(raw)
    device = torch.device(device)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    model = cls(config, dtype=dtype, device=device)
    experts = getattr(config, "n_routed_experts", 0)
    with torch.no_grad():
        for name, tensor in model_tensors(model):
            fill_random_(name, tensor, generator, experts)
    return model.eval()


def model_tensors(model: Any) -> Iterable[tuple[str, torch.Tensor]]:
    """Every weight a model holds: V4 keeps them in one flat dict, Qwen3 as parameters."""
    flat = getattr(model, "w", None)
    return flat.items() if isinstance(flat, dict) else model.named_parameters()


def fill_random_(name: str, tensor: torch.Tensor, generator: torch.Generator, experts: int = 0) -> None:
    """Fill one weight in place by the rule its name and shape call for (see the module docstring)."""
    if not tensor.is_floating_point():
        _fill_hash_table(tensor, experts, generator)
    elif name.endswith("norm.weight"):
        tensor.fill_(1.0)
    elif tensor.dim() == 1:
        tensor.normal_(0.0, VECTOR_STD, generator=generator)
    else:
        tensor.normal_(0.0, MATRIX_STD, generator=generator)


def _fill_hash_table(table: torch.Tensor, experts: int, generator: torch.Generator) -> None:
    """table [vocab, k]: per token, k distinct expert ids drawn uniformly from [0, experts)."""
    if experts < table.shape[1]:
        raise ValueError(
            f"a hash table of {table.shape[1]} experts per token needs at least that many experts"
        )
    for start in range(0, table.shape[0], HASH_ROWS_PER_FILL):
        part = table[start : start + HASH_ROWS_PER_FILL]
        scores = torch.rand(part.shape[0], experts, generator=generator, device=table.device)
        part.copy_(scores.argsort(dim=1)[:, : part.shape[1]])
