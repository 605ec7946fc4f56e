"""Qwen3-Next's FP8 release spelling (``models/qwen3_next/packed.py``, ``weights.py``): the
matrices stay packed where the model's storage holds them exactly, and the packed model
computes what the same checkpoint dequantized at load computes.

Checkpoints are written from transformers' tiny Qwen3-Next (``conftest.qwen3_next_fp8``): every
2-D projection and the LM head in e4m3 with float32 128 x 128 block scales
(``weight_scale_inv``), the routers and everything else as they were, and an MTP head's
tensors beside them (skipped). Two shapes: the tests' tiny one, whose ``q_proj`` / ``k_proj``
and gate / up rows are not whole 128-row blocks (those fused weights fall back to
dequantized, after their first part was packed), and ``conftest.QWEN3_NEXT_BLOCKS``' whose
are (packed too), its config declaring the quantization as the releases do (the model then
built with its matrices on the meta device, allocated as they load).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from codeagent.backend.kernels.dispatch import REFERENCE
from codeagent.backend.loader import LoadError, load_model
from codeagent.backend.packed_weights import PackedExperts, PackedWeight
from codeagent.bench.packing import logit_error, logits_along

ALWAYS_PACKED = {
    "layers.0.mixer.out_proj.weight",
    "layers.1.mixer.o.weight",
    "layers.0.mlp.w13",
    "layers.0.mlp.w2",
    "layers.3.mlp.w13",
    "layers.0.mlp.shared.w2.weight",
    "layers.2.mlp.w2.weight",
    "lm_head.weight",
}
ONLY_IN_BLOCKS = {"layers.1.mixer.qkv.weight", "layers.0.mlp.shared.w13.weight", "layers.2.mlp.w13.weight"}


def sequence(length: int = 40) -> list[int]:
    return torch.randint(0, 512, (length,), generator=torch.Generator().manual_seed(12)).tolist()


def write(folder, config, tensors, declared: bool = False) -> None:
    """``declared``: the config names its quantization as Qwen's FP8 releases do."""
    folder.mkdir()
    raw = json.loads(config.read_text())
    if declared:
        raw["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}
    (folder / "config.json").write_text(json.dumps(raw))
    save_file(tensors, folder / "model.safetensors")


@pytest.fixture(scope="module", params=["tiny", "blocks"])
def release(request, tmp_path_factory, qwen3_next_factory, qwen3_next_fp8_tensors):
    """(fp8 folder, the same values dequantized and saved in float32, shapes' name)."""
    root = tmp_path_factory.mktemp(f"qwen3next_fp8_{request.param}")
    qwen3_next_factory(blocks=request.param == "blocks").save_pretrained(root / "source")
    quantized, dequantized = qwen3_next_fp8_tensors(root / "source")
    write(root / "fp8", root / "source" / "config.json", quantized, declared=request.param == "blocks")
    write(root / "plain", root / "source" / "config.json", dequantized)
    return root / "fp8", root / "plain", request.param


def packed_names(model) -> set[str]:
    out = set()
    for path, module in model.named_modules():
        for attr in ("weight", "w13", "w2"):
            if isinstance(getattr(module, attr, None), PackedWeight | PackedExperts):
                out.add(f"{path}.{attr}" if path else attr)
    return out


def test_the_release_stays_packed_where_its_storage_can_hold_it(release):
    fp8, _, shapes = release
    model = load_model(fp8).model
    names = packed_names(model)
    assert names >= ALWAYS_PACKED
    assert names & ONLY_IN_BLOCKS == (ONLY_IN_BLOCKS if shapes == "blocks" else set())
    assert not any("in_proj" in n or n.endswith((".gate.weight", "shared_gate.weight")) for n in names)
    assert model.layers[1].mlp.w13.format == "fp8" and model.layers[1].mlp.w13.scale.dtype == torch.float32
    # the packed ones left the parameters; a declared release was built with them on meta
    assert not any(p.is_meta for p in model.parameters())
    assert model.config.quantized == (shapes == "blocks")


@pytest.mark.parametrize("kernels", ["chosen", "reference"])
def test_the_packed_release_computes_the_dequantized_model(release, monkeypatch, kernels):
    """Prefill and decode logits of the packed model against the same checkpoint dequantized at
    load (``CODEAGENT_KEEP_QUANTIZED=0``) and against its values stored plain: the same up to
    the order of float32 sums (the native kernels', and the per-expert loop's)."""
    fp8, plain, _ = release
    packed = load_model(fp8).model
    monkeypatch.setenv("CODEAGENT_KEEP_QUANTIZED", "0")
    dequantized = load_model(fp8).model
    assert not packed_names(dequantized)
    stored_plain = load_model(plain).model
    if kernels == "reference":
        packed.kernels = dequantized.kernels = stored_plain.kernels = REFERENCE
    ids = sequence()
    want = logits_along(dequantized, ids, 24)
    assert torch.equal(want, logits_along(stored_plain, ids, 24))
    error = logit_error(want, logits_along(packed, ids, 24))
    assert error["max_rel"] < 1e-5 and error["top1_agreement"] == 1.0, error
    assert torch.equal(packed.layers[0].mixer.in_proj.weight, stored_plain.layers[0].mixer.in_proj.weight)


def test_a_packed_weight_left_unfilled_is_named(release, tmp_path):
    """The completeness check covers the packed storage and the meta placeholders too."""
    fp8, _, _ = release
    tensors = load_file(fp8 / "model.safetensors")
    for key in ("model.layers.0.mlp.experts.5.down_proj.weight", "model.layers.1.self_attn.o_proj.weight"):
        del tensors[key], tensors[key.removesuffix("weight") + "weight_scale_inv"]
    write(tmp_path / "partial", fp8 / "config.json", tensors)
    with pytest.raises(LoadError, match=r"missing weights for 2 parameters: .*layers\.1\.mixer\.o\.weight"):
        load_model(tmp_path / "partial")
