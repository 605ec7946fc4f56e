"""The opt-in packing (``backend/packing.py``, ``--pack``): exact to its formats, its logit error
bounded by their precision, its refusals, and the CLI.

The error bound, derived from the formats. FP8 e4m3 keeps 3 mantissa bits, so each weight
moves by at most u = 2^-4 of its magnitude; FP4 e2m1 (1 bit, a power-of-two scale per 32
inputs, small values flushed toward 0) by up to 2^-2. Over a matrix, the rounding's RMS
relative size ε = |W - W_q| / |W| is measured here on the very weights converted (about
0.42u for FP8, as uniform rounding of 3-bit mantissas gives, and some 0.12 for FP4). To first
order a product's output moves by ε of itself, and independent roundings of the n converted
matrices on a token's path add in quadrature: the logits move by about sqrt(sum ε_i^2) of
themselves, which bounds ``mean_rel`` (mean |Δ| / mean |logit|); one logit's error may
exceed the mean by the ratio of extreme to typical values, so ``max_rel`` (max |Δ| / max
|logit|) is allowed twice that. The models are the tiny ones of the other backend tests at
the initialiser scale of released configurations (0.02): at 0.1 these random networks are
chaotic (1% noise on one projection moves the logits by 2%) and no first-order estimate holds.
The error must also be clearly above bf16's own rounding (2^-9): the conversion happened.
Measured on this machine: ``docs/bench/packing.md``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from codeagent.backend.layers.linear import Linear
from codeagent.backend.loader import LoadError
from codeagent.backend.packed_weights import PackedExperts, PackedWeight
from codeagent.backend.packing import VARIANTS, PackError, check_checkpoint, pack
from codeagent.backend.quant import E2M1_MAGNITUDES, dequantize_fp4, quantize_fp4
from codeagent.backend.runtime import Loaded, disk_namespace, load
from codeagent.bench.packing import greedy, logit_error, logits_along
from codeagent.tui.argtypes import PACK_VARIANTS

BF16_ROUNDING = 2.0**-9
FAMILIES = ["qwen3_moe", "qwen3_moe_wide", "qwen3_next", "deepseek_v4"]
PROMPT = 16


def _v4_tests():
    spec = importlib.util.spec_from_file_location(
        "packing_uses_test_deepseek_v4", Path(__file__).with_name("test_deepseek_v4.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def folders(tmp_path_factory, qwen3_moe_factory, qwen3_next_factory) -> dict[str, Path]:
    """The tiny Qwen3-MoE, Qwen3-Next and DeepSeek-V4 at the released initialiser scale, saved
    in float32; and a Qwen3-MoE 128 wide, whose head ``fp4`` keeps in INT6 (the others' 64-wide
    heads stay in FP8)."""
    out = {
        "qwen3_moe": tmp_path_factory.mktemp("pack_qwen3"),
        "qwen3_moe_wide": tmp_path_factory.mktemp("pack_qwen3_wide"),
        "qwen3_next": tmp_path_factory.mktemp("pack_next"),
        "deepseek_v4": tmp_path_factory.mktemp("pack_v4"),
    }
    qwen3_moe_factory(initializer_range=0.02).save_pretrained(out["qwen3_moe"])
    qwen3_moe_factory(initializer_range=0.02, hidden_size=128).save_pretrained(out["qwen3_moe_wide"])
    qwen3_next_factory(initializer_range=0.02).save_pretrained(out["qwen3_next"])
    _v4_tests().reference_model(initializer_range=0.02).save_pretrained(out["deepseek_v4"])
    return out


def sequence(vocab: int = 512, length: int = 48) -> list[int]:
    return torch.randint(0, vocab, (length,), generator=torch.Generator().manual_seed(3)).tolist()


def weight_of(model, name: str):
    """A converted weight by its ``Converted.name``: a key of V4's flat dict, or a module path."""
    if hasattr(model, "w"):
        return model.w[name]
    for part in name.split("."):
        model = getattr(model, part)
    return model.weight if isinstance(model, Linear) else model


def dequantized(weight, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(weight, PackedWeight):
        return weight.dequantize(dtype)
    assert isinstance(weight, PackedExperts)
    return torch.stack([weight.expert(e, dtype) for e in range(weight.shape[0])])


def rounding(original: torch.Tensor, packed) -> float:
    """ε: the RMS relative size of a matrix's rounding."""
    return float((dequantized(packed, torch.float32) - original.float()).norm() / original.float().norm())


@pytest.mark.parametrize("variant", ["fp8", "fp4"])
@pytest.mark.parametrize("family", FAMILIES)
def test_packed_logits_stay_within_the_formats_precision(folders, family, variant):
    full = load(folders[family], "bfloat16", "cpu").checkpoint.model
    packed = load(folders[family], "bfloat16", "cpu", pack=variant)
    ids = sequence()
    error = logit_error(logits_along(full, ids, PROMPT), logits_along(packed.checkpoint.model, ids, PROMPT))
    roundings = {
        c.name: rounding(weight_of(full, c.name), weight_of(packed.checkpoint.model, c.name))
        for c in packed.converted
    }
    fp8 = [roundings[c.name] for c in packed.converted if c.kind == "dense" or variant == "fp8"]
    assert max(fp8) <= 2.0**-4 / 3**0.5  # uniform rounding within half an ulp of 3 bits
    bound = sum(e * e for e in roundings.values()) ** 0.5
    assert BF16_ROUNDING < error["mean_rel"] <= bound, (error, bound)
    assert error["max_rel"] <= 2 * bound, (error, bound)
    assert error["top1_agreement"] >= 0.5  # random logits are flat: near ties flip on small errors
    tokens = greedy(packed.checkpoint.model, ids[:PROMPT], 8)
    assert len(tokens) == 8 and all(0 <= t < 512 for t in tokens)


def test_what_each_variant_converts(folders):
    fp8, fp4 = (load(folders["deepseek_v4"], "bfloat16", "cpu", pack=v) for v in ("fp8", "fp4"))
    assert [c.name for c in fp8.converted] == [c.name for c in fp4.converted]
    names = [c.name for c in fp8.converted]
    assert "head.weight" in names and "layers.1.attn.indexer.wq_b.weight" in names
    assert not any("shared_experts" in n or "gate" in n or "compressor" in n for n in names)
    for a, b in zip(fp8.converted, fp4.converted, strict=True):
        assert a.before == b.before and a.after < a.before
        assert (b.after < a.after) if a.kind == "expert" else (b.after == a.after)
    model = fp4.checkpoint.model
    assert isinstance(model.layers[2].ffn.w13, PackedExperts) and model.layers[2].ffn.w13.format == "fp4"
    assert isinstance(model.layers[2].attn.wq_a, PackedWeight) and model.head is model.w["head.weight"]
    qwen = load(folders["qwen3_moe"], "bfloat16", "cpu", pack="fp4")
    assert {c.name for c in qwen.converted} >= {
        "lm_head",
        "layers.0.attn.qkv",
        "layers.1.mlp.w13",
        "layers.2.mlp.w2",
    }
    assert isinstance(qwen.checkpoint.model.layers[0].mlp.gate.weight, torch.Tensor)  # the router stays
    hybrid = load(folders["qwen3_next"], "bfloat16", "cpu", pack="fp4")
    names = {c.name for c in hybrid.converted}
    assert names >= {
        "lm_head",
        "layers.0.mixer.in_proj",
        "layers.0.mixer.out_proj",
        "layers.1.mixer.qkv",
        "layers.1.mixer.o",
        "layers.1.mlp.w13",  # routed experts
        "layers.1.mlp.shared.w2",
        "layers.2.mlp.w13",  # the dense layer
    }
    assert not any(n.endswith(("gate", "conv")) for n in names)
    layer = hybrid.checkpoint.model.layers[0]
    assert layer.mlp.w2.format == "fp4" and isinstance(layer.mixer.in_proj.weight, PackedWeight)
    assert all(isinstance(t, torch.Tensor) for t in (layer.mlp.gate.weight, layer.mlp.shared_gate.weight))
    assert all(
        isinstance(t, torch.Tensor) for t in (layer.mixer.conv, layer.mixer.A_log, layer.mixer.dt_bias)
    )


def test_fp4_keeps_a_head_of_whole_128_input_blocks_in_int6(folders):
    wide = {v: load(folders["qwen3_moe_wide"], "bfloat16", "cpu", pack=v) for v in ("fp8", "fp4")}
    heads = {v: loaded.checkpoint.model.lm_head.weight for v, loaded in wide.items()}
    assert heads["fp8"].format == "fp8" and heads["fp4"].format == "int6"
    after = {v: next(c.after for c in loaded.converted if c.name == "lm_head") for v, loaded in wide.items()}
    assert after["fp4"] == 512 * 128 * 6.5 / 8 and after["fp8"] == 512 * 128 + 4 * 1  # codes, 4 x 1 scales
    narrow = load(folders["qwen3_moe"], "bfloat16", "cpu", pack="fp4").checkpoint.model
    assert narrow.lm_head.weight.format == "fp8"  # 64 inputs: not a whole INT6 block


@pytest.mark.usefixtures("fp4_float_route")
@pytest.mark.parametrize("family", FAMILIES)
def test_packed_model_is_its_dequantized_weights(folders, family):
    """The conversion loses only the formats' rounding: the packed model (its kernels) gives the
    logits of the float32 model whose converted weights are replaced by their decoded values."""
    packed = load(folders[family], "float32", "cpu", pack="fp4")
    reference = load(folders[family], "float32", "cpu").checkpoint.model
    with torch.no_grad():
        for c in packed.converted:
            weight_of(reference, c.name).copy_(
                dequantized(weight_of(packed.checkpoint.model, c.name), torch.float32)
            )
    ids = sequence()
    error = logit_error(
        logits_along(reference, ids, PROMPT), logits_along(packed.checkpoint.model, ids, PROMPT)
    )
    assert error["max_rel"] < 1e-5 and error["top1_agreement"] == 1.0


def test_refusals_say_why(folders, tmp_path):
    folder = folders["qwen3_moe"]
    model = load(folder, "float32", "cpu").checkpoint.model
    with pytest.raises(PackError, match="unknown packing 'int4'; expected one of fp8, fp4"):
        pack(model, "int4")
    with pytest.raises(PackError, match="not available for Linear; it is for Qwen3MoeForCausalLM"):
        pack(torch.nn.Linear(2, 2), "fp8")
    pack(model, "fp8")
    with pytest.raises(PackError, match="already holds packed weights"):
        pack(model, "fp4")
    homes = load(folder, "float32", "cpu", cpu_experts=2).checkpoint.model
    with pytest.raises(PackError, match="split between homes"):
        pack(homes, "fp8")
    with pytest.raises(LoadError, match="--pack and --cpu-experts do not combine"):
        load(folder, "float32", "cpu", cpu_experts=2, pack="fp8")
    with pytest.raises(LoadError, match="--pack runs with one process"):
        load(folder, "float32", "cpu", tp=2, pack="fp8")
    with pytest.raises(LoadError, match="unknown packing"):
        load(folder, "float32", "cpu", pack="int4")
    hybrid = load(folders["qwen3_next"], "float32", "cpu", pack="fp8").checkpoint.model
    with pytest.raises(PackError, match="Qwen3NextForCausalLM already holds packed weights"):
        pack(hybrid, "fp4")
    with pytest.raises(LoadError, match="--pack runs with one process"):
        load(folders["qwen3_next"], "float32", "cpu", tp=2, pack="fp8")


def checkpoint(folder: Path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, folder / "model.safetensors")
    return folder


def test_only_bf16_and_float32_checkpoints_are_converted(folders, tmp_path):
    config = json.loads((folders["qwen3_moe"] / "config.json").read_text())
    check_checkpoint(folders["qwen3_moe"])  # float32
    plain = {"a.weight": torch.zeros(2, 2, dtype=torch.bfloat16), "table": torch.zeros(2, dtype=torch.int64)}
    check_checkpoint(checkpoint(tmp_path / "bf16", config, plain))
    fp8 = {"a.weight": torch.zeros(2, 2, dtype=torch.float8_e4m3fn), "a.weight_scale_inv": torch.ones(1, 1)}
    with pytest.raises(PackError, match="stores F8_E4M3 tensors; --pack converts bf16 or float32"):
        check_checkpoint(checkpoint(tmp_path / "fp8", config, fp8))
    with pytest.raises(PackError, match="stores F16"):
        check_checkpoint(
            checkpoint(tmp_path / "f16", config, {"a.weight": torch.zeros(2, 2, dtype=torch.float16)})
        )
    declared = {**config, "quantization_config": {"quant_method": "fp8"}}
    with pytest.raises(PackError, match=r"is a quantized checkpoint \(fp8\)"):
        check_checkpoint(checkpoint(tmp_path / "declared", declared, plain))
    with pytest.raises(LoadError, match="quantized checkpoint"):
        load(tmp_path / "declared", "bfloat16", "cpu", pack="fp8")


def test_cached_kv_on_disk_is_kept_apart_by_packing(folders):
    folder = folders["qwen3_moe"]
    names = {disk_namespace(folder, "bfloat16", "cpu", pack) for pack in (None, "fp8", "fp4")}
    assert len(names) == 3
    assert disk_namespace(folder, "bfloat16", "cpu") == disk_namespace(folder, "bfloat16", "cpu", None)
    assert Loaded.__dataclass_fields__["pack"].default is None


def test_fp4_rounds_to_the_nearest_magnitude_and_a_tie_to_the_smaller():
    """The conversion's FP4 rounding against a brute-force nearest-magnitude search."""
    grid = torch.tensor(E2M1_MAGNITUDES)
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 4)  # scale 1: the amax is 6
    weight = torch.cat([torch.stack([ties, -ties]), torch.randn(6, 32) * torch.logspace(-4, 0, 32)])
    packed, scale = quantize_fp4(weight)
    scaled = weight / scale.float().repeat_interleave(32, 1)
    nearest = grid[(scaled.abs()[..., None] - grid).abs().argmin(-1)] * scaled.sign()  # argmin: first
    assert torch.equal(dequantize_fp4(packed, scale), nearest * scale.float().repeat_interleave(32, 1))
    assert dequantize_fp4(packed, scale)[0, :8].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def test_the_cli_names_the_backends_variants():
    assert tuple(VARIANTS) == PACK_VARIANTS


def codeagent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_generate_with_pack_runs_end_to_end(folders):
    proc = codeagent(
        "generate", "--model", str(folders["qwen3_moe"]), "--dtype", "bfloat16", "--pack", "fp8",
        "--prompt-ids", "3,17,99,250,7", "--max-tokens", "8", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["pack"] == "fp8" and len(report["token_ids"]) == 8 and report["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--pack", "int4"], "argument --pack: invalid choice: 'int4'"),
        (["--pack", "fp8", "--tp", "2"], "--pack runs with one process for now"),
    ],
)
def test_generate_refuses_in_one_line(folders, argv, needle):
    proc = codeagent("generate", "--model", str(folders["qwen3_moe"]), "--prompt-ids", "1", *argv)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("command", [[], ["serve"], ["fix"], ["eval"], ["generate"]])
def test_every_model_command_takes_pack(command):
    assert "--pack {fp8,fp4}" in codeagent(*command, "--help").stdout
