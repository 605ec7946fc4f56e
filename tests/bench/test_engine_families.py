"""``codeagent bench engine --family qwen3-moe,qwen3-next``: both families in one run, their
frontiers side by side. Plumbing only, at a 64-token context; no timing is asserted (the real
run is by hand: docs/bench/engine-frontier-families-cpu.json)."""

from __future__ import annotations

import subprocess
import sys

from codeagent.bench.engine_families import bench_families
from codeagent.bench.engine_report import table


def test_two_families_run_side_by_side():
    results = bench_families(("qwen3-moe", "qwen3-next"), scenarios=("frontier",), frontiers=(64,))
    assert set(results["families"]) == {"qwen3-moe", "qwen3-next"}
    assert results["families"]["qwen3-next"]["family"] == "qwen3-next"
    (row,) = results["frontier_side_by_side"]
    assert row["context_tokens"] == 64
    moe, hybrid = row["qwen3-moe"], row["qwen3-next"]
    assert moe["decode_tokens_per_s"] > 0 and hybrid["prefill_tokens_per_s"] > 0
    # 8 attention layers' K and V (2 heads of 64, float32) against 2 such layers plus the
    # DeltaNet state snapshots spread over the blocks between them
    assert moe["kv_bytes_per_token"] == 8 * 2 * 2 * 64 * 4
    assert 2 * 2 * 2 * 64 * 4 < hybrid["kv_bytes_per_token"] < moe["kv_bytes_per_token"]
    assert "side by side, context     64" in table(results)


def test_an_unknown_family_is_one_line():
    run = subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", "bench", "engine", "--family", "qwen3-moe,llama"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "choose from qwen3-moe, qwen3-next" in run.stderr and "Traceback" not in run.stderr
