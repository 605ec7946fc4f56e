"""``codeagent bench gpu`` as a user runs it: the tiny path end to end on a CPU, and every mistake
as one ``codeagent: error:`` line with exit 2 (full-size models are only ever refused here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codeagent.bench import command
from codeagent.bench.gpu import plan
from codeagent.bench.random_weights import CONFIGS
from codeagent.tui import cli

DECODE_FIELDS = {
    "batch", "context", "shared_tokens", "cached_tokens", "tokens_per_s", "step_ms", "roofline_bytes_per_step",
    "roofline_tokens_per_s", "of_roofline", "transformers_tokens_per_s", "x_transformers",
}  # fmt: skip
TOP_FIELDS = {
    "benchmark", "config", "tiny", "layers", "released_layers", "dtype", "weights", "weight_bytes", "device",
    "command", "date", "torch", "copy_GB_per_s", "bf16_peak_TFLOP_per_s", "note", "ours", "transformers", "targets",
}  # fmt: skip


def codeagent(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codeagent: error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]


def tiny_run(name: str, tmp_path: Path, *extra: str) -> tuple[dict, str]:
    proc = codeagent(
        "bench", "gpu", "--config", name, "--random-weights", "--tiny", "--device", "cpu", "--output", "out.json",
        *extra, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text()), proc.stderr


def check_report(report: dict, stderr: str, batches: int, contexts: int) -> None:
    assert report.keys() >= TOP_FIELDS
    assert report["tiny"] and report["device"].startswith("cpu") and "bench gpu" in report["command"]
    ours, theirs = report["ours"], report["transformers"]
    assert len(ours["decode"]) == batches * contexts == len(theirs["decode"])
    for row in ours["decode"]:
        assert row.keys() >= DECODE_FIELDS, row
        assert row["tokens_per_s"] > 0 and row["roofline_tokens_per_s"] > 0 and row["x_transformers"] > 0
        assert row["cached_tokens"] == row["shared_tokens"]  # the context came from the prefix cache
    for row in ours["prefill"]:
        assert row["tokens_per_s"] > 0 and row["TFLOP_per_s"] > 0 and row["of_bf16_peak"] is None
        assert row["x_transformers"] > 0
    prefix = ours["prefix"]
    assert prefix["cold_cached_tokens"] == 0 and prefix["warm_cached_tokens"] >= 64
    assert prefix["transformers_cold_ttft_s"] > 0 and prefix["transformers_warm_ttft_s"] > 0
    targets = report["targets"]
    assert targets["applies"] is False
    checks = targets["checks"]
    assert set(checks) == {
        "batch1_decode_of_roofline", "batch1_decode_x_transformers", "warm_follow_up_ttft_s", "prefill_of_bf16_peak",
    }  # fmt: skip
    for name in ("batch1_decode_of_roofline", "batch1_decode_x_transformers", "warm_follow_up_ttft_s"):
        assert isinstance(checks[name]["met"], bool), name
    assert (
        checks["prefill_of_bf16_peak"]["met"] is None and "unknown" in checks["prefill_of_bf16_peak"]["why"]
    )
    assert "ours tok/s" in stderr and "targets" in stderr


def test_tiny_qwen3_end_to_end(tmp_path):
    report, stderr = tiny_run("qwen3-coder-30b-a3b", tmp_path)
    check_report(report, stderr, batches=3, contexts=2)
    assert report["layers"] == report["released_layers"] == 3
    assert report["transformers"]["attention"] and report["transformers"]["version"]


def test_tiny_v4_cut_to_four_layers_end_to_end(tmp_path):
    report, stderr = tiny_run(
        "deepseek-v4-flash", tmp_path, "--layers", "4", "--batches", "1,2", "--contexts", "24,40"
    )
    check_report(report, stderr, batches=2, contexts=2)
    assert (report["layers"], report["released_layers"]) == (4, 5)
    for row in report["ours"]["decode"] + report["ours"]["prefill"]:
        assert row["tokens_per_s_full_depth_estimate"] == pytest.approx(row["tokens_per_s"] * 4 / 5, rel=0.01)


def test_without_the_reference(tmp_path):
    report, _ = tiny_run("qwen3-coder-30b-a3b", tmp_path, "--no-reference", "--scenarios", "decode")
    assert report["transformers"] is None and "prefill" not in report["ours"]
    assert all(r["x_transformers"] is None for r in report["ours"]["decode"])
    assert report["targets"]["checks"]["batch1_decode_x_transformers"]["met"] is None


def test_a_full_size_model_that_cannot_fit_is_refused_with_the_layers_that_would(tmp_path):
    proc = codeagent("bench", "gpu", "--config", "deepseek-v4-flash", "--random-weights", "--device", "cpu",
                     "--dtype", "bfloat16", cwd=tmp_path)  # fmt: skip
    assert_one_line_error(proc, "deepseek-v4-flash (43 layers, bfloat16) needs", "GB of weights", "fits")
    assert not (tmp_path / "bench-gpu.json").exists()
    # the hint: 4 full-width V4-Flash layers in bf16 are about 55 GB with the embeddings and head
    assert plan.layers_that_fit("deepseek-v4-flash", False, torch.bfloat16, 60e9) == 4
    assert plan.layers_that_fit("deepseek-v4-flash", False, torch.bfloat16, 1e9) == 0
    assert plan.layers_that_fit("qwen3-coder-30b-a3b", False, torch.bfloat16, 80e9) == 48


def test_the_issues_spelling_is_bench_gpu(tmp_path):
    proc = codeagent("bench", "--config", "deepseek-v4-flash", "--random-weights", cwd=tmp_path)
    assert_one_line_error(proc, "deepseek-v4-flash (43 layers", "GB of weights")


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["bench", "gpu", "--config", "llama-70b", "--random-weights"], ["invalid choice: 'llama-70b'"]),
        (["bench", "gpu", "--config", "qwen3-coder-30b-a3b"], ["--random-weights"]),
        (["bench", "gpu", "--config", "qwen3-coder-30b-a3b", "--random-weights", "--tiny", "--layers", "9"],
         ["has 3 layers"]),
        (["bench", "gpu", "--config", "qwen3-coder-30b-a3b", "--random-weights", "--tiny", "--contexts", "9000000"],
         ["positions", "9000004"]),
        (["bench", "gpu", "--config", "qwen3-coder-30b-a3b", "--random-weights", "--layers", "0"], ["must be positive"]),
        (["bench", "gpu", "--config", "qwen3-coder-30b-a3b", "--random-weights", "--decode-tokens", "1"],
         ["at least 2"]),
        (["bench"], ["choose a scenario"]),
        (["bench", "--config", "qwen3-coder-30b-a3b"], ["--random-weights"]),
    ],
)  # fmt: skip
def test_mistakes_are_one_line(tmp_path, argv, needles):
    assert_one_line_error(codeagent(*argv, cwd=tmp_path), *needles)


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, --device cuda is valid")
def test_cuda_without_a_gpu_is_refused(tmp_path):
    proc = codeagent("bench", "gpu", "--config", "qwen3-coder-30b-a3b", "--random-weights", "--device", "cuda",
                     cwd=tmp_path)  # fmt: skip
    assert_one_line_error(proc, "no CUDA device")


def test_the_parser_knows_every_configuration():
    assert set(command.GPU_CONFIGS) == set(CONFIGS)
    args = cli.build_parser().parse_args(
        ["bench", "gpu", "--config", "deepseek-v4-flash", "--random-weights"]
    )
    assert args.scenarios == plan.SCENARIOS and args.gpu_config == "deepseek-v4-flash"
    assert args.config is None  # the config file option is another flag


def test_peaks_are_known_by_name_only_for_the_targets_gpus():
    assert plan.bf16_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert plan.bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert plan.bf16_peak("NVIDIA H200") == 989e12
    assert plan.bf16_peak("NVIDIA A100-SXM4-80GB") is None
