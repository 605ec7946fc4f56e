"""``codeagent eval`` with a remote model that has no key, or an endpoint that does not answer,
fails in one line, exit 2, within seconds, before the output folder or any task's workspace
exists: the real command in a subprocess, the endpoint a closed port on 127.0.0.1."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

UNSET = ("OPENAI_API_KEY", "CODEAGENT_API_KEY", "CODEAGENT_BASE_URL", "OPENAI_BASE_URL", "CODEAGENT_MODEL")


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        ("remote:some-model", "no API key for --model remote:some-model"),
        ("local:http://127.0.0.1:9/v1", "the model endpoint http://127.0.0.1:9/v1 does not answer"),
    ],
)
def test_an_unusable_endpoint_fails_before_any_task(runs, tmp_path: Path, model: str, needle: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in UNSET} | {"CODEAGENT_SANDBOX": "off"}
    output = tmp_path / "results"
    started = time.monotonic()
    proc = runs.codeagent(
        "eval", "--model", model, "--limit", "1", "--output", str(output), cwd=tmp_path, env=env
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("codeagent: error: ") and needle in last
    assert not output.exists()  # no run.json, no workspaces
    assert elapsed < 20  # one look, no retries
