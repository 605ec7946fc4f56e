"""Verdicts of the layout search, the workspace formula by hand, and the refusal before a load."""

from __future__ import annotations

import json

import pytest
import torch

from codeagent.backend.distributed.layout import Layout
from codeagent.backend.loader import LoadError
from codeagent.backend.planning import PlanError
from codeagent.backend.planning.hardware import HOST_ENV, cpu, gpus
from codeagent.backend.planning.kv import meta_model
from codeagent.backend.planning.plan import make_plan, workspace_for
from codeagent.backend.planning.report import as_dict, verdict
from codeagent.backend.planning.source import model_source, shipped_config
from codeagent.backend.runtime import load

GIB = 1 << 30
H100 = 81559 << 20


def plan(name: str, gpu: str | None, **options):
    hardware = gpus(gpu, None, 512 * GIB) if gpu else cpu(512 * GIB)
    dtype = options.pop("dtype", torch.bfloat16 if gpu else torch.float32)
    return make_plan(model_source(name), hardware, dtype, **options)


def test_deepseek_v4_flash_does_not_fit_one_h100_and_says_what_would():
    result = plan("deepseek-v4-flash", "1xH100")
    assert result.chosen is None
    text = verdict(result)
    assert "does not fit 1 x H100" in text and "151.4 GiB of weights" in text
    assert "It would fit 4 x H100 with --tp 4" in text and "--model remote:NAME" in text


def test_deepseek_v4_flash_fits_four_h100s_with_tp4():
    result = plan("deepseek-v4-flash", "4xH100")
    assert result.chosen is not None and result.chosen.layout == Layout(4)
    assert [c.fits(result.context) for c in result.candidates] == [False, False, False, True, True]
    assert "fits 4 x H100 (79.6 GiB each) with --tp 4" in verdict(result)


def test_the_smallest_layout_is_chosen_among_many_gpus():
    result = plan("deepseek-v4-flash", "8xH200")
    assert result.chosen is not None and result.chosen.layout == Layout(2)


def test_qwen3_coder_30b_in_bf16_fits_one_h100():
    result = plan("qwen3-coder-30b-a3b", "1xH100")
    assert result.chosen is not None and result.chosen.layout == Layout(1)
    chosen = result.chosen
    # the longest context: what the memory left after weights and workspace holds, in 32-token blocks
    assert chosen.longest == (H100 - chosen.fixed) // (98304 * 32) * 32


def test_deepseek_v4_pro_needs_a_full_h200_node():
    assert plan("deepseek-v4-pro", "4xH100").chosen is None
    result = plan("deepseek-v4-pro", "8xH200")
    assert result.chosen is not None and result.chosen.layout == Layout(8)
    assert plan("deepseek-v4-pro", None).chosen is None  # 512 GiB of CPU memory


def test_the_workspace_formula_by_hand():
    meta_config = meta_model(shipped_config("qwen3-coder-30b-a3b"), torch.bfloat16).config
    one = workspace_for(meta_config, Layout(1), "cuda")
    # 2048-token chunk x 4 B x (2 x widest (8 experts x 2 x 768) + 4 x hidden 2048)
    assert one.activations == 2048 * 4 * (2 * 8 * 2 * 768 + 4 * 2048)
    assert one.logits == 64 * 151936 * 4 * 2
    assert one.reserve == 2 * GIB
    assert workspace_for(meta_config, Layout(2), "cuda").reserve == 2 * GIB + GIB // 2
    assert workspace_for(meta_config, Layout(1), "cpu").reserve == GIB


def test_context_must_be_within_the_window():
    with pytest.raises(PlanError, match="longer than the model's window"):
        plan("qwen3-coder-30b-a3b", "1xH100", context=300_000)
    with pytest.raises(PlanError, match="at least one token"):
        plan("qwen3-coder-30b-a3b", "1xH100", context=0)


def test_a_forced_layout_that_cannot_split_the_model_says_so():
    result = plan("deepseek-v4-flash", "16xH100", tp=16)
    assert result.chosen is None and "output groups (8)" in (result.candidates[0].problem or "")
    assert "It would fit 4 x H100 with --tp 4" in verdict(result)


def test_a_cpu_plan_counts_float32_and_suggests_gpus():
    result = plan("qwen3-coder-480b-a35b", None)
    assert result.dtype == torch.float32 and result.chosen is None
    assert "It would fit 16 x H100 (2 nodes of 8) in bfloat16 with --tp 16" in verdict(result)


def test_the_json_shape():
    data = json.loads(json.dumps(as_dict(plan("deepseek-v4-flash", "4xH100"))))
    assert data["verdict"]["fits"] is True and data["verdict"]["tp"] == 4
    assert data["checkpoint"]["exact"] is False and data["checkpoint"]["bytes_by_format"]["fp4"] > 0
    chosen = next(layout for layout in data["layouts"] if layout["fits"])
    assert chosen["per_rank"]["kv"]["bytes_per_token"] == 54272
    assert set(chosen["per_rank"]) == {
        "weights",
        "kv",
        "workspace",
        "needed_bytes",
        "memory_bytes",
        "longest_context_tokens",
    }


def test_a_checkpoint_too_large_for_the_stated_memory_is_refused_at_load(qwen3_moe_dir, monkeypatch):
    """The tiny model with 900 MiB of host memory: the 1 GiB runtime reserve alone does not fit."""
    monkeypatch.setenv(HOST_ENV, "900M")
    with pytest.raises(LoadError) as refused:
        load(qwen3_moe_dir, "float32", "cpu")
    message = str(refused.value)
    assert "does not fit CPU with 900.0 MiB" in message
    assert "of weights (f32 " in message and "of workspace" in message and "KV cache per token" in message
    assert "It would fit 1 x H100 in bfloat16" in message
    monkeypatch.setenv(HOST_ENV, "4G")
    assert load(qwen3_moe_dir, "float32", "cpu").checkpoint.architecture == "Qwen3MoeForCausalLM"


def test_the_check_before_a_split_load_gives_each_rank_its_share_of_the_host(qwen3_moe_dir, monkeypatch):
    from codeagent.backend.planning.refusal import before_load

    monkeypatch.setenv(HOST_ENV, "3G")
    assert before_load(qwen3_moe_dir, torch.float32, "cpu", tp=2) is None  # 1.5 GiB a rank
    problem = before_load(qwen3_moe_dir, torch.float32, "cpu", tp=4)  # 768 MiB a rank: under the reserve
    assert problem is not None and "with --tp 4" in problem and "of 768.0 MiB" in problem
    # a layout that cannot split the model (4 query heads over 8 ranks) is the loader's to name
    assert before_load(qwen3_moe_dir, torch.float32, "cpu", tp=8) is None
