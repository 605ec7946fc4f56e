"""``codeagent generate`` and ``codeagent models`` as a user runs them.

Two tests run the command in a subprocess, as a user does (one of them because the Hugging
Face cache folder is read from the environment when huggingface_hub is imported); the rest
call the same ``main`` in-process, which spares a torch import per call (~3 s each)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from codeagent.tui.cli import main


def codeagent(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def cli(capsys, *args: str) -> subprocess.CompletedProcess:
    """``codeagent ARGS`` in this process: its exit code and what it printed."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def test_generate_prompt_ids_json_matches_the_reference(qwen3_moe_dir, reference_greedy):
    from transformers import AutoModelForCausalLM

    prompt = [3, 17, 99, 250, 7, 64, 1, 300]
    proc = codeagent(
        "generate",
        "--model",
        str(qwen3_moe_dir),
        "--prompt-ids",
        ",".join(map(str, prompt)),
        "--max-tokens",
        "12",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    reference = AutoModelForCausalLM.from_pretrained(qwen3_moe_dir, dtype=torch.float32).eval()
    assert report["token_ids"] == reference_greedy(reference, prompt, 12)
    assert report["text"] is None  # no tokenizer files in this checkpoint
    assert report["finish_reason"] == "length" and report["decode_tokens_per_s"] > 0


def test_generate_sampling_is_seeded(qwen3_moe_dir, capsys):
    args = [
        "generate",
        "--model",
        str(qwen3_moe_dir),
        "--prompt-ids",
        "1,2,3",
        "--max-tokens",
        "16",
        "--temperature",
        "1.0",
        "--top-k",
        "50",
        "--top-p",
        "0.9",
        "--json",
    ]
    first = json.loads(cli(capsys, *args, "--seed", "7").stdout)["token_ids"]
    again = json.loads(cli(capsys, *args, "--seed", "7").stdout)["token_ids"]
    other = json.loads(cli(capsys, *args, "--seed", "8").stdout)["token_ids"]
    assert first == again and first != other


def test_generate_errors_are_one_line(qwen3_moe_dir, tmp_path, capsys):
    cases = [
        (["--model", str(tmp_path / "none"), "--prompt-ids", "1"], "no checkpoint folder"),
        (["--model", str(qwen3_moe_dir), "--prompt", "hello"], "no tokenizer.json"),
        (["--model", str(qwen3_moe_dir), "--prompt-ids", "1,x"], "comma-separated integers"),
        (["--model", str(qwen3_moe_dir), "--prompt-ids", "1", "--top-p", "0"], "top_p"),
    ]
    for argv, needle in cases:
        proc = cli(capsys, "generate", *argv)
        assert proc.returncode == 2, proc.stderr
        assert (
            proc.stderr.startswith("codeagent: error:")
            and needle in proc.stderr
            and "Traceback" not in proc.stderr
        )


def test_models_lists_the_hf_cache_and_resolves_ids(qwen3_moe_dir, tmp_path):
    snapshot = tmp_path / "hub" / "models--tiny--qwen3moe" / "snapshots" / "abc123"
    shutil.copytree(qwen3_moe_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    env = {**__import__("os").environ, "HF_HUB_CACHE": str(tmp_path / "hub")}
    listing = codeagent("models", env=env)
    assert listing.returncode == 0
    assert "tiny/qwen3moe  Qwen3MoeForCausalLM" in listing.stdout
    proc = codeagent(
        "generate", "--model", "tiny/qwen3moe", "--prompt-ids", "1,2", "--max-tokens", "2", "--json", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(json.loads(proc.stdout)["model"]) == snapshot


def test_generate_text_prompt_and_stop_strings(tiny_chat_model, capsys):
    base = [
        "generate",
        "--model",
        str(tiny_chat_model),
        "--prompt",
        "def mean(values):",
        "--max-tokens",
        "24",
    ]
    first = json.loads(cli(capsys, *base, "--json").stdout)
    text = first["text"]
    assert len(first["token_ids"]) == 24 and len(text) > 10
    stop = text[6:9]
    cut = text[: text.find(stop)]
    stopped = json.loads(cli(capsys, *base, "--json", "--stop", stop).stdout)
    assert stopped["text"] == cut and stopped["finish_reason"] == "stop"
    assert len(stopped["token_ids"]) < 24
    by_id = json.loads(cli(capsys, *base, "--json", "--stop-token-id", str(first["token_ids"][4])).stdout)
    assert by_id["token_ids"] == first["token_ids"][: first["token_ids"].index(first["token_ids"][4]) + 1]
    streamed = codeagent(*base, "--stop", stop)
    assert streamed.returncode == 0 and streamed.stdout.rstrip("\n") == cut
