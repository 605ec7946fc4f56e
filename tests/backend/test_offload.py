"""Routed experts in host memory beside the device (``layers/offload.py``), checked for
exactness with both homes on the CPU: the offloaded model generates the one-home model's
greedy tokens, batched and alone, and the placement follows routing counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.engine import Engine, Request
from codeagent.backend.layers.offload import RoutingCounts, least_used
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import LoadError, load_model

PROMPTS = [[5, 17, 42, 99, 300, 7] * 4, [1, 2, 3], list(range(40, 80))]


def greedy(model) -> list[list[int]]:
    engine = Engine(model, set(), cache=CacheConfig(block_size=8, num_blocks=64))
    requests = [Request(p, SamplingParams(max_tokens=12, ignore_eos=True)) for p in PROMPTS]
    return [r.token_ids for r in engine.generate(requests)]


def test_experts_in_host_memory_give_the_same_tokens(qwen3_moe_dir: Path) -> None:
    expected = greedy(load_model(qwen3_moe_dir).model)
    model = load_model(qwen3_moe_dir, cpu_experts=5).model  # 5 of 8 experts a layer in "host memory"
    sparse = [layer.mlp for layer in model.layers if getattr(layer.mlp, "homes", None) is not None]
    assert sparse and all(mlp.w13.shape[0] == 3 and mlp.homes.on_host == 5 for mlp in sparse)
    assert all(mlp.homes.slot(7)[0] is mlp.host_w13 and mlp.homes.slot(0)[0] is mlp.w13 for mlp in sparse)
    assert greedy(model) == expected


def test_every_expert_in_host_memory_and_none(qwen3_moe_dir: Path) -> None:
    expected = greedy(load_model(qwen3_moe_dir).model)
    for count in (0, 8):
        assert greedy(load_model(qwen3_moe_dir, cpu_experts=count).model) == expected


def test_more_experts_than_a_layer_has_is_a_clear_error(qwen3_moe_dir: Path) -> None:
    with pytest.raises(LoadError, match="cannot keep 9 of 8 experts"):
        load_model(qwen3_moe_dir, cpu_experts=9)


def test_placement_follows_routing_counts() -> None:
    counts = RoutingCounts(layers=1, experts=6)
    counts.add(0, torch.tensor([[0, 1], [0, 2], [0, 1], [5, 1]]))
    assert counts.counts[0].tolist() == [3, 3, 1, 0, 0, 1]
    assert least_used(counts.counts[0], 6, 3) == [3, 4, 5]  # 3 and 4 unused, then 2 and 5 tie: the higher id
    assert least_used(None, 6, 2) == [4, 5]
    try:
        least_used(None, 6, 7)
    except ValueError as err:
        assert "7 of 6" in str(err)
    else:
        raise AssertionError("asking for more experts than exist must fail")


def test_routing_counted_while_serving_places_the_next_load(
    qwen3_moe_dir: Path, tmp_path, monkeypatch
) -> None:
    from codeagent.backend.runtime import build_engine, load, routing_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    loaded = load(qwen3_moe_dir, "float32", "cpu", cpu_experts=3)
    engine = build_engine(loaded, set())
    engine.generate([Request(p, SamplingParams(max_tokens=6, ignore_eos=True)) for p in PROMPTS])
    counts = loaded.checkpoint.model.routing.counts.clone()
    engine.close()
    loaded.close()
    saved = json.loads(routing_file(qwen3_moe_dir).read_text())
    assert saved == counts.tolist() and sum(map(sum, saved)) > 0

    again = load(qwen3_moe_dir, "float32", "cpu", cpu_experts=3).checkpoint.model
    for index, layer in enumerate(again.layers):
        homes = getattr(layer.mlp, "homes", None)
        if homes is not None:
            on_host = sorted(e for e in range(8) if bool(homes.home[e]))
            assert on_host == least_used(counts[index], 8, 3)
            assert (
                again.routing.counts[index].tolist() == counts[index].tolist()
            )  # counting goes on from there


def test_auto_moves_what_the_free_memory_cannot_hold() -> None:
    from codeagent.backend.planning.checkpoint import estimated
    from codeagent.backend.planning.kv import meta_model
    from codeagent.backend.planning.offload import RESERVE, expert_sizes, host_experts_needed
    from codeagent.backend.planning.source import shipped_config

    raw = shipped_config("qwen3-coder-30b-a3b")  # 48 sparse layers of 128 experts, 2048 x 768
    config = meta_model(raw, torch.bfloat16).config
    sizes = expert_sizes(estimated(raw, config), config, torch.bfloat16, keep_packed=True)
    assert (sizes.per_expert, sizes.layers, sizes.experts) == (3 * 2048 * 768 * 2, 48, 128)  # 9 MiB an expert
    weights, kv = 61 * 10**9, 400 * 2**20
    assert host_experts_needed(weights, kv, weights + kv + RESERVE, sizes) == 0
    short = 10 * sizes.per_expert * sizes.layers + 1  # a little over ten experts a layer too many
    assert host_experts_needed(weights, kv, weights + kv + RESERVE - short, sizes) == 11
    assert host_experts_needed(weights, kv, 0, sizes) == 128  # capped at every expert


def test_auto_on_a_cpu_moves_nothing_and_bad_counts_are_one_line(qwen3_moe_dir: Path) -> None:
    import subprocess
    import sys

    from codeagent.backend.planning.offload import auto

    assert auto(qwen3_moe_dir, torch.float32, "cpu") == 0
    argv = [
        sys.executable,
        "-m",
        "codeagent.tui.cli",
        "generate",
        "--model",
        str(qwen3_moe_dir),
        "--prompt-ids",
        "1,2",
    ]
    bad = subprocess.run([*argv, "--cpu-experts", "some"], capture_output=True, text=True)
    assert bad.returncode == 2 and "expected a number of experts or 'auto'" in bad.stderr
    good = subprocess.run(
        [*argv, "--cpu-experts", "auto", "--max-tokens", "2"], capture_output=True, text=True
    )
    assert good.returncode == 0, good.stderr
