"""The local Hugging Face cache is where ``huggingface_hub`` puts downloads, ``$XDG_CACHE_HOME``
included: the same folder as the library's own constants, and a model pulled there is found by
id and listed by ``codeagent models`` (real subprocesses, a real tiny checkpoint)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VARIABLES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME")
BOTH = (
    "import huggingface_hub.constants as c; from codeagent.backend.loader import hub_cache; "
    "print(c.HF_HUB_CACHE); print(hub_cache())"
)


def environment(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return {**env, "HOME": str(tmp_path / "home"), **values}


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"XDG_CACHE_HOME": "/x/cache"},
        {"XDG_CACHE_HOME": "/x/cache", "HF_HOME": "~/hf"},
        {"HF_HOME": "/h", "HUGGINGFACE_HUB_CACHE": "/legacy"},
        {"HUGGINGFACE_HUB_CACHE": "/legacy", "HF_HUB_CACHE": "/new"},
    ],
)
def test_the_same_folder_as_huggingface_hub(tmp_path, values):
    proc = subprocess.run(
        [sys.executable, "-c", BOTH], env=environment(tmp_path, **values), capture_output=True, text=True
    )
    theirs, ours = proc.stdout.splitlines()
    assert ours == theirs, proc.stderr


def test_a_model_pulled_under_xdg_cache_home_is_found_and_listed(tmp_path, qwen3_moe_dir):
    cache = tmp_path / "xdg-cache"
    model = cache / "huggingface" / "hub" / "models--tiny-org--tiny-moe"
    revision = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(qwen3_moe_dir, model / "snapshots" / revision)  # a real tiny checkpoint
    (model / "refs").mkdir()
    (model / "refs" / "main").write_text(revision)
    env = environment(tmp_path, XDG_CACHE_HOME=str(cache), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    listed = subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", "models"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert "tiny-org/tiny-moe  Qwen3MoeForCausalLM" in listed.stdout
    assert str(model / "snapshots" / revision) in listed.stdout
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from codeagent.backend.loader import resolve_model as r; print(r('tiny-org/tiny-moe'))",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == str(model / "snapshots" / revision), found.stderr
