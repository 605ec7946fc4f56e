"""The plan of ``codeagent bench gpu``: validated arguments, sizes, and what the device holds.

``make_plan`` turns the parsed arguments into a ``Plan`` or a ``PlanError`` that says
what is wrong (bad sizes, a model that cannot fit, no device); the rest are facts every
side of the run reads: free memory, the device's name and bf16 peak, seeded prompts,
memory given back between models. Both sides (``ours``, ``reference``) and the report
import this module only (the run ties them together in ``run``).
"""

from __future__ import annotations

import gc
import importlib.util
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from codeagent.backend.runtime import DTYPES, pick_device, pick_dtype
from codeagent.bench import roofline
from codeagent.bench.random_weights import config_for, parse_config

SCENARIOS = ("decode", "prefill", "prefix")
FULL_SIZES = {
    "batches": (1, 8, 32, 64),
    "contexts": (1024, 32768, 131072),
    "prefills": (8192, 32768),
    "prefix": 100_000,
    "follow_up": 500,
    "decode_tokens": 32,
}
TINY_SIZES = {
    "batches": (1, 2, 4),
    "contexts": (16, 64),
    "prefills": (32, 64),
    "prefix": 96,
    "follow_up": 8,
    "decode_tokens": 4,
}
BF16_PEAKS = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12))
WEIGHT_SHARE = 0.85  # of free memory the weights may take; the rest is the KV pool's and activations'
Log = Callable[[str], None]


class PlanError(ValueError):
    """A benchmark that cannot run as asked: bad sizes, not enough memory, no device."""


@dataclass(slots=True)
class Plan:
    name: str
    raw: dict[str, Any]  # config.json of the model built, cut to its layers
    full_layers: int  # layers of the released (or tiny) configuration
    tiny: bool
    device: torch.device
    dtype: torch.dtype
    scenarios: tuple[str, ...]
    batches: tuple[int, ...]
    contexts: tuple[int, ...]
    prefills: tuple[int, ...]
    prefix: int
    follow_up: int
    decode_tokens: int
    reference: bool
    reference_max_tokens: int
    reference_chunk: int
    max_batch_tokens: int
    kv_cache_bytes: int | None
    seed: int
    config: Any = field(init=False)  # the family's typed config

    def __post_init__(self) -> None:
        self.config = parse_config(self.raw)

    @property
    def layers(self) -> int:
        return int(self.raw["num_hidden_layers"])


def make_plan(args: Any) -> Plan:
    """A validated plan from the ``bench gpu`` arguments; PlanError says what is wrong."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise PlanError(
            "--device cuda: torch sees no CUDA device here (--tiny --device cpu checks the harness)"
        )
    device = torch.device(pick_device(args.device))
    dtype = DTYPES[pick_dtype(args.dtype, device)]
    layers = args.layers
    if layers == "fit":  # not one that fits: keep one, which the check refuses with the reason
        layers = layers_that_fit(args.gpu_config, args.tiny, dtype, WEIGHT_SHARE * free_memory(device)) or 1
    try:
        raw = config_for(args.gpu_config, args.tiny, layers)
    except ValueError as err:
        raise PlanError(f"{args.gpu_config}: {err}") from None
    v4 = raw["architectures"][0] == "DeepseekV4ForCausalLM"
    try:
        plan = _plan(args, raw, device, dtype, v4)
    except ValueError as err:  # the configuration cut to these layers is no model
        raise PlanError(f"{args.gpu_config} cut to {raw['num_hidden_layers']} layers: {err}") from None
    _check(plan)
    return plan


def _plan(args: Any, raw: dict[str, Any], device: torch.device, dtype: torch.dtype, v4: bool) -> Plan:
    sizes = TINY_SIZES if args.tiny else FULL_SIZES
    return Plan(
        name=args.gpu_config,
        raw=raw,
        full_layers=config_for(args.gpu_config, args.tiny)["num_hidden_layers"],
        tiny=args.tiny,
        device=device,
        dtype=dtype,
        scenarios=args.scenarios,
        **{key: getattr(args, key) or default for key, default in sizes.items()},
        reference=not args.no_reference,
        reference_max_tokens=args.reference_max_tokens,
        reference_chunk=args.reference_chunk or (1024 if v4 else 4096),
        max_batch_tokens=args.max_batch_tokens or (2048 if v4 else 8192),
        kv_cache_bytes=int(args.kv_cache_gb * 2**30) if args.kv_cache_gb else None,
        seed=args.seed,
    )


def _check(plan: Plan) -> None:
    longest = max(
        max(plan.contexts) + plan.decode_tokens, max(plan.prefills) + 1, plan.prefix + plan.follow_up + 1
    )
    window = plan.raw["max_position_embeddings"]
    if longest > window:
        raise PlanError(f"{plan.name} takes {window} positions; the sizes asked need {longest}")
    if plan.reference and importlib.util.find_spec("transformers") is None:
        raise PlanError("the reference is transformers: pip install -e '.[test]', or pass --no-reference")
    need = roofline.weight_bytes(plan.config, plan.dtype)
    budget = WEIGHT_SHARE * free_memory(plan.device)
    if need > budget:
        fit = layers_that_fit(plan.name, plan.tiny, plan.dtype, budget)
        raise PlanError(
            f"{plan.name} ({plan.layers} layers, {str(plan.dtype).removeprefix('torch.')}) needs "
            f"{need / 1e9:.1f} GB of weights; the weights may take {budget / 1e9:.1f} GB of {plan.device.type} "
            f"memory ({WEIGHT_SHARE:.0%} of what is free); "
            + (f"--layers {fit} fits" if fit else "not even one layer fits")
        )


def layers_that_fit(name: str, tiny: bool, dtype: torch.dtype, budget: float) -> int:
    """How many of a configuration's first layers fit ``budget`` bytes of weights (0: not one)."""
    fit = 0
    for layers in range(1, config_for(name, tiny)["num_hidden_layers"] + 1):
        try:
            need = roofline.weight_bytes(parse_config(config_for(name, tiny, layers)), dtype)
        except ValueError:  # no model at this cut (Qwen3-Next's needs a gated-attention layer)
            continue
        if need > budget:
            break
        fit = layers
    return fit


def free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return f"cpu: {platform.machine()}"


def bf16_peak(name: str) -> float | None:
    """The device's dense bf16 FLOP/s, for the GPUs the targets are set on; None elsewhere."""
    return next((peak for key, peak in BF16_PEAKS if key in name), None)


def tokens(n: int, seed: int, vocab: int) -> list[int]:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def release(device: torch.device) -> None:
    """Give a freed model's memory back before the next one is built."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
