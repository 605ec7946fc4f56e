"""The first run with no model configured: one clear message offline, the numbers before a pull,
a refusal of what cannot fit. Real subprocesses, a real repository, and a real HTTP server on
127.0.0.1 standing in for the Hugging Face Hub (``HF_ENDPOINT``); nothing is downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codeagent.tui import firstrun

WAYS = ("--model PATH", "Hugging Face cache", "remote:NAME", "anthropic:NAME", "local:URL")


def fix(root: Path, *extra: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CODEAGENT_MODEL"))}
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", "fix", "--task", "x", *extra],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**base, **env},
    )


class Hub(BaseHTTPRequestHandler):
    """Answers every model lookup with 200 and no body: the Hub is reachable."""

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The error line, and nothing else but the sandbox's warning where it is off here."""
    (line,) = [line for line in proc.stderr.strip().splitlines() if not line.startswith("codeagent: warning")]
    return line


def branches(root: Path) -> str:
    return subprocess.run(["git", "-C", str(root), "branch"], capture_output=True, text=True).stdout


def test_offline_one_message_with_size_memory_and_the_ways_forward(make_repo):
    root = make_repo()
    proc = fix(root, HF_HUB_OFFLINE="1", CODEAGENT_HOST_MEMORY="32G")
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc)  # no "downloading it" before the refusal
    assert line.startswith("codeagent: error: model 'qwen3-coder-30b-a3b'")
    assert "cannot be downloaded: no connection" in line and "downloading it" not in line
    assert "56.9 GiB download" in line and "of RAM to run (bfloat16); this machine has 32.0 GiB" in line
    assert "cannot run here" in line
    for way in WAYS:
        assert way in line
    assert branches(root).split() == ["*", "main"]
    with_json = fix(root, "--json", HF_HUB_OFFLINE="1")
    assert with_json.returncode == 2 and json.loads(with_json.stdout)["status"] == "error"


def test_online_a_model_that_cannot_fit_is_refused_with_numbers_before_any_download(make_repo, hub):
    root = make_repo()
    proc = fix(root, HF_ENDPOINT=hub, CODEAGENT_HOST_MEMORY="8G")
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc)
    assert "not downloading it" in line and "does not fit CPU with 8.0 GiB" in line
    assert "downloading it to" not in line


def test_what_the_default_model_takes_from_the_planner(monkeypatch):
    monkeypatch.setenv("CODEAGENT_HOST_MEMORY", "256G")
    need = firstrun.needs("qwen3-coder-30b-a3b")
    assert need is not None and need.problem is None and need.where == "RAM"
    assert 56 << 30 < need.download < 58 << 30  # bf16 weights as released: about 61 GB
    assert need.download < need.memory < 64 << 30  # bfloat16 on a CPU: not float32's ~122 GB


def test_a_declined_download_is_one_message(monkeypatch, hub, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", hub)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("CODEAGENT_HOST_MEMORY", "256G")
    if firstrun.free_disk(tmp_path) < 58 << 30:
        pytest.skip("less free disk here than the download: the disk refusal answers first")
    asked: list[str] = []
    with pytest.raises(ValueError, match="the download was declined"):
        firstrun.fetch_default("qwen3-coder-30b-a3b", lambda question: asked.append(question) or False)
    (question,) = asked
    assert "56.9 GiB download" in question and "free" in question and question.endswith("Download it now?")


def test_too_little_disk_is_refused_with_numbers(monkeypatch, hub, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", hub)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("CODEAGENT_HOST_MEMORY", "256G")
    if firstrun.free_disk(tmp_path) >= 57 << 30:
        pytest.skip("more free disk here than the download")
    with pytest.raises(ValueError, match=r"56\.9 GiB does not fit the .* free under"):
        firstrun.fetch_default("qwen3-coder-30b-a3b", lambda question: pytest.fail("asked anyway"))


def test_models_pull_states_the_size_and_free_disk_first(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    free = firstrun.free_disk(tmp_path)
    if free < 58 << 30:
        with pytest.raises(
            ValueError, match=r"not downloading Qwen/Qwen3-Coder-30B-A3B-Instruct: 56\.9 GiB does not fit"
        ):
            firstrun.announce_pull("qwen3-coder-30b-a3b")
    else:
        firstrun.announce_pull("qwen3-coder-30b-a3b")
        assert "Qwen/Qwen3-Coder-30B-A3B-Instruct, 56.9 GiB, to" in capsys.readouterr().err
    firstrun.announce_pull("some-org/unplanned")  # no shipped config: the size is not known before
    line = capsys.readouterr().err.strip()
    assert (
        line.startswith(f"codeagent: downloading some-org/unplanned to {tmp_path / 'hub'} (")
        and "free)" in line
    )
