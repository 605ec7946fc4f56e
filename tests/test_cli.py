"""The command line as a user meets it: help everywhere, one clear line for every mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def codeagent(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("codeagent: error: ") and needle in lines[0], lines[0]


def test_help_lists_the_subcommands():
    proc = codeagent("--help")
    assert proc.returncode == 0
    for name in ("fix", "bench"):
        assert name in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [["fix", "--help"], ["bench", "--help"], ["bench", "repomap", "--help"], ["bench", "tools", "--help"]],
)
def test_every_subcommand_has_help(argv):
    proc = codeagent(*argv)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: codeagent")


def test_unknown_flag(tmp_path):
    assert_one_line_error(
        codeagent("fix", "--frobnicate", cwd=tmp_path), "unrecognized arguments: --frobnicate"
    )


def test_unknown_subcommand(tmp_path):
    assert_one_line_error(codeagent("frobnicate", cwd=tmp_path), "invalid choice")


def test_bad_flag_value(tmp_path):
    assert_one_line_error(codeagent("fix", "--max-steps", "0", cwd=tmp_path), "must be positive")


def test_missing_repository(tmp_path, write_script, fix_script):
    script = write_script(fix_script)
    proc = codeagent("fix", "--task", "x", "--model", f"scripted:{script}", "-C", str(tmp_path / "nope"))
    assert_one_line_error(proc, "is not a directory")


def test_not_a_git_repository(tmp_path, write_script, fix_script):
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = codeagent("fix", "--task", "x", "--model", f"scripted:{write_script(fix_script)}", cwd=plain)
    assert_one_line_error(proc, "is not inside a git repository")


def test_missing_default_model_says_what_to_do(make_repo, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = codeagent("fix", "--task", "x", cwd=make_repo())
    assert proc.returncode == 2
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("codeagent: error: model 'qwen3-coder-30b-a3b'")
    for hint in ("--model PATH", "Hugging Face cache", "remote:NAME"):
        assert hint in error


def test_unknown_model_spec(make_repo):
    assert_one_line_error(codeagent("fix", "--task", "x", "--model", "bogus:thing", cwd=make_repo()), "bogus")


def test_missing_script_file(make_repo, tmp_path):
    proc = codeagent("fix", "--task", "x", "--model", f"scripted:{tmp_path / 'none.jsonl'}", cwd=make_repo())
    assert_one_line_error(proc, "none.jsonl")


def test_bad_config(make_repo, tmp_path):
    config = tmp_path / "config.toml"
    repo = make_repo()

    def with_config(text: str) -> subprocess.CompletedProcess:
        config.write_text(text)
        return codeagent("--config", str(config), "fix", "--task", "x", cwd=repo)

    assert_one_line_error(with_config("[limits]\nmax_steps = -1\n"), "limits.max_steps")
    assert_one_line_error(with_config("model = [unclosed\n"), "cannot read")
    assert_one_line_error(with_config("colour = 'blue'\n"), "colour")
    assert_one_line_error(
        codeagent("--config", str(tmp_path / "none.toml"), "fix", cwd=repo), "does not exist"
    )


def test_missing_task(make_repo, write_script, fix_script):
    proc = codeagent("fix", "--model", f"scripted:{write_script(fix_script)}", cwd=make_repo())
    assert_one_line_error(proc, "say what to fix")


def test_unknown_run_to_resume(make_repo):
    assert_one_line_error(codeagent("fix", "--resume", "nope", cwd=make_repo()), "no run 'nope'")
