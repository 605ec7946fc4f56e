"""``codeagent bench first-light``: the GPU run's dry run on a CPU, every stage for real at tiny
shapes through the script the device machine runs, on an interpreter that cannot import the
agent side's packages (the device machine has none of them); and the runner's handling of a
stage that overruns, fails, or cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from codeagent.bench.firstlight import targets
from codeagent.bench.firstlight.run import first_light
from codeagent.bench.firstlight.stages import Stage

REPO = Path(__file__).resolve().parents[2]
STAGES = [
    "kernel-tests",
    "kernels",
    "gpu-qwen3-coder",
    "gpu-vs-transformers",
    "gpu-deepseek-v4-flash",
    "gpu-qwen3-next",
]
MISSING_ON_THE_GPU_MACHINE = ("pydantic", "textual", "git", "tree_sitter", "mcp", "openai", "anthropic")
BLOCKER = f"""import sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {MISSING_ON_THE_GPU_MACHINE!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (as on the GPU machine)")
        return None

sys.meta_path.insert(0, Missing())
"""


def load(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def test_the_dry_run_runs_every_stage_and_writes_every_file(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "PYTHON": sys.executable,
        "PYTHONPATH": str(site),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu-first-light.sh"), "--tiny"],
        capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([*(f"{s}.json" for s in STAGES), "summary.json", "first-light.log"])
    assert len(files) <= 8  # what the device machine brings back

    summary = load(out, "summary.json")
    assert [s["stage"] for s in summary["stages"]] == STAGES
    assert all(s["status"] == "ok" and s["exit_code"] == 0 and s["wall_s"] > 0 for s in summary["stages"])
    assert summary["tiny"] and summary["wall_s"] <= summary["budget_s"]
    assert summary["machine"]["packages"]["torch"]

    tests = load(out, "kernel-tests.json")
    assert tests["finished"] and tests["exit_status"] == 0 and tests["counts"]["passed"] > 0
    assert tests["triton_interpreter"] and tests["device"] == "cpu"
    kernels = {r["kernel"] for r in load(out, "kernels.json")["results"]}
    assert kernels == {"fused_moe", "paged_attention_decode"}

    coder = load(out, "gpu-qwen3-coder.json")
    assert coder["config"] == "qwen3-coder-30b-a3b" and coder["transformers"] is None
    assert [(r["batch"], r["context"]) for r in coder["ours"]["decode"]] == [(1, 16), (2, 16)]
    assert coder["ours"]["prefix"]["warm_cached_tokens"] > 0
    assert "codeagent bench gpu" in coder["command"]
    versus = load(out, "gpu-vs-transformers.json")
    assert versus["ours"]["decode"][0]["x_transformers"] > 0
    for name in ("gpu-deepseek-v4-flash", "gpu-qwen3-next"):
        cut = load(out, f"{name}.json")  # --layers fit: every tiny layer fits a CPU's memory
        assert cut["layers"] == cut["released_layers"] and cut["ours"]["prefill"][0]["tokens_per_s"] > 0

    checks = summary["targets"]["checks"]
    assert not summary["targets"]["applies"]
    assert len(checks) == 5 and all(c["status"] in ("met", "missed") for c in checks.values()), checks
    assert checks["warm_follow_up_ttft_s"]["value"] == coder["ours"]["prefix"]["warm_ttft_s"]
    assert "first light on" in proc.stderr and "[gpu-qwen3-next]" in proc.stderr


def test_a_stage_that_overruns_fails_or_cannot_run_is_recorded_and_the_next_one_runs(tmp_path):
    def stage(
        name: str, module: str, args: tuple[str, ...], budget: float, needs: str | None = None
    ) -> Stage:
        return Stage(name, tmp_path / f"{name}.json", module, args, budget, needs)

    stages = [
        stage("kernels", "codeagent.bench", ("kernels", "--models", "no-such-model"), 1),
        stage("gpu-vs-transformers", "json.tool", (), 1, needs="no_such_module_here"),
        stage("gpu-qwen3-coder", "timeit", ("-n", "1", "-r", "1", "__import__('time').sleep(60)"), 100),
        stage("late", "json.tool", (), 1),  # the overrun took the rest of the run's time
    ]
    lines: list[str] = []
    summary = first_light(stages, tmp_path, 4.0, False, lines.append, min_stage_s=0.5)
    rows = {s["stage"]: s for s in summary["stages"]}
    assert rows["gpu-qwen3-coder"]["status"] == "timeout" and rows["gpu-qwen3-coder"]["wall_s"] < 10
    assert rows["kernels"]["status"] == "failed" and rows["kernels"]["exit_code"] == 2
    assert any("no-such-model" in line for line in rows["kernels"]["log_tail"])
    assert rows["gpu-vs-transformers"] == {
        "stage": "gpu-vs-transformers", "output": "gpu-vs-transformers.json", "budget_s": 1,
        "status": "not-run", "why": "no_such_module_here is not installed here",
    }  # fmt: skip
    assert rows["late"]["status"] == "not-run" and "left of the run's budget" in rows["late"]["why"]
    assert load(tmp_path, "summary.json") == summary
    assert summary["targets"]["counts"] == {"met": 0, "missed": 0, "not-run": 5}
    assert any("timeout" in line for line in lines)


def test_targets_read_the_cells_they_name(tmp_path):
    gpu = {"ours": {"decode": [{"batch": 1, "context": 1024, "of_roofline": 0.8, "tokens_per_s": 400.0},
                               {"batch": 1, "context": 32768, "of_roofline": 0.5, "tokens_per_s": 250.0}],
                    "prefix": {"warm_ttft_s": 0.2}}}  # fmt: skip
    rows = [
        {"kernel": "fused_moe", "model": "qwen3-coder-30b-a3b", "shape": "T=1 E=128", "of_copy_bandwidth": 0.71},
        {"kernel": "fused_moe", "model": "qwen3-coder-30b-a3b", "shape": "T=8 E=128", "of_copy_bandwidth": 0.1},
        {"kernel": "paged_attention_decode", "model": "qwen3-coder-30b-a3b", "shape": "1x ctx=4096 new=1",
         "of_copy_bandwidth": 0.9},
        {"kernel": "paged_attention_decode", "model": "qwen3-coder-30b-a3b", "shape": "1x ctx=32768 new=1",
         "of_copy_bandwidth": 0.6},
    ]  # fmt: skip
    (tmp_path / "gpu.json").write_text(json.dumps(gpu))
    (tmp_path / "kernels.json").write_text(json.dumps({"results": rows}))
    got = targets.check(
        {"gpu-qwen3-coder": tmp_path / "gpu.json", "kernels": tmp_path / "kernels.json"}, False
    )
    status = {name: c["status"] for name, c in got["checks"].items()}
    assert status == {
        "batch1_decode_of_roofline": "met",  # at the shortest context
        "batch1_decode_x_transformers": "not-run",
        "warm_follow_up_ttft_s": "missed",
        "fused_moe_of_copy_bandwidth": "met",  # one token
        "paged_attention_decode_of_copy_bandwidth": "missed",  # at the longest context
    }
    assert got["checks"]["batch1_decode_of_roofline"]["tokens_per_s"] == 400.0 and got["applies"]
