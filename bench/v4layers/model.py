"""A few DeepSeek-V4-Flash layers at full width, random weights built directly in the runtime's formats.

The configuration is the released one that ships with codeagent
(``backend/planning/configs/DeepSeek-V4-Flash.json``; its sources are in ``PROVENANCE.md``),
cut to one layer of each kind asked (``KINDS``: a sliding-window layer, a compressed sparse
one with its compressor and Lightning indexer, a heavily compressed one), each routed as the
release routes that kind: the sliding layers by the hash table (the release's first three
layers are hash-routed), the others by the learned router.

Weights are allocated by the model itself (``DeepseekV4ForCausalLM``, bf16) and filled in
place; nothing is written to disk and no full-precision copy of a packed weight exists:

- routed experts: ``PackedExperts`` FP4 e2m1 with a UE8M0 scale per 32 inputs (random codes,
  scales near 2^-7), as the release ships them and the loader keeps them;
- attention's ``wq_a``, ``wq_b``, ``wkv``, ``wo_a``, ``wo_b`` and the indexer's ``wq_b``:
  ``PackedWeight`` FP8 e4m3 with 128 x 128 block scales (normal(0, 0.02), quantized), as the
  release ships them and as ``backend/packing.py`` keeps them;
- everything else as the loader leaves a release checkpoint: the shared expert in bf16 (the
  release's FP8, dequantized at load), compressors, mHC, norms, sinks and routers in float32,
  the indexer's ``weights_proj`` in bf16, hash tables int64 (``bench.random_weights`` rules).

The embedding and LM head are measured apart (``head.py``): the model keeps a small
vocabulary (``VOCAB``) so that three layers fit in about 11 GB.

Limits: random routers route about uniformly (a trained one is skewed, which changes nothing
at batch 1: six experts a token either way); the random values mean nothing, only shapes,
formats and placement do.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch

from codeagent.backend.kernels.dispatch import Kernels
from codeagent.backend.models.deepseek_v4.config import DeepseekV4Config
from codeagent.backend.models.deepseek_v4.model import DeepseekV4ForCausalLM
from codeagent.backend.models.deepseek_v4.weights import scope
from codeagent.backend.packed_weights import PackedExperts, PackedWeight
from codeagent.backend.planning.source import shipped_config
from codeagent.backend.quant import FP4_GROUP
from codeagent.bench.random_weights import TINY, fill_random_

MODEL_ID = "deepseek-ai/DeepSeek-V4-Flash"
KINDS = {"sliding": 0, "csa": 4, "hca": 128}  # layer kind -> the release's compress ratio
TINY_RATES = {"sliding": 0, "csa": 4, "hca": 8}  # tiny contexts reach a rate of 8
VOCAB = 1024  # the layers' model: its embedding and head are not what is timed
DENSE_FP8 = re.compile(r"attn\.(wq_a|wq_b|wkv|wo_a|wo_b|indexer\.wq_b)\.weight$")
ROUTED = re.compile(r"ffn\.(w13|w2)$")
FP4_SCALE = 120  # UE8M0 exponent byte: 2^-7, so random e2m1 codes give weights of about +-0.02
MATRIX_STD = 0.02


def released_config(tiny: bool = False) -> dict[str, Any]:
    """V4-Flash's ``config.json`` as released (``tiny``: the same family at toy widths)."""
    if tiny:
        return copy.deepcopy(TINY["deepseek-v4-flash"])
    raw = shipped_config(MODEL_ID)
    if raw is None:
        raise RuntimeError(f"{MODEL_ID}'s config.json does not ship with this codeagent")
    return copy.deepcopy(raw)


def layers_config(kinds: tuple[str, ...], tiny: bool = False) -> dict[str, Any]:
    """The released config cut to one layer per entry of ``kinds`` (``KINDS``' names)."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"layer kinds {unknown or '(none)'}: choose among {', '.join(KINDS)}")
    raw = released_config(tiny)
    rates = TINY_RATES if tiny else KINDS
    raw.update(
        num_hidden_layers=len(kinds),
        compress_ratios=[rates[k] for k in kinds],
        mlp_layer_types=["hash_moe" if k == "sliding" else "moe" for k in kinds],
        vocab_size=min(raw["vocab_size"], VOCAB),
        quantization_config={"fmt": "e4m3", "scale_fmt": "ue8m0", "weight_block_size": [128, 128]},
        expert_dtype="fp4",
    )
    raw.pop("num_hash_layers", None)
    return raw


def depth(tiny: bool = False) -> dict[str, int]:
    """How many layers of each kind the released model has (its MTP layer left out)."""
    raw = released_config(tiny)
    ratios = raw["compress_ratios"][: raw["num_hidden_layers"]]
    rates = TINY_RATES if tiny else KINDS
    return {kind: sum(1 for r in ratios if r == rate) for kind, rate in rates.items()}


def build(raw: dict[str, Any], kernels: Kernels, seed: int = 0) -> DeepseekV4ForCausalLM:
    """The model of ``raw`` in bf16 on the CPU, every weight random in its runtime format."""
    config = DeepseekV4Config.from_dict(raw)
    model = DeepseekV4ForCausalLM(config, dtype=torch.bfloat16, keep_quantized=True, kernels=kernels)
    generator = torch.Generator().manual_seed(seed)
    w = model.w
    with torch.no_grad():
        for index, layer in enumerate(model.layers):
            prefix = f"layers.{index}."
            for name in [n for n in w if n.startswith(prefix)]:
                if ROUTED.search(name):
                    w[name] = random_fp4_experts(tuple(w[name].shape), generator)
                elif DENSE_FP8.search(name):
                    w[name] = random_fp8(tuple(w[name].shape), generator)
                else:
                    fill_random_(name, w[name], generator, config.n_routed_experts)  # type: ignore[arg-type]
            layer.bind(scope(w, prefix))
        for name in (
            "embed.weight",
            "head.weight",
            "norm.weight",
            "hc_head_fn",
            "hc_head_base",
            "hc_head_scale",
        ):
            fill_random_(name, w[name], generator)  # type: ignore[arg-type]
    return model.eval()


def random_fp4_experts(shape: tuple[int, ...], generator: torch.Generator) -> PackedExperts:
    """[E, N, K] FP4 experts: random e2m1 codes, UE8M0 scales of 2^-7 give or take a binade."""
    experts, rows, cols = shape
    codes = torch.randint(0, 256, (experts, rows, cols // 2), dtype=torch.uint8, generator=generator)
    scale = torch.randint(
        FP4_SCALE - 1, FP4_SCALE + 2, (experts, rows, cols // FP4_GROUP), generator=generator
    )
    return PackedExperts(codes, scale.to(torch.uint8), "fp4")


def random_fp8(shape: tuple[int, ...], generator: torch.Generator) -> PackedWeight:
    """[N, K] normal(0, 0.02) quantized to FP8 with 128 x 128 block scales."""
    weight = torch.empty(shape).normal_(0.0, MATRIX_STD, generator=generator)
    return PackedWeight.quantize(weight, "fp8")
