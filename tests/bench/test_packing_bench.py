"""``codeagent bench packing`` on the tiny random models: the JSON's shape and sense (no timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from codeagent.bench.packing import bench_packing

SIZES = {"prompt_tokens": 6, "positions": 8, "greedy_tokens": 4}


def test_tiny_models_report_each_variants_error():
    report = bench_packing(None, ("fp8", "fp4", "fp4-int8"), SIZES, "bfloat16", log=lambda _: None)
    assert report["formats"]["fp4"] == {
        "dense": "fp8",
        "head": "int6",
        "experts": "fp4",
        "activations": "float32 (INT6: the float route)",
    }
    assert set(report["models"]) == {"tiny random qwen3-coder-30b-a3b", "tiny random deepseek-v4-flash"}
    for model in report["models"].values():
        assert len(model["greedy_token_ids"]) == SIZES["greedy_tokens"]
        for variant in ("fp8", "fp4"):
            row = model[variant]
            assert 0 < row["mean_rel"] < 1 and 0 < row["max_rel"] < 1
            assert 0 <= row["top1_agreement"] <= 1 and 0 <= row["greedy_agreement"] <= 1
            assert row["bytes_after"] < row["bytes_before"]
        assert model["fp4"]["bytes_after"] < model["fp8"]["bytes_after"]
        int8 = model["fp4-int8"]  # packed as fp4, the FP4 products' activations in int8 where built
        assert int8["bytes_after"] == model["fp4"]["bytes_after"]
        assert (int8["against_fp4"]["max_rel"] > 0) == int8["int8_activations"]
        assert int8["against_fp4"]["max_rel"] < 0.1


def test_model_that_is_not_a_checkpoint_is_one_line(tmp_path: Path):
    config = {"architectures": ["Qwen3MoeForCausalLM"], "quantization_config": {"quant_method": "fp8"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", "bench", "packing", "--model", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "is a quantized checkpoint (fp8)" in proc.stderr and "Traceback" not in proc.stderr
