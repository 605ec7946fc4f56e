"""Qwen3-MoE against transformers, token for token, and the loader's error messages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from codeagent.backend.engine import Engine, Request
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import LoadError, load_model


def prompts(lengths: list[int], vocab: int = 512) -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, vocab, (n,), generator=generator).tolist() for n in lengths]


def greedy(
    folder: Path, batch: list[list[int]], new_tokens: int = 32, dtype=torch.float32
) -> list[list[int]]:
    engine = Engine(load_model(folder, dtype=dtype).model, eos_token_ids=set())
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens)
    return [r.token_ids for r in engine.generate([Request(p, params) for p in batch])]


@pytest.fixture(scope="module")
def reference(qwen3_moe_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(qwen3_moe_dir, dtype=torch.float32).eval()


@pytest.mark.parametrize("length", [24, 320])
def test_greedy_matches_the_reference_full_forward(qwen3_moe_dir, reference, reference_greedy, length):
    (prompt,) = prompts([length])
    assert greedy(qwen3_moe_dir, [prompt])[0] == reference_greedy(reference, prompt, 32)


def test_a_batch_of_different_lengths_matches_each_alone(qwen3_moe_dir, reference, reference_greedy):
    batch = prompts([5, 24, 61])
    together = greedy(qwen3_moe_dir, batch, new_tokens=16)
    assert together == [reference_greedy(reference, p, 16) for p in batch]


def test_prefill_logits_match(qwen3_moe_dir, reference):
    from codeagent.backend.models.base import SeqSlice

    (prompt,) = prompts([40])
    model = load_model(qwen3_moe_dir).model
    ours = model(torch.tensor(prompt), torch.arange(40), [SeqSlice(model.new_state(), 40)])[0]
    with torch.no_grad():
        theirs = reference(input_ids=torch.tensor([prompt])).logits[0, -1]
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_bfloat16_stays_close(qwen3_moe_dir, reference, reference_greedy):
    """bf16 weights and activations: the first 8 greedy tokens agree with the fp32 reference."""
    (prompt,) = prompts([24])
    assert greedy(qwen3_moe_dir, [prompt], 8, torch.bfloat16)[0] == reference_greedy(reference, prompt, 8)


def test_sharded_checkpoint_with_index(qwen3_moe_dir, tmp_path, reference, reference_greedy):
    tensors = load_file(qwen3_moe_dir / "model.safetensors")
    keys = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, names in halves.items():
        save_file({k: tensors[k] for k in names}, tmp_path / name)
    weight_map = {k: name for name, names in halves.items() for k in names}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    shutil.copy(qwen3_moe_dir / "config.json", tmp_path / "config.json")
    (prompt,) = prompts([24])
    assert greedy(tmp_path, [prompt], 8) == [reference_greedy(reference, prompt, 8)]


def broken_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_unknown_architecture(qwen3_moe_dir, tmp_path):
    folder = broken_copy(qwen3_moe_dir, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["LlamaForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        LoadError, match=r"LlamaForCausalLM.*supported: DeepseekV4ForCausalLM, Qwen3MoeForCausalLM"
    ):
        load_model(folder)


def test_missing_shard(qwen3_moe_dir, tmp_path):
    folder = broken_copy(qwen3_moe_dir, tmp_path / "m")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "model-2.safetensors"}})
    )
    with pytest.raises(LoadError, match=r"shard.*missing.*model-2\.safetensors"):
        load_model(folder)


def test_corrupt_file(qwen3_moe_dir, tmp_path):
    folder = broken_copy(qwen3_moe_dir, tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(LoadError, match="corrupt"):
        load_model(folder)


def test_wrong_shapes(qwen3_moe_dir, tmp_path):
    folder = broken_copy(qwen3_moe_dir, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] = 48
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(LoadError, match="checkpoint shape"):
        load_model(folder)


def test_missing_weights(qwen3_moe_dir, tmp_path):
    folder = broken_copy(qwen3_moe_dir, tmp_path / "m")
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.2.mlp.experts.5.up_proj.weight"]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(LoadError, match=r"missing weights.*layers\.2\.mlp\.w13"):
        load_model(folder)
