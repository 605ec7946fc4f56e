"""The planner's Qwen3-Next / Qwen3.5-MoE rules on the shipped Qwen3-Coder-Next and
Qwen3.5-35B-A3B configs: the release estimate, KV for the attention layers only, the fixed
DeltaNet states per sequence, one-process layouts, and ``codeagent models`` / ``plan``; and an
FP8 release's bytes in memory, on the tiny model."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from safetensors.torch import save_file

from codeagent.backend.distributed.layout import Layout
from codeagent.backend.loader import load_model
from codeagent.backend.packed_weights import PackedExperts, PackedWeight
from codeagent.backend.planning.checkpoint import estimated, from_headers
from codeagent.backend.planning.families import QWEN3_NEXT, family
from codeagent.backend.planning.hardware import cpu, gpus
from codeagent.backend.planning.inventory import EXPERTS, SHARED, SKIPPED, VOCAB, rank_weights, role
from codeagent.backend.planning.kv import kv_cost, meta_model
from codeagent.backend.planning.plan import SEQUENCES, delta_state_bytes, make_plan
from codeagent.backend.planning.report import as_dict, verdict
from codeagent.backend.planning.source import model_source, shipped_config, shipped_models
from codeagent.tui.cli import main

GIB = 1 << 30
NAMES = ["qwen3-coder-next", "qwen3.5-35b-a3b"]


@pytest.mark.parametrize("name", NAMES)
def test_the_estimate_spells_exactly_the_models_parameters(name):
    raw = shipped_config(name)
    meta = meta_model(raw, torch.bfloat16)
    assert family(meta.config) == QWEN3_NEXT
    entries = estimated(raw, meta.config)
    counted = sum(math.prod(entry.shape) * entry.count for entry in entries)
    assert counted == sum(p.numel() for p in meta.parameters())
    if name == "qwen3-coder-next":
        # 48 layers (36 DeltaNet + 12 attention), 512 experts of 512 + a shared expert of 512
        assert counted == 79_674_391_296  # a parameter-counting tool's published total for the release
        assert sum(entry.nbytes for entry in entries) == 2 * counted + 36 * 32 * 2  # bf16, A_log in f32


def test_kv_is_the_attention_layers_only_and_the_states_are_fixed():
    meta = meta_model(shipped_config("qwen3-coder-next"), torch.bfloat16)
    c = meta.config
    assert c.layer_types.count("full_attention") == 12 and c.layer_types[3::4] == ["full_attention"] * 12
    cost = kv_cost(meta, Layout(1))
    assert cost.kinds["keys"] + cost.kinds["values"] == 12 * 2 * 2 * 256 * 2 == 24_576
    # one sequence: 36 DeltaNet layers x (32 value heads x 128 x 128 x 4 B + 8192 conv channels x 3 x 2 B)
    state = delta_state_bytes(c, torch.bfloat16)
    assert state == 36 * (32 * 128 * 128 * 4 + (2 * 16 * 128 + 32 * 128) * 3 * 2) == 77_266_944
    # any more per token is the pool's copy of those states (prefix caching) in one block of
    # state_every (16), never per token
    assert cost.per_token - 24_576 == state / 16 / cost.block_tokens == 150_912
    assert sum(cost.kinds.values()) == cost.per_token


def test_coder_next_plans_on_one_device_with_its_recurrent_states():
    result = make_plan(model_source("qwen3-coder-next"), gpus("2xH200", None, 512 * GIB), torch.bfloat16)
    one, *split = result.candidates
    assert [c.layout for c in split] == [Layout(2), Layout(2, True)]
    assert all("Qwen3-Next runs in one process" in (c.problem or "") for c in split)
    assert one.problem is None and one.weights is not None
    assert one.workspace.states == SEQUENCES * 77_266_944
    assert one.weights.total == 2 * 79_674_391_296  # every weight bf16 in memory
    text = verdict(result)
    assert text.startswith("Qwen/Qwen3-Coder-Next does not fit 2 x H200") and "recurrent states" in text
    data = as_dict(result)
    assert data["layouts"][0]["per_rank"]["workspace"]["recurrent_state_bytes"] == SEQUENCES * 77_266_944
    # on a CPU in float32 the conv windows double, the float32 recurrent states do not
    host = make_plan(model_source("qwen3-coder-next"), cpu(1024 * GIB), torch.float32, context=8192)
    assert host.chosen is not None and host.chosen.layout == Layout(1)
    assert host.chosen.workspace.states == SEQUENCES * 36 * (32 * 128 * 128 * 4 + 8192 * 3 * 4)


def test_qwen3_5_fits_one_h200_at_16k():
    result = make_plan(
        model_source("qwen3.5-35b-a3b"), gpus("1xH200", None, 512 * GIB), torch.bfloat16, context=16384
    )
    assert result.window == 262_144 and result.chosen is not None and result.chosen.layout == Layout(1)
    assert "fits 1 x H200" in verdict(result)


def test_roles_of_a_qwen3_5_release_checkpoint():
    assert role("model.language_model.embed_tokens.weight", QWEN3_NEXT) == VOCAB
    assert role("model.language_model.layers.0.mlp.experts.3.up_proj.weight", QWEN3_NEXT) == EXPERTS
    assert role("model.language_model.layers.0.mlp.shared_expert.down_proj.weight", QWEN3_NEXT) == SHARED
    for skipped in ("mtp.fc.weight", "model.visual.blocks.0.attn.qkv.weight", "visual.merger.mlp.0.weight"):
        assert role(skipped, QWEN3_NEXT) == SKIPPED


def test_models_describes_them_without_a_download(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # nothing downloaded
    described = {model.model_id: model for model in shipped_models()}
    assert described["Qwen/Qwen3-Coder-Next"].aliases == ["qwen3-coder-next"]
    assert described["Qwen/Qwen3.5-35B-A3B"].architecture == "Qwen3_5MoeForConditionalGeneration"
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "no supported models in the local Hugging Face cache" in out
    assert (
        "Qwen/Qwen3-Coder-Next  Qwen3NextForCausalLM  ~79.7B parameters, ~148.4 GiB as released, "
        "window 262,144 tokens  (alias qwen3-coder-next)" in out
    )
    assert "Qwen/Qwen3.5-35B-A3B  Qwen3_5MoeForConditionalGeneration  ~34.7B parameters" in out
    assert main(["plan", "--model", "qwen3-coder-next", "--gpus", "1xH100"]) == 1
    out = capsys.readouterr().out
    assert "Qwen/Qwen3-Coder-Next (Qwen3NextForCausalLM)" in out and "keys 12.0 KiB, values 12.0 KiB" in out
    assert "recurrent states 4.6 GiB (64 sequences' DeltaNet states)" in out


@pytest.mark.parametrize("blocks", [False, True])
def test_an_fp8_release_is_planned_as_its_loader_keeps_it(
    tmp_path, qwen3_next_factory, qwen3_next_fp8_tensors, blocks
):
    """The tiny Qwen3-Next in Qwen's FP8 spelling: the planner's bytes in memory are the loaded
    model's to the byte, packed (experts, whole projections, block-aligned parts) and not."""
    qwen3_next_factory(blocks=blocks).save_pretrained(tmp_path / "source")
    (tmp_path / "fp8").mkdir()
    save_file(qwen3_next_fp8_tensors(tmp_path / "source")[0], tmp_path / "fp8" / "model.safetensors")
    shutil.copy(tmp_path / "source" / "config.json", tmp_path / "fp8" / "config.json")
    meta = meta_model(model_source(str(tmp_path / "fp8")).config, torch.float32)
    planned = rank_weights(from_headers(tmp_path / "fp8"), meta.config, Layout(), torch.float32, True)
    model = load_model(tmp_path / "fp8").model
    packed = [
        w for m in model.modules() for w in vars(m).values() if isinstance(w, PackedExperts | PackedWeight)
    ]
    assert planned.resident["fp8 packed"] == sum(w.nbytes for w in packed)
    assert planned.total == sum(w.nbytes for w in packed) + sum(p.nbytes for p in model.parameters())
