"""``bench cpu``'s order of work: the model, the bandwidth, our side, llama.cpp's, the report.

The streaming read is measured before and after the runs and the higher figure is the
roofline's bandwidth (a busy neighbour only lowers a reading). Our dtypes run one after
another, each model freed before the next; llama.cpp runs last, when our weights are gone,
so both sides have the same memory to themselves. A side that fails is recorded with its
error and the rest goes on.
"""

from __future__ import annotations

import functools
import gc
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codeagent.backend.loader import LoadError
from codeagent.backend.models.qwen3_moe import Qwen3MoeConfig
from codeagent.bench.cpu import llamacpp, model, report, vocab
from codeagent.bench.cpu.bandwidth import cpu_seconds, others, read_bandwidth
from codeagent.bench.cpu.ours import run_ours
from codeagent.bench.cpu.paired import PAIRS, paired
from codeagent.bench.machine import machine


@dataclass(frozen=True, slots=True)
class Options:
    folder: Path | None = None
    llama_cpp: Path | None = None
    dtypes: tuple[str, ...] = ("bfloat16", "fp8", "fp4")
    quants: tuple[str, ...] = ("bf16", "q8_0", "q4_k_m")
    prefill: int = 8192
    prompt_tokens: int = 32
    new_tokens: int = 32
    greedy_tokens: int = 16
    threads: int | None = None
    repeats: int = 2
    layers: int | None = None
    tiny: bool = False
    rounds: int = 5


def bench_cpu(options: Options, log: Callable[[str], None]) -> dict[str, Any]:
    """Run everything ``options`` asks; RuntimeError when it cannot start (a bad tree or folder)."""
    if options.threads:
        torch.set_num_threads(options.threads)
    threads = torch.get_num_threads()
    tree = llamacpp.find_tree(options.llama_cpp) if options.llama_cpp else None
    shapes = model.TINY if options.tiny else model.REAL
    layers = options.layers or model.layers_for(shapes)
    raw = model.config(shapes, layers)
    folder = model.ensure(options.folder or model.default_folder(shapes, layers), raw, log)
    read_size = (64 << 20) if options.tiny else (2 << 30)
    started, usage = time.perf_counter(), cpu_seconds()
    before = read_bandwidth(read_size)
    log(f"streaming read: {before / 1e9:.1f} GB/s")
    results: dict[str, Any] = {
        "benchmark": "cpu",
        "model": _describe(shapes, layers, folder),
        "machine": machine(),
        "codeagent_commit": _our_commit(),
        "date": time.strftime("%Y-%m-%d"),
        "sizes": {"prompt_tokens": options.prompt_tokens, "new_tokens": options.new_tokens,
                  "prefill_tokens": options.prefill, "sequences": 8},
        "threads": {"ours": threads, "llama_cpp": threads if tree else None},
    }  # fmt: skip
    prompt_ids = vocab.encode(folder, vocab.PROMPT)
    results["ours"] = {
        name: _ours(folder, name, options, raw["vocab_size"], prompt_ids, log) for name in options.dtypes
    }
    if tree is not None:
        results["llama_cpp"] = _theirs(tree, folder, options, threads, log)
        results["paired"] = _paired(results, tree, folder, options, threads, log)
    after = read_bandwidth(read_size)
    log(f"streaming read again: {after / 1e9:.1f} GB/s")
    results["bandwidth"] = {
        "method": f"torch.sum over {read_size >> 20} MiB of float32, {threads} threads, best of 5",
        "GB_per_s_before": round(before / 1e9, 2),
        "GB_per_s_after": round(after / 1e9, 2),
        "GB_per_s": round(max(before, after) / 1e9, 2),
    }
    results["contention"] = others(usage, time.perf_counter() - started)
    _rooflines(results, Qwen3MoeConfig.from_dict(raw), max(before, after), options)
    if tree is not None:
        results["greedy_check"] = _greedy(results, folder, prompt_ids)
    results["targets"], results["target_notes"] = report.targets(results)
    if options.tiny:
        results["targets"] = dict.fromkeys(results["targets"])
        results["target_notes"] = dict.fromkeys(
            results["targets"], "--tiny: toy shapes, timings mean nothing"
        )
    return results


def _our_commit() -> str:
    """This checkout's commit, marked ``+dirty`` with uncommitted changes (the kernels run are the tree's)."""
    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        return "unknown"
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _describe(shapes: model.Shapes, layers: int, folder: Path) -> dict[str, Any]:
    s = shapes
    return {
        "description": (
            f"random Qwen3-MoE at {s.name}'s layer shapes (hidden {s.hidden}, {s.heads}/{s.kv_heads} heads of "
            f"{s.head_dim}, {s.experts} experts top-{s.top_k} of width {s.width}, vocab {s.vocab}), {layers} layers"
        ),
        "layers": layers,
        "vocab": s.vocab,
        "checkpoint_bytes_bf16": model.checkpoint_bytes(folder),
        "folder": str(folder),
    }


def _ours(
    folder: Path,
    dtype: str,
    options: Options,
    vocab_size: int,
    prompt_ids: list[int],
    log: Callable[[str], None],
) -> dict[str, Any]:
    sizes = {
        "prompt_tokens": options.prompt_tokens, "new_tokens": options.new_tokens, "prefill": options.prefill,
        "greedy_tokens": options.greedy_tokens, "vocab": vocab_size,
    }  # fmt: skip
    try:
        return run_ours(folder, dtype, sizes, prompt_ids, log)
    except (RuntimeError, LoadError, MemoryError) as err:
        log(f"ours {dtype} failed: {err}")
        return {"error": str(err)}
    finally:
        gc.collect()


def _theirs(
    tree: llamacpp.Tree, folder: Path, options: Options, threads: int, log: Callable[[str], None]
) -> dict[str, Any]:
    out: dict[str, Any] = {"tree": str(tree.root), "commit": tree.commit, "variants": {}, "greedy_text": {}}
    try:
        files = llamacpp.gguf_files(tree, folder, options.quants, log)
    except RuntimeError as err:
        log(f"llama.cpp conversion failed: {err}")
        return {**out, "error": str(err)}
    for quant, path in files.items():
        out["variants"][quant] = _variant(tree, path, quant, options, threads, log)
    for quant in ("f32", "bf16"):
        if quant in files and llamacpp.greedy_tool(tree):
            try:
                out["greedy_text"][quant] = llamacpp.greedy_text(
                    tree, files[quant], vocab.PROMPT, options.greedy_tokens, quant == "f32", threads
                )
            except RuntimeError as err:
                out["greedy_text"][quant] = {"error": str(err)}
    return out


def _variant(
    tree: llamacpp.Tree, path: Path, quant: str, options: Options, threads: int, log: Callable[[str], None]
) -> dict[str, Any]:
    try:
        probe = functools.partial(read_bandwidth, 1 << 30, 3)
        row = llamacpp.bench(tree, path, threads, options.new_tokens, options.prefill, options.repeats, probe)
        log(f"llama.cpp {quant.upper()}: batch-1 decode {row['batch1_decode_tokens_per_s']} tok/s, "
            f"prefill {row['prefill_tokens_per_s']} tok/s")  # fmt: skip
        row["concurrent8"] = llamacpp.batched(
            tree, path, threads, options.prompt_tokens, options.new_tokens, 8
        )
        log(
            f"llama.cpp {quant.upper()}: 8 sequences {row['concurrent8']['decode_tokens_per_s']} tok/s decode"
        )
        row["tensors"] = llamacpp.tensor_bytes(tree, path)
    except RuntimeError as err:
        log(f"llama.cpp {quant.upper()} failed: {err}")
        return {"error": str(err)}
    row["file_bytes"], row["file"] = path.stat().st_size, str(path)
    return row


def _paired(
    results: dict[str, Any],
    tree: llamacpp.Tree,
    folder: Path,
    options: Options,
    threads: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Batch-1 decode in turns (``paired``) for each pair whose both sides ran."""
    out: dict[str, Any] = {}
    sizes = {
        "prompt_tokens": options.prompt_tokens, "new_tokens": options.new_tokens,
        "vocab": results["model"]["vocab"], "rounds": options.rounds,
    }  # fmt: skip
    for name, quant in PAIRS.items():
        mine, theirs = results["ours"].get(name), results["llama_cpp"]["variants"].get(quant)
        if options.rounds and mine and theirs and "error" not in mine and "error" not in theirs:
            try:
                out[name] = paired(folder, name, tree, Path(theirs["file"]), sizes, threads, log)
            except (RuntimeError, LoadError, MemoryError) as err:
                out[name] = {"error": str(err)}
            finally:
                gc.collect()
    return out


def _adjacent(row: dict[str, Any]) -> None:
    """The batch-1 figure against the bandwidth read just before it, too (in place)."""
    step, adjacent = row["bytes_per_step"]["batch1"], row["bandwidth_adjacent_GB_per_s"] * 1e9
    row["roofline"]["batch1"]["of_adjacent_bandwidth"] = round(
        row["batch1_decode_tokens_per_s"] * step / adjacent, 3
    )


def _rooflines(results: dict[str, Any], config: Qwen3MoeConfig, bandwidth: float, options: Options) -> None:
    """Each decode figure as a fraction of bytes-per-step over the bandwidth (in place)."""
    ours_context = options.prompt_tokens + options.new_tokens // 2
    for row in results["ours"].values():
        if "error" in row:
            continue
        step = row["bytes_per_step"]
        row["roofline"] = {
            "batch1": report.roofline(row["batch1_decode_tokens_per_s"], 1, step["batch1"], bandwidth),
            "concurrent8": report.roofline(
                row["concurrent8"]["decode_tokens_per_s"], 8, step["concurrent8"], bandwidth
            ),
        }
        _adjacent(row)
    for row in ((results.get("llama_cpp") or {}).get("variants") or {}).values():
        if "error" in row:
            continue
        tensors = row.pop("tensors")
        one = report.gguf_bytes(tensors, config, 1, options.new_tokens // 2)  # llama-bench decodes from empty
        eight = report.gguf_bytes(tensors, config, 8, ours_context)
        row["bytes_per_step"] = {"batch1": round(one), "concurrent8": round(eight)}
        row["roofline"] = {
            "batch1": report.roofline(row["batch1_decode_tokens_per_s"], 1, one, bandwidth),
            "concurrent8": report.roofline(row["concurrent8"]["decode_tokens_per_s"], 8, eight, bandwidth),
        }
        _adjacent(row)


def _greedy(results: dict[str, Any], folder: Path, prompt_ids: list[int]) -> dict[str, Any]:
    """Our greedy tokens against llama.cpp's text, float32 with F32 and bfloat16 with BF16 (where both
    ran). Random weights put near-ties among 151,936 logits (gaps of 1e-4), so bf16 roundings part
    the two early; float32 against F32 (float32 KV, no flash attention) is the check that both run
    the same model."""
    out: dict[str, Any] = {"prompt": vocab.PROMPT, "prompt_ids": prompt_ids}
    texts = results["llama_cpp"].get("greedy_text") or {}
    for dtype, quant in (("float32", "f32"), ("bfloat16", "bf16")):
        ours, theirs = results["ours"].get(dtype), texts.get(quant)
        if ours is None or theirs is None or "error" in ours or isinstance(theirs, dict):
            continue
        pieces = [vocab.decode(folder, [i]) for i in ours["greedy_token_ids"]]
        common = report.common_prefix(pieces, theirs)
        out[f"{dtype}_vs_{quant}"] = {
            "ours_text": "".join(pieces),
            "llama_cpp_text": theirs,
            "leading_tokens_in_common": common,
            "tokens": len(pieces),
            "same": common == len(pieces),
        }
    if len(out) == 2:
        out["skipped"] = (
            "no pair of our float32/bfloat16 with llama.cpp's F32/BF16 ran (or no llama-completion/llama-simple)"
        )
    return out
