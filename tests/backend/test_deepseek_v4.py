"""DeepSeek-V4 against transformers' full forward, token for token, and its checkpoint layouts."""

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
from codeagent.backend.models.base import SeqSlice


def prompts(lengths: list[int]) -> list[list[int]]:
    generator = torch.Generator().manual_seed(2)
    return [torch.randint(0, 512, (n,), generator=generator).tolist() for n in lengths]


def greedy(folder: Path, batch: list[list[int]], new_tokens: int, dtype=torch.float32) -> list[list[int]]:
    engine = Engine(load_model(folder, dtype=dtype).model, eos_token_ids=set())
    params = SamplingParams(max_tokens=new_tokens)
    return [r.token_ids for r in engine.generate([Request(p, params) for p in batch])]


@pytest.fixture(scope="module")
def reference(deepseek_v4_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(deepseek_v4_dir, dtype=torch.float32).eval()


@pytest.mark.parametrize("length", [24, 300])
def test_greedy_matches_the_reference_full_forward(deepseek_v4_dir, reference, reference_greedy, length):
    (prompt,) = prompts([length])
    assert greedy(deepseek_v4_dir, [prompt], 32)[0] == reference_greedy(reference, prompt, 32)


def test_prefill_logits_match_at_every_position(deepseek_v4_dir, reference):
    (prompt,) = prompts([40])
    model = load_model(deepseek_v4_dir).model
    with torch.no_grad():
        theirs = reference(input_ids=torch.tensor([prompt])).logits[0]
    for end in (8, 17, 24, 32, 40):
        ours = model(torch.tensor(prompt[:end]), torch.arange(end), [SeqSlice(model.new_state(), end)])[0]
        assert torch.allclose(ours, theirs[end - 1], atol=1e-4), end


def test_decode_one_token_at_a_time_equals_prefill(deepseek_v4_dir):
    """Every compression boundary crossed by single-token steps gives the prefill's logits."""
    (prompt,) = prompts([70])
    model = load_model(deepseek_v4_dir).model
    state = model.new_state()
    for t in range(70):
        step = model(torch.tensor(prompt[t : t + 1]), torch.tensor([t]), [SeqSlice(state, 1)])[0]
        if t % 4 == 3 or t == 69:
            full = model(
                torch.tensor(prompt[: t + 1]), torch.arange(t + 1), [SeqSlice(model.new_state(), t + 1)]
            )[0]
            assert torch.allclose(step, full, atol=1e-4), t


def test_a_batch_of_different_lengths_matches_each_alone(deepseek_v4_dir, reference, reference_greedy):
    batch = prompts([5, 24, 37])
    assert greedy(deepseek_v4_dir, batch, 12) == [reference_greedy(reference, p, 12) for p in batch]


def test_bfloat16_stays_close(deepseek_v4_dir, reference, reference_greedy):
    """bf16 weights and activations: the first 6 greedy tokens agree with the fp32 reference."""
    (prompt,) = prompts([24])
    assert greedy(deepseek_v4_dir, [prompt], 6, torch.bfloat16)[0] == reference_greedy(reference, prompt, 6)


def release_names(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' save_pretrained spelling -> DeepSeek's release spelling."""
    renamed = {}
    for key, value in tensors.items():
        name = key.removeprefix("model.")
        name = {
            "embed_tokens.weight": "embed.weight",
            "hc_head.hc_fn": "hc_head_fn",
            "hc_head.hc_base": "hc_head_base",
            "hc_head.hc_scale": "hc_head_scale",
        }.get(name, name)
        renamed[name] = value
    return renamed


def test_release_key_names_load(deepseek_v4_dir, tmp_path, reference, reference_greedy):
    folder = tmp_path / "release"
    folder.mkdir()
    shutil.copy(deepseek_v4_dir / "config.json", folder / "config.json")
    tensors = release_names(load_file(deepseek_v4_dir / "model.safetensors"))
    tensors["mtp.0.emb.weight"] = torch.zeros(4, 4)  # the MTP layer is ignored
    assert "layers.1.attn.wq_a.weight" in tensors and "hc_head_fn" in tensors
    save_file(tensors, folder / "model.safetensors")
    (prompt,) = prompts([24])
    assert greedy(folder, [prompt], 8)[0] == reference_greedy(reference, prompt, 8)


def test_unknown_and_missing_keys_are_named(deepseek_v4_dir, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(deepseek_v4_dir, folder)
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.3.attn.indexer.weights_proj.weight"]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(LoadError, match=r"missing weights.*layers\.3\.attn\.indexer\.weights_proj\.weight"):
        load_model(folder)
    tensors["model.layers.3.attn.indexer.weights_proj.weight"] = torch.zeros(8, 64)
    tensors["model.layers.3.attn.surprise.weight"] = torch.zeros(2)
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(LoadError, match=r"unexpected weight 'model\.layers\.3\.attn\.surprise\.weight'"):
        load_model(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["DeepseekV4ForCausalLM"]


def release_quantized(
    tensors: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The V4 release layout: FP8 dense projections, FP4 routed experts, everything else as is.
    Returns (quantized checkpoint, the dequantized weights it stands for)."""
    from codeagent.backend.quant import dequantize_fp4, dequantize_fp8, quantize_fp4, quantize_fp8

    quantized, dequantized = {}, {}
    for name, value in release_names(tensors).items():
        base = name.removesuffix(".weight")
        if ".experts." in name:
            packed, scale = quantize_fp4(value)
            quantized[name], quantized[base + ".scale"] = packed, scale
            dequantized[name] = dequantize_fp4(packed, scale)
        elif name.endswith(".weight") and value.dim() == 2 and ".attn.w" in name and "compressor" not in name:
            weight, scale = quantize_fp8(value)
            quantized[name], quantized[base + ".scale"] = weight, scale
            dequantized[name] = dequantize_fp8(weight, scale)
        else:
            quantized[name] = dequantized[name] = value
    return quantized, dequantized


def test_fp8_and_fp4_release_checkpoint_matches_its_dequantized_reference(
    deepseek_v4_dir, tmp_path, reference_greedy
):
    from transformers import AutoModelForCausalLM

    original = load_file(deepseek_v4_dir / "model.safetensors")
    quantized, dequantized = release_quantized(original)
    assert any(t.dtype == torch.float8_e4m3fn for t in quantized.values())
    assert any(t.dtype == torch.uint8 for t in quantized.values())
    for kind, dense in (("quantized", quantized), ("dequantized", dequantized)):
        folder = tmp_path / kind
        folder.mkdir()
        shutil.copy(deepseek_v4_dir / "config.json", folder / "config.json")
        save_file(dense, folder / "model.safetensors")
    ours = load_model(tmp_path / "quantized").model
    assert torch.equal(ours.w["layers.2.ffn.w13"][3, :32], dequantized["layers.2.ffn.experts.3.w1.weight"])
    assert torch.equal(ours.w["layers.1.attn.wq_b.weight"], dequantized["layers.1.attn.wq_b.weight"])
    error = (ours.w["layers.1.attn.wq_b.weight"] - original["model.layers.1.attn.wq_b.weight"]).abs().max()
    assert 0 < error <= original["model.layers.1.attn.wq_b.weight"].abs().max() / 8  # e4m3: 3 mantissa bits
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "dequantized", dtype=torch.float32).eval()
    (prompt,) = prompts([24])
    assert greedy(tmp_path / "quantized", [prompt], 16)[0] == reference_greedy(reference, prompt, 16)
