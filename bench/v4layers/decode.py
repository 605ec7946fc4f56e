"""Batch-1 steps through the layers with each layer timed, and where a layer's time goes.

``timed_step`` runs one token through the model as ``DeepseekV4ForCausalLM.logits`` does (the
embedding repeated into the streams, each layer with its rotation and its state, the state's
length, the head) with a wall-clock reading around every layer; ``tests/bench`` checks that
its logits are the model's own. ``prefill`` feeds the prompt in chunks the packed kernels take
(``CHUNK`` tokens), each layer timed the same way. ``profile_layers`` runs further steps
under cProfile, switched on around one layer at a time, and sums each layer's functions per
step: torch's operators by name, our Python by function, and the native kernels by kernel
(``native: linear_fp8``), timed in C by ``NativeCall.run`` while ``native_build.timings`` is on
(a ctypes call is not profiled apart: ``run``'s own time less theirs is its Python).

Limits: it follows ``logits`` by hand (one sequence, no block tables); a change there must be
made here too, which the test's logits comparison catches.
"""

from __future__ import annotations

import collections
import cProfile
import pstats
import time
from typing import Any

import torch

from codeagent.backend.distributed.vocab import embed
from codeagent.backend.kernels import native_build
from codeagent.backend.layers.linear import head_logits
from codeagent.backend.models.base import Step
from codeagent.backend.models.deepseek_v4.mhc import head_collapse
from codeagent.backend.models.deepseek_v4.model import DeepseekV4ForCausalLM, DeepseekV4State
from codeagent.backend.models.deepseek_v4.norm import rms_norm
from codeagent.backend.models.deepseek_v4.rope import rope_cos_sin

CHUNK = 64  # prompt tokens a prefill forward takes: the packed MoE kernel's most rows
Timer = list[float]


@torch.inference_mode()
def timed_step(
    model: DeepseekV4ForCausalLM,
    state: DeepseekV4State,
    tokens: list[int],
    seconds: list[Timer],
    profiles: list[cProfile.Profile] | None = None,
    kernels_in_c: list[tuple[dict[str, float], collections.Counter[str]]] | None = None,
) -> torch.Tensor:
    """``tokens`` through every layer (seconds[i] gets layer i's time; profiles[i], if given,
    profiles it, and kernels_in_c[i] sums its native kernels' seconds in C and their calls by
    kernel) -> the last token's logits [vocab] float32."""
    c, k = model.config, model.kernels
    ids = torch.tensor(tokens)
    positions = torch.arange(len(tokens)) + state.length
    step = Step(k, [len(tokens)], None)
    streams = embed(model.embed, ids, model.vocab, model.group)[:, None, :].repeat(1, c.hc_mult, 1)
    rotations = {kind: rope_cos_sin(positions, *rope) for kind, rope in model.ropes.items()}
    for i, layer in enumerate(model.layers):
        profile = profiles[i] if profiles is not None else None
        if profile is not None:
            native_build.timings = kernels_in_c[i][0] if kernels_in_c is not None else None
            before = collections.Counter(native_build.calls)
            profile.enable()
        started = time.perf_counter()
        streams = layer.forward(
            streams, ids, positions, rotations[layer.attn.rope_kind], [state.layers[i]], step
        )
        seconds[i].append(time.perf_counter() - started)
        if profile is not None:
            profile.disable()
            native_build.timings = None
            if kernels_in_c is not None:
                kernels_in_c[i][1].update(native_build.calls - before)
    state.length += len(tokens)
    h = head_collapse(streams[-1:], *model.head_hc, c.hc_eps, c.rms_norm_eps, k)
    return head_logits(rms_norm(h, model.norm, c.rms_norm_eps, k), model.head, k).float()[0]


def prefill(model: DeepseekV4ForCausalLM, state: DeepseekV4State, prompt: list[int]) -> list[Timer]:
    """The prompt in chunks of ``CHUNK`` -> per layer, the seconds of each whole chunk."""
    seconds: list[Timer] = [[] for _ in model.layers]
    for start in range(0, len(prompt), CHUNK):
        timed_step(model, state, prompt[start : start + CHUNK], seconds)
    return seconds


def decode(model: DeepseekV4ForCausalLM, state: DeepseekV4State, token: int, steps: int) -> list[Timer]:
    """``steps`` greedy batch-1 steps from ``token`` -> per layer, the seconds of each step."""
    seconds: list[Timer] = [[] for _ in model.layers]
    for _ in range(steps):
        token = int(timed_step(model, state, [token], seconds).argmax())
    return seconds


def profile_layers(
    model: DeepseekV4ForCausalLM, state: DeepseekV4State, token: int, steps: int, top: int = 12
) -> list[list[dict[str, Any]]]:
    """Per layer, its ``top`` functions by own time over ``steps`` more steps: name, calls and
    milliseconds per step."""
    profiles = [cProfile.Profile() for _ in model.layers]
    in_c: list[tuple[dict[str, float], collections.Counter[str]]] = [
        ({}, collections.Counter()) for _ in model.layers
    ]
    seconds: list[Timer] = [[] for _ in model.layers]
    for _ in range(steps):
        token = int(timed_step(model, state, [token], seconds, profiles, in_c).argmax())
    return [_top(profile, steps, top, *kernels) for profile, kernels in zip(profiles, in_c, strict=True)]


def _top(
    profile: cProfile.Profile, steps: int, top: int, in_c: dict[str, float], calls: collections.Counter[str]
) -> list[dict[str, Any]]:
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    rows = []
    for (path, line, function), (_, count, own, _, _) in stats.items():
        name = function if path == "~" else f"{path.rsplit('/', 1)[-1]}:{line}({function})"
        if path.endswith("native_build.py") and function == "run":
            name, own = "native_build.py: NativeCall.run's Python", own - sum(in_c.values())
        rows.append({"op": name, "calls_per_step": count / steps, "ms_per_step": 1e3 * own / steps})
    for kernel, seconds in in_c.items():
        rows.append(
            {
                "op": f"native: {kernel}",
                "calls_per_step": calls[kernel] / steps,
                "ms_per_step": 1e3 * seconds / steps,
            }
        )
    rows.sort(key=lambda row: -row["ms_per_step"])
    return [dict(row, ms_per_step=round(row["ms_per_step"], 3)) for row in rows[:top]]
