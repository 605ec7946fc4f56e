"""``bench v4-layers``'s order of work: bandwidth, the head, the layers, the report.

In one process and one run: the streaming read (``bench/cpu/bandwidth.py``), the output head
at V4-Flash's vocabulary (built, timed, freed: ``head.py``), then the layers (``model.py``)
with the prompt prefilled in chunks, the bytes each layer reads for a token (``reads.py``),
``warmup`` batch-1 steps, then ``rounds`` rounds of a streaming read followed by ``steps``
timed steps with each layer timed (``decode.py``), and a few more steps under cProfile for
where each layer's time goes. This shared host's streaming read drifts some 2x over minutes
(30 to 60 GB/s measured within one run), so each round's steps are set against the reading
taken just before them (``report.py``: the median of the rounds' ratios), and against the
highest reading of the run as the strict roofline. ``report.py`` turns the
figures into ratios, the full-depth estimates and the targets.
"""

from __future__ import annotations

import gc
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codeagent.backend.kernels.dispatch import choose
from codeagent.bench.cpu.bandwidth import cpu_seconds, others, read_bandwidth
from codeagent.bench.machine import machine
from codeagent.bench.v4layers import decode, model, report
from codeagent.bench.v4layers.head import time_head
from codeagent.bench.v4layers.reads import layer_bytes

WARMUP = 2  # decode steps left out of the medians


@dataclass(frozen=True, slots=True)
class Options:
    kinds: tuple[str, ...] = ("sliding", "csa", "hca")
    prompt_tokens: int = 256
    steps: int = 4  # timed decode steps a round
    rounds: int = 4
    profile_steps: int = 4
    threads: int | None = None
    server_bandwidth: float = report.SERVER_BANDWIDTH
    tiny: bool = False


def bench_v4layers(options: Options, log: Callable[[str], None]) -> dict[str, Any]:
    """Run the bench as ``options`` asks; RuntimeError when the native packed kernels are missing."""
    if options.threads:
        torch.set_num_threads(options.threads)
    kernels = choose("cpu")
    if kernels.packed is None:
        raise RuntimeError(f"the native packed kernels are needed: {kernels.name}")
    read_size = (64 << 20) if options.tiny else (512 << 20)  # 16 times the L3; 0.5 GB beside the layers
    started, usage = time.perf_counter(), cpu_seconds()
    readings = [read_bandwidth(read_size)]
    log(f"streaming read: {readings[0] / 1e9:.1f} GB/s")
    head = time_head(model.released_config(options.tiny), kernels, options.steps)
    log(f"head: {head['seconds'] * 1e3:.1f} ms")
    gc.collect()
    raw = model.layers_config(options.kinds, options.tiny)
    layers = model.build(raw, kernels)
    log(f"built {len(options.kinds)} layers ({', '.join(options.kinds)}), peak RSS {_peak_rss_gb():.1f} GB")
    figures = _run_layers(layers, options, readings, lambda: read_bandwidth(read_size), log)
    results: dict[str, Any] = {
        "benchmark": "v4-layers",
        "model": _describe(raw, options),
        "machine": machine(),
        "codeagent_commit": _our_commit(),
        "date": time.strftime("%Y-%m-%d"),
        "threads": torch.get_num_threads(),
        "kernels": kernels.name,
        "bandwidth": {
            "GB_per_s": max(readings) / 1e9,
            "median_GB_per_s": statistics.median(readings) / 1e9,
            "readings_GB_per_s": [r / 1e9 for r in readings],
            "read_bytes": read_size,
        },
        "sizes": {
            "prompt_tokens": options.prompt_tokens,
            "rounds": options.rounds,
            "decode_steps_a_round": options.steps,
            "warmup": WARMUP,
        },
        "head": head,
        "layers": figures,
        "peak_rss_GB": _peak_rss_gb(),
        "contention": others(usage, time.perf_counter() - started),
    }
    return report.finish(results, model.depth(options.tiny), options.server_bandwidth, options.tiny)


def _run_layers(
    layers: Any,
    options: Options,
    readings: list[float],
    read: Callable[[], float],
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Prefill, bytes, decode and profile of every layer -> one record per layer. The timed steps
    run in ``options.rounds`` rounds, each just after a streaming read (into ``readings``)."""
    generator = torch.Generator().manual_seed(2)
    vocab = layers.config.vocab_size
    prompt = torch.randint(0, vocab, (options.prompt_tokens,), generator=generator).tolist()
    state = layers.new_state()
    prefill = decode.prefill(layers, state, prompt)
    log(f"prefilled {len(prompt)} tokens")
    reads = [layer_bytes(layers, i, state.layers[i]) for i in range(len(layers.layers))]
    decode.decode(layers, state, prompt[-1], WARMUP)
    rounds: list[list[decode.Timer]] = []  # [round][layer] -> its steps' seconds
    for _ in range(options.rounds):
        readings.append(read())
        rounds.append(decode.decode(layers, state, prompt[-1], options.steps))
    log(f"streaming reads before each round: {', '.join(f'{r / 1e9:.1f}' for r in readings[1:])} GB/s")
    profiles = decode.profile_layers(layers, state, prompt[-1], options.profile_steps)
    sizes = [len(prompt[start : start + decode.CHUNK]) for start in range(0, len(prompt), decode.CHUNK)]
    whole = [j for j, size in enumerate(sizes) if size == max(sizes)]  # a shorter last chunk left out
    out = []
    for i, kind in enumerate(options.kinds):
        out.append(
            {
                "kind": kind,
                "decode_s": [s for steps in rounds for s in steps[i]],
                "rounds": [
                    {"bandwidth_GB_per_s": bandwidth / 1e9, "decode_s": steps[i]}
                    for bandwidth, steps in zip(readings[1:], rounds, strict=True)
                ],
                "prefill_chunk_s": [prefill[i][j] for j in whole],
                "prefill_chunk_tokens": max(sizes),
                "bytes_per_token": reads[i],
                "profile": profiles[i],
            }
        )
        log(f"layer {i} ({kind}): {1e3 * statistics.median(out[-1]['decode_s']):.1f} ms")
    return out


def _describe(raw: dict[str, Any], options: Options) -> dict[str, Any]:
    return {
        "name": f"{model.MODEL_ID} layers" + (" (tiny widths)" if options.tiny else ""),
        "config_source": "backend/planning/configs/DeepSeek-V4-Flash.json (see PROVENANCE.md)",
        "hidden_size": raw["hidden_size"],
        "routed_experts": raw["n_routed_experts"],
        "experts_per_token": raw["num_experts_per_tok"],
        "expert_width": raw["moe_intermediate_size"],
        "heads": raw["num_attention_heads"],
        "head_dim": raw["head_dim"],
        "kinds": list(options.kinds),
        "formats": {
            "routed_experts": "fp4 e2m1, UE8M0 scale per 32 (PackedExperts)",
            "attention": "fp8 e4m3, 128x128 UE8M0 block scales (PackedWeight): wq_a, wq_b, wkv, wo_a, wo_b, indexer wq_b",
            "shared_expert": "bf16 (the release's FP8, as the loader dequantizes it)",
            "compressors_mhc_norms_router": "float32 (as the runtime stores them)",
            "activations": "bf16",
        },
    }


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kilobytes


def _our_commit() -> str:
    """This checkout's commit, ``+dirty`` with uncommitted changes to tracked files."""
    root = str(Path(__file__).resolve().parents[2])
    head = subprocess.run(
        ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        return "unknown"
    status = ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"]
    dirty = subprocess.run(status, capture_output=True, text=True, check=False).stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")
