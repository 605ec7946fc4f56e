"""The KV cache per token against hand computations, and against the engine's own pool."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.distributed.layout import Layout
from codeagent.backend.engine import Engine
from codeagent.backend.models.registry import model_class
from codeagent.backend.planning.kv import kv_cost, meta_model
from codeagent.backend.planning.source import shipped_config


def cost(name: str, tp: int = 1, dtype: torch.dtype = torch.bfloat16, ep: bool = False):
    return kv_cost(meta_model(shipped_config(name), dtype), Layout(tp, ep))


def test_qwen3_coder_30b_keys_and_values_per_token():
    # 48 layers x (keys + values) x 4 KV heads x 128 wide x 2 bytes (bf16)
    assert cost("qwen3-coder-30b-a3b").per_token == 48 * 2 * 4 * 128 * 2 == 98304
    assert cost("qwen3-coder-30b-a3b", dtype=torch.float32).per_token == 48 * 2 * 4 * 128 * 4


@pytest.mark.parametrize(("tp", "heads"), [(2, 2), (4, 1), (8, 1)])
def test_qwen3_key_value_heads_split_then_one_per_rank(tp, heads):
    """4 KV heads: 2 a rank at tp=2, 1 at tp=4, and at tp=8 still 1 (each head on 2 ranks)."""
    assert cost("qwen3-coder-30b-a3b", tp).per_token == 48 * 2 * heads * 128 * 2


def test_deepseek_v4_flash_per_token_from_its_compress_ratios():
    """43 layers: 2 sliding, 21 CSA (rate 4), 20 HCA (rate 128); latent 512, indexer keys 128."""
    latents = 43 * 512 * 2  # every token's latent, every layer
    csa_entries = 21 * 512 * 2 / 4  # one 512-wide entry every 4 tokens
    indexer_keys = 21 * 128 * 2 / 4
    # once a 128-token block, each CSA compressor's overlap: float32 [2, rate 4, dim]
    overlaps = 21 * (2 * 4 * 512 * 4 + 2 * 4 * 128 * 4) / 128
    hca_entries = 20 * 512 * 2 / 128
    expected = latents + csa_entries + indexer_keys + overlaps + hca_entries
    flash = cost("deepseek-v4-flash")
    assert flash.per_token == expected == 54272
    assert flash.block_tokens == 128 and flash.block_bytes == 54272 * 128
    assert flash.kinds["latents"] == latents and flash.kinds["indexer keys"] == indexer_keys


def test_deepseek_v4_pro_per_token_and_latents_replicated_under_tp():
    """61 layers: 31 HCA (layers 0, 1 and the odd ones), 30 CSA."""
    expected = 61 * 1024 + 30 * (256 + 64 + 128 + 32) + 31 * 1024 / 128
    assert cost("deepseek-v4-pro").per_token == expected == 77112
    assert cost("deepseek-v4-pro", 8).per_token == expected
    assert cost("deepseek-v4-pro", 8, ep=True).per_token == expected


def test_a_context_costs_whole_blocks():
    flash = cost("deepseek-v4-flash")
    assert flash.bytes_for(1) == flash.bytes_for(128) == flash.block_bytes
    assert flash.bytes_for(129) == 2 * flash.block_bytes
    assert flash.tokens_in(2 * flash.block_bytes - 1) == 128
    assert flash.tokens_in(-5) == 0


@pytest.mark.parametrize("name", ["qwen3-coder-30b-a3b", "deepseek-v4-flash"])
def test_the_planner_and_the_engine_size_a_block_alike(name):
    """The engine's pool over the same (tiny) model allocates the block bytes the planner counts."""
    from codeagent.bench.random_weights import config_for

    raw = config_for(name, tiny=True)
    cls = model_class(raw["architectures"][0])
    model = cls(cls.config_class.from_dict(raw), dtype=torch.float32, device="cpu")
    engine = Engine(model, set(), "cpu", cache=CacheConfig(num_blocks=2))
    planned = kv_cost(meta_model(raw, torch.float32), Layout())
    assert engine.block_size == planned.block_tokens
    assert engine.block_bytes == planned.block_bytes
