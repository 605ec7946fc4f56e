"""``codeagent plan`` and ``codeagent models pull`` as a user runs them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from codeagent.backend.planning.hardware import HOST_ENV
from codeagent.tui.cli import main


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def codeagent(capsys):
    """The command as it runs from a shell, in this process (one torch import for all the cases)."""

    def run(*args: str) -> Ran:
        code = main(list(args))
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def test_a_plan_that_fits_prints_every_layout_and_the_verdict(codeagent):
    proc = codeagent("plan", "--model", "deepseek-v4-flash", "--gpus", "4xH100", "--context", "128K")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "context 131,072 tokens (window 1,048,576)" in out
    assert "fp4 packed" in out and "latents 43.0 KiB" in out and "blocks of 128 tokens" in out
    assert "--tp 4 --ep" in out
    assert "verdict   deepseek-ai/DeepSeek-V4-Flash fits 4 x H100 (79.6 GiB each) with --tp 4" in out


def test_a_plan_that_does_not_fit_exits_1_with_json(codeagent):
    proc = codeagent("plan", "--model", "deepseek-ai/DeepSeek-V4-Pro", "--host-mem", "512G", "--json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["hardware"] == {
        "kind": "cpu",
        "count": 1,
        "name": "CPU",
        "memory_bytes": 512 << 30,
        "host_bytes": 512 << 30,
    }
    assert data["dtype"] == "bfloat16" and data["verdict"]["fits"] is False  # the default on CPUs too
    assert [layout["tp"] for layout in data["layouts"]] == [1]
    assert "does not fit CPU with 512.0 GiB" in data["verdict"]["message"]


def test_a_checkpoint_folder_gives_exact_bytes(codeagent, qwen3_moe_dir):
    proc = codeagent("plan", "--model", str(qwen3_moe_dir), "--gpu-mem", "8G", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (
        data["checkpoint"]["exact"] is True
        and data["model"]["source"] == "the checkpoint's safetensors headers"
    )
    size = (qwen3_moe_dir / "model.safetensors").stat().st_size
    assert 0 < data["checkpoint"]["total_bytes"] < size


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--gpus", "4xQ100"], "unknown GPU 'Q100'"),
        (["--gpus", "4 x H100 x 2"], "expected COUNTxNAME"),
        (["--context", "0"], "--context must be positive"),
        (["--context", "2M"], "longer than the model's window"),
        (["--gpus", "2xH100", "--tp", "4"], "--tp 4 needs 4 GPUs"),
        (["--tp", "0"], "must be positive"),
    ],
)
def test_mistakes_are_one_line_errors(codeagent, args, error):
    proc = codeagent("plan", "--model", "qwen3-coder-30b-a3b", *args)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codeagent: error: ") and error in lines[0], proc.stderr


def test_an_unknown_model_is_a_one_line_error(codeagent, tmp_path: Path):
    for model in ("nosuch/model", str(tmp_path / "missing")):
        proc = codeagent("plan", "--model", model)
        assert proc.returncode == 2 and "codeagent: error: " in proc.stderr and "Traceback" not in proc.stderr


def test_pull_refuses_what_cannot_run_here_before_downloading(codeagent, tmp_path: Path, monkeypatch):
    """No network is needed: the config ships with codeagent, and the refusal comes first."""
    monkeypatch.setenv(HOST_ENV, "64G")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    proc = codeagent("models", "pull", "deepseek-v4-pro")
    assert proc.returncode == 2
    assert "not downloading: deepseek-ai/DeepSeek-V4-Pro does not fit" in proc.stderr
    assert "GiB of weights" in proc.stderr and "--force downloads it anyway" in proc.stderr
    assert not any(tmp_path.iterdir())
