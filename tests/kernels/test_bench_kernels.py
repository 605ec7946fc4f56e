"""``codeagent bench kernels`` as a user runs it: without a GPU it refuses clearly, ``--tiny`` checks
the harness through the interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch


def codeagent(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
    )


@pytest.mark.without_interpreter
@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the command runs instead of refusing")
def test_without_a_gpu_it_refuses_in_one_line(tmp_path):
    proc = codeagent("bench", "kernels", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("codeagent: error:") and "--tiny" in proc.stderr
    assert not (tmp_path / "bench-kernels.json").exists()


def test_tiny_shapes_through_the_interpreter(tmp_path):
    proc = codeagent(
        "bench", "kernels", "--tiny", "--models", "qwen3-coder-30b-a3b", "--tokens", "1",
        "--only", "rms_norm,fused_moe,paged_attention_decode", "--output", "out.json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "out.json").read_text())
    assert "meaningless" in report["note"] and report["copy_GB_per_s"] > 0
    kernels = {r["kernel"] for r in report["results"]}
    assert kernels == {"rms_norm", "fused_moe", "paged_attention_decode"}
    for r in report["results"]:
        assert r["us"] > 0 and r["torch_us"] > 0 and r["speedup"] is not None
    assert "x torch" in proc.stderr
