"""The tile-config table: tuned entries written per device, looked up by the nearest token count."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.kernels import tile_configs

pytestmark = pytest.mark.without_interpreter


def test_written_entries_are_found_by_nearest_token_count(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEAGENT_KERNEL_CONFIGS", str(tmp_path))
    key = tile_configs.moe_key(128, 768, 2048, torch.bfloat16, "plain")
    small = {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 128, "num_warps": 4, "num_stages": 4}
    large = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3}
    path = tile_configs.write_entries("cpu", "fused_moe", {key: {"1": small, "512": large}})
    assert path == tmp_path / "cpu.json"
    cpu = torch.device("cpu")
    assert tile_configs.lookup("fused_moe", key, 3, cpu) == small
    assert tile_configs.lookup("fused_moe", key, 300, cpu) == large
    assert tile_configs.lookup("fused_moe", key.replace("plain", "fp4"), 3, cpu) is None
    tile_configs.write_entries("cpu", "fused_moe", {key: {"64": small}})  # merged, not replaced
    assert set(tile_configs.load_table("cpu")["fused_moe"][key]) == {"1", "64", "512"}


def test_heuristic_grows_tiles_with_rows_per_expert():
    decode = tile_configs.moe_heuristic(1, 128, 8, 768, interpret=False)
    prefill = tile_configs.moe_heuristic(8192, 128, 8, 768, interpret=False)
    assert decode["BLOCK_M"] == 16 and prefill["BLOCK_M"] == 128
