"""Weights per rank by format: the estimate from config.json against saved checkpoints' headers,
what the planner says a rank holds against what the loader really allocates, and the tensor-
parallel shares against hand computations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from codeagent.backend.catalog import header_sizes
from codeagent.backend.distributed.group import Group
from codeagent.backend.distributed.layout import Layout, LayoutError
from codeagent.backend.loader import LoadError, load_model
from codeagent.backend.packed_weights import PackedExperts
from codeagent.backend.planning.checkpoint import estimated, from_headers
from codeagent.backend.planning.inventory import checkpoint_totals, rank_weights
from codeagent.backend.planning.kv import meta_model
from codeagent.backend.planning.source import model_source, shipped_config
from codeagent.backend.quant import quantize_fp4, quantize_fp8


def deepseek_v4_reference():
    """A tiny DeepSeek-V4 with every attention type and both router kinds, built by transformers."""
    from transformers import DeepseekV4Config, DeepseekV4ForCausalLM

    torch.manual_seed(0)
    config = DeepseekV4Config(
        vocab_size=256,
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        head_dim=32,
        qk_rope_head_dim=8,
        q_lora_rank=32,
        o_groups=2,
        o_lora_rank=16,
        n_routed_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        index_n_heads=4,
        index_head_dim=16,
        index_topk=2,
        sliding_window=8,
        compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 8},
        layer_types=["sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention"],
        mlp_layer_types=["hash_moe", "moe", "moe"],
        max_position_embeddings=4096,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    return DeepseekV4ForCausalLM(config).eval()


@pytest.fixture(scope="module")
def v4_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("v4")
    deepseek_v4_reference().save_pretrained(folder)
    return folder


def by_format(entries) -> dict[str, int]:
    totals: dict[str, int] = {}
    for entry in entries:
        totals[entry.format] = totals.get(entry.format, 0) + entry.nbytes
    return totals


@pytest.mark.parametrize("which", ["qwen3", "v4"])
def test_the_estimate_from_config_matches_the_saved_checkpoint(which, qwen3_moe_dir, v4_dir):
    folder = qwen3_moe_dir if which == "qwen3" else v4_dir
    raw = json.loads((folder / "config.json").read_text())
    config = meta_model(raw, torch.float32).config
    assert by_format(estimated(raw, config)) == by_format(from_headers(folder))
    assert sum(e.nbytes for e in from_headers(folder)) == header_sizes(folder / "model.safetensors")[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_what_a_rank_holds_is_what_the_loader_allocates_qwen3(qwen3_moe_dir, dtype):
    planned = planned_weights(qwen3_moe_dir, dtype)
    model = load_model(qwen3_moe_dir, dtype).model
    assert planned.total == sum(p.nbytes for p in model.parameters())
    assert planned.resident == {{torch.float32: "f32", torch.bfloat16: "bf16"}[dtype]: planned.total}


def release_layout(folder: Path, out: Path) -> None:
    """The tiny V4 stored as the release is: FP8 projections and shared expert, FP4 routed experts."""
    quantized = {}
    for name, tensor in load_file(folder / "model.safetensors").items():
        base = name.removesuffix(".weight")
        if ".experts." in name and ".shared_experts." not in name:
            quantized[name], quantized[base + ".scale"] = quantize_fp4(tensor)
        elif name.endswith(
            ("wq_a.weight", "wq_b.weight", "attn.wkv.weight", "wo_a.weight", "wo_b.weight")
        ) or (".shared_experts." in name):
            quantized[name], quantized[base + ".scale"] = quantize_fp8(tensor)
        else:
            quantized[name] = tensor
    out.mkdir()
    save_file(quantized, out / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    config.update(expert_dtype="fp4", quantization_config={"quant_method": "fp8", "scale_fmt": "ue8m0"})
    (out / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_what_a_rank_holds_is_what_the_loader_allocates_v4_release_layout(v4_dir, tmp_path, dtype):
    release_layout(v4_dir, tmp_path / "release")
    planned = planned_weights(tmp_path / "release", dtype)
    model = load_model(tmp_path / "release", dtype).model
    assert any(isinstance(w, PackedExperts) for w in model.w.values())
    assert planned.total == sum(w.nbytes for w in model.w.values())
    packed = sum(w.nbytes for w in model.w.values() if isinstance(w, PackedExperts))
    assert planned.resident["fp4 packed"] == packed
    # the FP8 projections were dequantized to the model dtype, the sensitive tensors kept float32
    name = "f32" if dtype == torch.float32 else "bf16"
    assert planned.resident[f"{name} (from fp8)"] > 0 and planned.resident["i64"] > 0


def test_what_rank_0_of_a_split_v4_holds_is_what_the_loader_allocates(v4_dir, tmp_path):
    """At tp 2 with ep the planner's rank 0 is the loaded rank 0 to the byte; without ep the FP4
    experts' width of 32 would give each rank 16 inputs of w2, half a scale group: both refuse."""
    release_layout(v4_dir, tmp_path / "release")
    layout = Layout(2, ep=True)
    planned = planned_weights(tmp_path / "release", torch.bfloat16, layout)
    model = load_model(tmp_path / "release", torch.bfloat16, group=Group(layout)).model
    assert planned.total == sum(w.nbytes for w in model.w.values())
    assert planned.resident["fp4 packed"] == sum(
        w.nbytes for w in model.w.values() if isinstance(w, PackedExperts)
    )
    with pytest.raises(LayoutError, match="FP4's scale groups of 32 inputs"):
        planned_weights(tmp_path / "release", torch.bfloat16, Layout(2))
    with pytest.raises(LoadError, match="FP4's scale groups of 32 inputs"):
        load_model(tmp_path / "release", torch.bfloat16, group=Group(Layout(2)))


def planned_weights(folder: Path, dtype: torch.dtype, layout: Layout | None = None):
    source = model_source(str(folder))
    meta = meta_model(source.config, dtype)
    return rank_weights(from_headers(folder), meta.config, layout or Layout(), dtype, True)


def shipped(name: str):
    raw = shipped_config(name)
    config = meta_model(raw, torch.bfloat16).config
    return estimated(raw, config), config


def test_qwen3_coder_30b_at_tp8_by_hand():
    entries, config = shipped("qwen3-coder-30b-a3b")
    b = 2  # bf16
    vocab_rows = math.ceil(151936 / 8)  # rank 0's share of the embedding and of the LM head
    attention = (2 * 32 * 128 * 2048) // 8 * b + 2 * (1 * 128 * 2048) * b  # q, o split; 1 of 4 KV heads
    experts = 128 * 3 * 768 * 2048 * b // 8  # each expert's width split 8 ways (or 16 whole experts)
    replicated = (2 * 2048 + 2 * 128) * b + 128 * 2048 * b  # norms, q/k norms, router
    expected = 2 * vocab_rows * 2048 * b + 48 * (attention + experts + replicated) + 2048 * b
    for ep in (False, True):
        assert rank_weights(entries, config, Layout(8, ep), torch.bfloat16, True).total == expected
    whole = 151936 * 2048 * b * 2 + 48 * (
        (2 * 32 + 2 * 4) * 128 * 2048 * b + 128 * 3 * 768 * 2048 * b + replicated
    )
    assert sum(by_format(entries).values()) == whole + 2048 * b


def test_deepseek_v4_flash_experts_are_fp4_and_split_by_rank():
    entries, config = shipped("deepseek-v4-flash")
    per_matrix = 2048 * 4096 // 2 + 2048 * 4096 // 32  # FP4 codes + one UE8M0 scale per 32 inputs
    routed = 43 * 256 * 3 * per_matrix
    mtp = 256 * 3 * per_matrix  # the MTP layer's experts, stored but never loaded
    totals, skipped = checkpoint_totals(entries, config)
    assert totals["fp4"] == routed + mtp
    assert skipped > mtp
    one = rank_weights(entries, config, Layout(1), torch.bfloat16, True)
    four = rank_weights(entries, config, Layout(4), torch.bfloat16, True)
    assert one.resident["fp4 packed"] == routed and four.resident["fp4 packed"] == routed // 4
    # the shared latent projection is replicated: every rank holds it whole, dequantized
    assert (
        one.resident["bf16 (from fp8)"]
        > four.resident["bf16 (from fp8)"]
        > one.resident["bf16 (from fp8)"] / 4
    )


def test_a_layout_that_does_not_divide_is_named():
    entries, config = shipped("deepseek-v4-flash")
    with pytest.raises(LayoutError, match=r"output groups \(8\)"):
        rank_weights(entries, config, Layout(16), torch.bfloat16, True)
