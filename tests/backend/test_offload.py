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
    from codeagent.backend.models.qwen3_moe.config import Qwen3MoeConfig
    from codeagent.backend.planning.offload import RESERVE, experts_per_layer, host_experts_needed

    config = Qwen3MoeConfig(
        vocab_size=1000, hidden_size=2048, num_hidden_layers=48, num_attention_heads=32,
        num_key_value_heads=4, head_dim=128, moe_intermediate_size=768, intermediate_size=768,
        num_experts=128, num_experts_per_tok=8,
    )  # fmt: skip
    per_expert, layers = experts_per_layer(config, torch.bfloat16)
    assert (per_expert, layers) == (3 * 2048 * 768 * 2, 48)  # 9 MiB an expert, 48 sparse layers
    weights, kv = 61 * 10**9, 400 * 2**20
    assert host_experts_needed(weights, kv, weights + kv + RESERVE, config, torch.bfloat16) == 0
    short = 10 * per_expert * layers + 1  # a little over ten experts a layer too many
    assert host_experts_needed(weights, kv, weights + kv + RESERVE - short, config, torch.bfloat16) == 11
    assert host_experts_needed(weights, kv, 0, config, torch.bfloat16) == 128  # capped at every expert


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
