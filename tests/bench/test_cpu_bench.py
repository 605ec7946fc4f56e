"""``codeagent bench cpu``'s plumbing on toy shapes (``--tiny``): the JSON's shape, the bytes a
decode step reads against a hand count, and the one-line refusal of a tree that was never
built. No timing is asserted; the real run is by hand (docs/bench/llama-cpp.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from codeagent.backend.kernels import native
from codeagent.bench.cpu import report
from codeagent.bench.cpu.run import Options, bench_cpu


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("cpu") / "model"
    options = Options(folder=folder, tiny=True, prefill=24, prompt_tokens=8, new_tokens=4, greedy_tokens=3)
    return bench_cpu(options, log=lambda _: None)


def test_tiny_run_reports_every_figure_and_target(tiny: dict):
    ours = tiny["ours"]["bfloat16"]
    assert ours["batch1_decode_tokens_per_s"] > 0 and ours["prefill_tokens_per_s"] > 0
    assert ours["concurrent8"]["sequences"] == 8 and ours["concurrent8"]["decode_tokens_per_s"] > 0
    assert len(ours["greedy_token_ids"]) == 3 and ours["threads"] == tiny["threads"]["ours"]
    assert set(ours["roofline"]) == {"batch1", "concurrent8"}
    assert ours["roofline"]["batch1"]["of_adjacent_bandwidth"] >= 0
    programs = ours["decode_program"]  # batch 1 and 8 sequences ran as bound programs
    assert 1 in programs["sequences"] and (8 in programs["sequences"] or not native.bf16_pairs())
    by_part = ours["profile"]["ms_per_step_by_part"]
    assert by_part["linear"] > 0 and by_part["moe"] > 0 and by_part["python"] > 0
    assert tiny["contention"]["cpu_s_others"] >= 0
    assert tiny["bandwidth"]["GB_per_s"] > 0 and tiny["model"]["layers"] == 2
    assert "llama_cpp" not in tiny and tiny["threads"]["llama_cpp"] is None
    assert set(tiny["targets"]) == {
        "batch1_decode_bf16_at_least_llama_cpp_bf16",
        "batch1_decode_fp8_at_least_llama_cpp_q8_0",
        "batch1_decode_fp4_experts_at_least_llama_cpp_q4_k_m",
        "8_concurrent_bf16_ahead_of_llama_cpp_bf16",
        "prefill_8k_bf16_ahead_of_llama_cpp_bf16",
        "batch1_decode_bf16_at_least_70pct_of_bandwidth",
    }
    assert all(v is None for v in tiny["targets"].values())  # toy timings decide nothing
    assert set(tiny["target_notes"]) == set(tiny["targets"])
    assert "ours bfloat16" in report.table(tiny)


def test_packed_variants_read_fewer_bytes(tiny: dict):
    steps = {name: tiny["ours"][name]["bytes_per_step"]["batch1"] for name in ("bfloat16", "fp8", "fp4")}
    assert steps["fp4"] < steps["fp8"] < steps["bfloat16"]
    packed = tiny["ours"]["fp4"]["packed"]
    assert packed["format"] == {"dense": "fp8", "head": "fp8", "experts": "fp4"}  # 64 wide: no INT6 head
    assert packed["bytes_after"] < packed["bytes_before"] / 2


def test_bytes_per_token_is_the_hand_count(tiny: dict):
    # tiny: hidden 64, 4 query / 2 KV heads of 16, 8 experts top-2 of width 32, vocab 512, 2 layers
    layer = 2 * 64 + (4 + 2 * 2) * 16 * 64 + 64 * 4 * 16 + 2 * 16 + 8 * 64 + 2 * 3 * 32 * 64
    once = 64 + 64 + 512 * 64  # one embedding row, the final norm, the LM head
    context = 8 + 4 // 2  # the prompt and half the new tokens
    kv = 2 * 2 * 2 * 16 * context  # layers x (K, V) x KV heads x head_dim
    assert tiny["ours"]["bfloat16"]["bytes_per_step"]["batch1"] == 2 * (2 * layer + once + kv)


def test_gguf_bytes_count_experts_by_share_and_embeddings_by_row():
    from codeagent.backend.models.qwen3_moe import Qwen3MoeConfig

    config = Qwen3MoeConfig(512, 64, 1, 4, 2, 16, 32, 256, 8, 2)
    tensors = [("token_embd.weight", 512 * 100, [64, 512]), ("blk.0.ffn_up_exps.weight", 8000, [64, 32, 8])]
    tensors.append(("output.weight", 7000, [64, 512]))
    assert report.gguf_bytes(tensors, config, 1, 0) == 100 + 8000 * 2 / 8 + 7000
    assert report.common_prefix(["ab", "<7>", "c"], "ab<7>x") == 2


def test_a_tree_without_binaries_is_one_line_saying_what_to_build(tmp_path: Path):
    (tmp_path / "convert_hf_to_gguf.py").write_text("")
    (tmp_path / "gguf-py").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", "bench", "cpu", "--tiny", "--llama-cpp", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "has no llama-bench" in lines[0] and "cmake --build" in lines[0]


def test_every_native_kernel_counts_as_its_family_and_the_wrappers_as_python():
    from codeagent.bench.cpu.steps import _family, _part

    for kernel in ("linear", "linear_fp8", "linear_fp4", "linear_int6"):
        assert _family(kernel) == "linear"
    assert _family("moe_packed") == "moe" and _family("decode_attention") == "attention"
    assert _family("add_rms_norm") == _family("softmax_topk") == "other kernels"
    assert _part("/x/codeagent/backend/kernels/native.py", "linear") == "python"  # the C time is timed apart
    assert _part("~", "<built-in method torch.argmax>") == "torch ops"


def test_the_bandwidth_target_takes_each_round_against_its_own_reading():
    bf16 = {"bytes_per_step": {"batch1": 10**9}, "roofline": {"batch1": {"of_roofline": 0.45}}}
    rounds = [{"ours": 40.0, "llama_cpp": 38.0, "GB_per_s": gbs, "ratio": 1.05} for gbs in (50.0, 45.0, 70.0)]
    results = {"ours": {"bfloat16": bf16}, "paired": {"bfloat16": {"rounds": rounds, "ratio_median": 1.05}}}
    out, notes = report.targets(results)
    name = "batch1_decode_bf16_at_least_70pct_of_bandwidth"
    assert out[name] is True  # 40 GB/s against 50, 45 and 70: median 0.8, though 0.45 of the run's highest
    assert "median 0.800" in notes[name] and "0.45 of the run's highest" in notes[name]
    out, notes = report.targets({"ours": {"bfloat16": bf16}})
    assert out[name] is False and notes[name] == "0.45 of the run's highest bandwidth reading"


def test_the_eight_sequence_target_takes_the_rounds_in_turns_when_there_are_any():
    rounds = [
        {"ours": 40.0, "llama_cpp": 38.0, "GB_per_s": 50.0, "ratio": 1.05, "concurrent8": {"ratio": r}}
        for r in (0.9, 1.1, 1.2)
    ]
    figures = {"batch1_decode_tokens_per_s": 40.0, "prefill_tokens_per_s": 400.0}
    ours = {"bfloat16": {**figures, "concurrent8": {"decode_tokens_per_s": 100.0}}}
    theirs = {"variants": {"bf16": {**figures, "concurrent8": {"decode_tokens_per_s": 120.0}}}}
    results = {
        "ours": ours,
        "llama_cpp": theirs,
        "paired": {"bfloat16": {"rounds": rounds, "ratio_median": 1.05, "concurrent8_ratio_median": 1.1}},
    }
    out, notes = report.targets(results)
    name = "8_concurrent_bf16_ahead_of_llama_cpp_bf16"
    assert out[name] is True and notes[name] == "taken in turns: median ratio 1.1 over 3 rounds"
    del results["paired"]
    assert report.targets(results)[0][name] is False  # each side once: 100 against 120
