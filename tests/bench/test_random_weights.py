"""Random-weight models of the released configurations, and the roofline's byte and FLOP counts.

Only tiny shapes are built here; the full-size configurations are checked through their
byte counts (which need no tensors) against the published sizes.
"""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.models.base import SeqSlice
from codeagent.backend.models.deepseek_v4.config import CSA, HCA, SLIDING, DeepseekV4Config
from codeagent.backend.models.qwen3_moe import Qwen3MoeConfig
from codeagent.bench import roofline
from codeagent.bench.random_weights import CONFIGS, config_for, model_tensors, parse_config, random_model

NAMES = sorted(CONFIGS)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_models_build_with_random_weights_and_run(name):
    raw = config_for(name, tiny=True)
    model = random_model(raw, torch.float32, "cpu", seed=3)
    for key, tensor in model_tensors(model):
        if tensor.is_floating_point():
            assert torch.isfinite(tensor).all(), key
            if key.endswith("norm.weight"):
                assert torch.equal(tensor, torch.ones_like(tensor)), key
            elif tensor.dim() > 1:
                assert tensor.std() > 0, key
    state = model.new_state()
    ids = torch.randint(0, raw["vocab_size"], (40,))
    logits = model(ids, torch.arange(40), [SeqSlice(state, 40)])
    assert logits.shape == (1, raw["vocab_size"]) and torch.isfinite(logits).all()


def test_the_same_seed_gives_the_same_weights():
    raw = config_for("qwen3-coder-30b-a3b", tiny=True)
    a, b = (dict(model_tensors(random_model(raw, torch.float32, "cpu", seed=5))) for _ in range(2))
    c = dict(model_tensors(random_model(raw, torch.float32, "cpu", seed=6)))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["embed"], c["embed"])


def test_v4_hash_tables_route_to_distinct_random_experts():
    raw = config_for("deepseek-v4-flash", tiny=True)
    model = random_model(raw, torch.float32, "cpu")
    tables = {k: t for k, t in model_tensors(model) if k.endswith("tid2eid")}
    assert len(tables) == raw["num_hash_layers"]
    for table in tables.values():
        assert table.min() >= 0 and table.max() < raw["n_routed_experts"]
        assert all(len(set(row)) == len(row) for row in table.tolist())  # k distinct experts per token
        assert len(set(table[:, 0].tolist())) > 1  # not every token to one expert


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weight_bytes_are_what_building_allocates(name, dtype):
    raw = config_for(name, tiny=True)
    model = random_model(raw, dtype, "cpu")
    allocated = sum(t.numel() * t.element_size() for _, t in model_tensors(model))
    assert roofline.weight_bytes(parse_config(raw), dtype) == allocated


def test_full_size_byte_counts_match_the_published_sizes():
    qwen = parse_config(config_for("qwen3-coder-30b-a3b"))
    assert 30.4e9 < roofline.weight_bytes(qwen, torch.bfloat16) / 2 < 30.6e9  # 30.5B parameters
    # about 3.3B parameters active per token at batch 1 (A3B), the LM head included
    assert 3.0e9 < roofline.decode_weight_bytes(qwen, torch.bfloat16, 1) / 2 < 3.4e9
    v4 = parse_config(config_for("deepseek-v4-flash", layers=4))
    per_layer = 256 * 3 * 2048 * 4096 * 2  # routed experts alone, bf16
    assert 4 * per_layer < roofline.weight_bytes(v4, torch.bfloat16) < 4 * per_layer * 1.1


def hand_qwen3() -> Qwen3MoeConfig:
    return Qwen3MoeConfig(
        vocab_size=100, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        head_dim=4, moe_intermediate_size=6, intermediate_size=6, num_experts=4, num_experts_per_tok=2,
    )  # fmt: skip


def test_qwen3_decode_bytes_by_hand():
    c, bf16 = hand_qwen3(), torch.bfloat16
    # per layer, bytes (bf16): norms 8*2 + 8*2, qkv (2+1+1)*4 x 8 = 128 el, o 8 x 8 = 64 el,
    # q/k norms 4*2 each, router 4 x 8 = 32 el; one expert = (12 x 8 + 8 x 6) el = 144 el = 288 B
    dense_layer = 16 + 16 + 256 + 128 + 8 + 8 + 64
    head_and_norm = 100 * 8 * 2 + 16
    one_row = 8 * 2
    # batch 1: 2 experts per layer, one embedding row
    assert roofline.decode_weight_bytes(c, bf16, 1) == one_row + head_and_norm + 2 * (dense_layer + 2 * 288)
    # K and V of 1 head x 4 dims per token and layer: 10 tokens -> 2 layers x 2 x 4 x 2 B x 10
    assert roofline.kv_read_bytes(c, bf16, 10) == 320
    assert roofline.decode_bytes(c, bf16, 1, 10) == 3776 + 320
    # batch 2: 4 x (1 - (1 - 2/4)^2) = 3 experts expected per layer, two embedding rows
    assert roofline.distinct_experts(4, 2, 2) == 3
    assert (
        roofline.decode_bytes(c, bf16, 2, 10)
        == 2 * one_row + head_and_norm + 2 * (dense_layer + 3 * 288) + 640
    )


def test_qwen3_prefill_flops_by_hand():
    c = hand_qwen3()
    # per token and layer, matmul elements: qkv 128 + o 64 + router 32 + experts (384 + 192) x 2/4
    per_token = 2 * 2 * (128 + 64 + 32 + 288)
    attention = 2 * 4 * 2 * 4 * (1 + 2 + 3)  # layers x (QK + PV) x heads x head_dim x causal pairs
    head = 2 * 100 * 8  # the last token's logits only
    assert roofline.prefill_flops(c, 3) == 3 * per_token + attention + head


def test_v4_state_bytes_by_hand():
    c = parse_config(config_for("deepseek-v4-flash", tiny=True))
    assert isinstance(c, DeepseekV4Config)
    assert c.layer_types == [SLIDING, SLIDING, CSA, HCA, CSA] and c.sliding_window == 8
    f32 = 4 * 32  # one 32-wide latent or entry in float32
    sliding = 8 * f32  # the window: min(40, 8) latents
    csa = (8 + min(40 // 4, 4)) * f32 + (40 // 4) * 16 * 4  # window, top-4 entries, every indexer key
    hca = (8 + 40 // 8) * f32  # window and every entry of rate 8
    assert roofline.kv_read_bytes(c, torch.float32, 40) == 2 * sliding + 2 * csa + hca


def test_batch_one_reads_exactly_k_experts():
    assert roofline.distinct_experts(128, 8, 1) == pytest.approx(8)
    assert roofline.distinct_experts(128, 8, 64) < 128


def test_cut_keeps_the_first_layers_at_full_width():
    cut = parse_config(config_for("deepseek-v4-flash", layers=4))
    assert cut.layer_types == [SLIDING, SLIDING, CSA, HCA]
    assert cut.mlp_layer_types == ["hash_moe"] * 3 + ["moe"]
    assert cut.hidden_size == 4096 and cut.n_routed_experts == 256
    with pytest.raises(ValueError, match="has 43 layers"):
        config_for("deepseek-v4-flash", layers=44)
    with pytest.raises(ValueError, match="known: qwen3-coder-30b-a3b"):
        config_for("llama")
