"""Whole models with every kernel forced (``CODEAGENT_KERNELS=triton``; Triton's interpreter on CPU):
``codeagent generate`` and the engine still match transformers token for token in float32.

The tiny checkpoints are the backend tests' own (``tests/backend``), loaded from there so both
suites test the same models. Under the interpreter a token costs about a second, so
prompts and continuations are short, but long enough to cross KV blocks (block size 4),
mix prefill chunks with decodes, and close DeepSeek-V4's compression windows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codeagent.backend.engine import CacheConfig, Engine, Request
from codeagent.backend.kernels.dispatch import choose
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import load_model
from codeagent.backend.models.base import SeqSlice
from codeagent.backend.packed_weights import PackedExperts

BACKEND_TESTS = Path(__file__).resolve().parents[1] / "backend"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"kernels_uses_{name}", BACKEND_TESTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


backend_conftest = _module("conftest")
v4_tests = _module("test_deepseek_v4")


def generate(folder: Path, prompt: list[int], new: int) -> list[int]:
    env = {**os.environ, "CODEAGENT_KERNELS": "triton"}
    argv = ["generate", "--model", str(folder), "--prompt-ids", ",".join(map(str, prompt))]
    proc = subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *argv, "--max-tokens", str(new), "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)["token_ids"]


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen3moe")
    reference = backend_conftest.qwen3_moe_reference()
    reference.save_pretrained(folder)
    return folder, reference


def test_generate_qwen3_moe_with_triton_kernels(qwen3):
    folder, reference = qwen3
    prompt = [3, 17, 99, 250, 7, 64, 1, 300, 41, 5]
    want = backend_conftest._reference_greedy(reference, prompt, 8)
    assert generate(folder, prompt, 8) == want


def test_engine_batch_over_small_blocks_with_triton_kernels(qwen3, monkeypatch):
    folder, reference = qwen3
    monkeypatch.setenv("CODEAGENT_KERNELS", "triton")
    model = load_model(folder).model
    prompts = [
        torch.randint(0, 512, (n,), generator=torch.Generator().manual_seed(n)).tolist() for n in (3, 11, 6)
    ]
    engine = Engine(model, set(), cache=CacheConfig(block_size=4, num_blocks=32), max_batch_tokens=8)
    results = engine.generate([Request(p, SamplingParams(max_tokens=6)) for p in prompts])
    assert [r.token_ids for r in results] == [
        backend_conftest._reference_greedy(reference, p, 6) for p in prompts
    ]


def test_generate_deepseek_v4_with_triton_kernels(tmp_path):
    reference = v4_tests.reference_model()
    reference.save_pretrained(tmp_path)
    prompt = v4_tests.prompt(24)
    want = v4_tests.reference_greedy(reference, prompt, 8)
    assert generate(tmp_path, prompt, 8) == want


def test_deepseek_v4_tied_indexer_scores_choose_like_the_torch_path(tmp_path):
    """Two indexer heads: exact ties in the top-k are common; prefill then decode, logits at each step."""
    v4_tests.reference_model(index_n_heads=2).save_pretrained(tmp_path)
    model = load_model(tmp_path).model
    ids = v4_tests.prompt(30, seed=5)

    def logits(mode: str) -> torch.Tensor:
        model.kernels = choose(model.device, mode)
        state = model.new_state()
        steps = [model(torch.tensor(ids[:22]), torch.arange(22), [SeqSlice(state, 22)])]
        for p in range(22, len(ids)):
            steps.append(model(torch.tensor([ids[p]]), torch.tensor([p]), [SeqSlice(state, 1)]))
        return torch.cat(steps)

    torch.testing.assert_close(logits("triton"), logits("torch"), atol=1e-4, rtol=1e-4)


def test_deepseek_v4_release_experts_stay_packed_for_the_kernels(tmp_path, monkeypatch):
    """An FP8/FP4 release checkpoint loaded with its routed experts packed: the fused-MoE kernel
    decodes them in its tiles and gives the torch path's logits and tokens over experts that
    were dequantized at load."""
    from safetensors.torch import save_file

    tiny = v4_tests.save(tmp_path, v4_tests.reference_model())
    release = tmp_path / "release"
    release.mkdir()
    save_file(v4_tests.release_quantized(tiny.tensors)[0], release / "model.safetensors")
    (release / "config.json").write_text(json.dumps(tiny.config))
    kept = load_model(release).model
    assert isinstance(kept.w["layers.2.ffn.w13"], PackedExperts)
    monkeypatch.setenv("CODEAGENT_KEEP_QUANTIZED", "0")
    dense = load_model(release).model
    ids = v4_tests.prompt(24)
    want = v4_tests.step(dense, [dense.new_state()], [ids])
    tokens = v4_tests.greedy(dense, [ids], 4)
    kept.kernels = choose(kept.device, "triton")
    torch.testing.assert_close(v4_tests.step(kept, [kept.new_state()], [ids]), want, atol=1e-4, rtol=1e-4)
    assert v4_tests.greedy(kept, [ids], 4) == tokens
