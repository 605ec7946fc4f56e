"""``codeagent bench packing``: what the opt-in packing (``backend/packing.py``) costs in accuracy.

A model is built (the tiny random Qwen3-MoE and DeepSeek-V4 of ``random_weights.TINY``) or
loaded (``--model DIR``, a bf16 or float32 checkpoint) in the full-precision dtype; its
logits are read teacher-forced along a fixed random sequence (a ``prompt_tokens`` prefill,
then one token a step, so both prefill and decode kernels answer), and its greedy
continuation of the prompt is taken. Then, for each variant, the same weights are packed
in place and read the same way. Reported per variant:

- ``max_rel``: max |Δ| / max |logit| over every position and vocabulary entry;
- ``mean_rel``: mean |Δ| / mean |logit|;
- ``top1_agreement``: positions whose arg-max token is the full-precision model's;
- ``greedy_agreement``: greedy tokens equal to the full-precision model's, up to the first
  difference (after it, the two continue different texts), and that first difference;
- the bytes converted, before and after, and the conversion's time.

``fp4-int8`` packs as ``fp4`` and runs the FP4 products with int8 activations
(``native_packed.int8``; where the build lacks them it is the float route, and says so);
``fp4`` then runs the float route, and with both, ``fp4-int8`` also gets the same measures
against ``fp4`` (``against_fp4``): the activations' rounding alone.

``logits_along``, ``greedy`` and ``logit_error`` are the test's measures too
(``tests/backend/test_packing.py``).

Limits: random weights, whose logits are flatter than a trained model's (a near tie flips
the arg-max on a small error), so agreement here is a floor rather than an estimate for
real checkpoints. One model is in memory at a time: a checkpoint is loaded once per
variant and packed in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from codeagent.backend.kernels import native_packed
from codeagent.backend.loader import LoadError
from codeagent.backend.models.base import SeqSlice
from codeagent.backend.packing import VARIANTS, PackError, check_checkpoint, head_format, pack
from codeagent.backend.runtime import load
from codeagent.bench.machine import machine
from codeagent.bench.random_weights import TINY, random_model

TINY_MODELS = ("qwen3-coder-30b-a3b", "deepseek-v4-flash")
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
Build = Callable[[], Any]  # a fresh full-precision model, the same weights each call
PACKING = {"fp4-int8": "fp4"}  # variants packed as another, run another way


def logits_along(model: Any, ids: list[int], prompt: int) -> torch.Tensor:
    """Teacher-forced logits: the prefill of ``ids[:prompt]``, then one token a step ->
    [len(ids) - prompt + 1, vocab] float32, row i predicting token ``prompt + i``."""
    state = model.new_state()
    rows = [model(torch.tensor(ids[:prompt]), torch.arange(prompt), [SeqSlice(state, prompt)])[0]]
    for p in range(prompt, len(ids)):
        rows.append(model(torch.tensor([ids[p]]), torch.tensor([p]), [SeqSlice(state, 1)])[0])
    return torch.stack(rows).float().cpu()


def greedy(model: Any, prompt: list[int], new_tokens: int) -> list[int]:
    """``new_tokens`` arg-max tokens after ``prompt``, one decode step each."""
    state, out = model.new_state(), []
    logits = model(torch.tensor(prompt), torch.arange(len(prompt)), [SeqSlice(state, len(prompt))])
    for p in range(len(prompt), len(prompt) + new_tokens):
        out.append(int(logits[0].argmax()))
        if len(out) < new_tokens:
            logits = model(torch.tensor([out[-1]]), torch.tensor([p]), [SeqSlice(state, 1)])
    return out


def logit_error(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Relative logit error of ``other`` [N, vocab] against ``reference``, and arg-max agreement."""
    delta = (other - reference).abs()
    return {
        "max_rel": float(delta.max() / reference.abs().max()),
        "mean_rel": float(delta.mean() / reference.abs().mean()),
        "top1_agreement": float((other.argmax(-1) == reference.argmax(-1)).float().mean()),
    }


def greedy_agreement(reference: list[int], other: list[int]) -> dict[str, Any]:
    first = next((i for i, (a, b) in enumerate(zip(reference, other, strict=True)) if a != b), None)
    return {
        "greedy_agreement": (len(reference) if first is None else first) / len(reference),
        "greedy_first_difference": first,
    }


def measure(
    build: Build, variants: tuple[str, ...], sizes: dict[str, int], log: Callable[[str], None]
) -> dict[str, Any]:
    """The full-precision model's logits and greedy tokens, then each variant's against them."""
    generator = torch.Generator().manual_seed(0)
    model = build()
    vocab = model.config.vocab_size
    ids = torch.randint(
        0, vocab, (sizes["prompt_tokens"] + sizes["positions"] - 1,), generator=generator
    ).tolist()
    prompt = ids[: sizes["prompt_tokens"]]
    reference = logits_along(model, ids, len(prompt))
    tokens = greedy(model, prompt, sizes["greedy_tokens"])
    out: dict[str, Any] = {"greedy_token_ids": tokens}
    seen: dict[str, tuple[torch.Tensor, list[int]]] = {}
    for variant in variants:
        model = model if model is not None else build()
        started = time.perf_counter()
        converted = pack(model, PACKING.get(variant, variant))
        pack_s = time.perf_counter() - started
        native_packed.set_int8(variant == "fp4-int8")
        try:
            logits = logits_along(model, ids, len(prompt))
            packed = greedy(model, prompt, sizes["greedy_tokens"])
        finally:
            native_packed.set_int8(None)
        seen[variant] = logits, packed
        row = logit_error(reference, logits)
        row.update(greedy_agreement(tokens, packed), greedy_token_ids=packed, pack_s=round(pack_s, 2))
        if variant == "fp4-int8":
            row["int8_activations"] = native_packed.int8_built()
            if "fp4" in seen:
                row["against_fp4"] = {
                    **logit_error(seen["fp4"][0], logits),
                    **greedy_agreement(seen["fp4"][1], packed),
                }
        row.update(bytes_before=sum(c.before for c in converted), bytes_after=sum(c.after for c in converted))
        row["head_format"] = head_format(converted)
        log(
            f"{variant}: max_rel {row['max_rel']:.4f}, mean_rel {row['mean_rel']:.4f}, top1 {row['top1_agreement']:.3f}"
        )
        out[variant] = row
        model = None  # packed in place: the next variant starts from fresh weights
    return out


def bench_packing(
    folder: Path | None,
    variants: tuple[str, ...],
    sizes: dict[str, int],
    dtype: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """``sizes``: prompt_tokens, positions (logits compared), greedy_tokens."""
    if folder is None:
        models = {f"tiny random {name}": _tiny(name, DTYPES[dtype]) for name in TINY_MODELS}
    else:
        models = {str(folder): _checkpoint(folder, dtype)}
    results: dict[str, Any] = {}
    for name, build in models.items():
        log(f"{name} in {dtype}")
        results[name] = measure(build, variants, sizes, log)
    return {
        "scenario": "packing",
        "machine": machine(),
        "dtype": dtype,
        **sizes,
        "formats": {
            v: {
                "dense": VARIANTS[PACKING.get(v, v)].dense,
                "head": VARIANTS[PACKING.get(v, v)].head,  # where its width is whole blocks (head_format)
                "experts": VARIANTS[PACKING.get(v, v)].experts,
                "activations": "int8 per 32 inputs in the FP4 and INT6 products"
                if v == "fp4-int8"
                else "float32 (INT6: the float route)",
            }
            for v in variants
        },
        "models": results,
    }


def _tiny(name: str, dtype: torch.dtype) -> Build:
    return lambda: random_model(TINY[name], dtype, "cpu", seed=0)


def _checkpoint(folder: Path, dtype: str) -> Build:
    try:
        check_checkpoint(folder)
    except (PackError, LoadError) as err:
        raise RuntimeError(str(err)) from None

    def build() -> Any:
        try:
            return load(folder, dtype, "cpu").checkpoint.model
        except LoadError as err:
            raise RuntimeError(str(err)) from None

    return build
