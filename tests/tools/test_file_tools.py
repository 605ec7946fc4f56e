"""read_file, write_file, list_files, search and path confinement, on real files and git repos."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from codeagent.tools.base import ToolEnv, run_tool
from codeagent.tools.registry import get_tool
from codeagent.tools.search import python_search, render


def call(env: ToolEnv, name: str, **args):
    return run_tool(get_tool(name), args, env)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("".join(f"line {n}\n" for n in range(1, 1001)))
    (root / "src" / "util.py").write_text("def helper():\n    return 42\n")
    (root / "build").mkdir()
    (root / "build" / "out.py").write_text("def helper():\n    pass\n")
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "debug.log").write_text("helper\n")
    (root / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_read_file_numbers_lines_and_pages_long_files(repo):
    env = ToolEnv(repo)
    first = call(env, "read_file", path="src/app.py")
    assert first.ok and first.text.startswith("   1| line 1\n")
    assert "[showing lines 1-400 of 1000; read on with start_line=401]" in first.text
    ranged = call(env, "read_file", path="src/app.py", start_line=990, end_line=995)
    assert ranged.text.splitlines()[0] == "990| line 990" and "[lines 990-995 of 1000]" in ranged.text
    assert "src/app.py" in env.focus_files


def test_read_file_refuses_binary_and_directories(repo):
    env = ToolEnv(repo)
    binary = call(env, "read_file", path="blob.bin")
    assert not binary.ok and "binary" in binary.text
    folder = call(env, "read_file", path="src")
    assert not folder.ok and "list_files" in folder.text
    beyond = call(env, "read_file", path="src/util.py", start_line=50)
    assert not beyond.ok and "outside the file" in beyond.text


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "src/../../outside.txt"])
def test_paths_outside_the_repository_are_refused(repo, path):
    (repo.parent / "outside.txt").write_text("secret")
    result = call(ToolEnv(repo), "read_file", path=path)
    assert not result.ok and "outside the repository" in result.text


def test_symlinks_that_lead_out_are_refused(repo, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "key").write_text("secret")
    os.symlink(outside, repo / "link")
    env = ToolEnv(repo)
    assert "outside the repository" in call(env, "read_file", path="link/key").text
    assert "outside the repository" in call(env, "write_file", path="link/new", content="x").text
    assert not (outside / "new").exists()


def test_a_sibling_sharing_the_name_prefix_is_outside(repo):
    sibling = repo.parent / (repo.name + "-evil")
    sibling.mkdir()
    (sibling / "x.py").write_text("x")
    result = call(ToolEnv(repo), "read_file", path=str(sibling / "x.py"))
    assert not result.ok and "outside the repository" in result.text


def test_write_file_creates_and_returns_a_diff_keeping_the_mode(repo):
    env = ToolEnv(repo)
    script = repo / "run.sh"
    script.write_text("echo a\n")
    script.chmod(0o755)
    result = call(env, "write_file", path="run.sh", content="echo b\n")
    assert result.ok and "-echo a\n+echo b" in result.data["diff"]
    assert script.stat().st_mode & 0o777 == 0o755
    created = call(env, "write_file", path="new/dir/file.txt", content="hi\n")
    assert (
        created.text.startswith("created new/dir/file.txt")
        and (repo / "new/dir/file.txt").read_text() == "hi\n"
    )


def test_list_files_is_gitignore_aware_with_patterns(repo):
    env = ToolEnv(repo)
    listing = call(env, "list_files").text.splitlines()
    assert "src/app.py" in listing and "blob.bin" in listing
    assert not any(name.startswith("build/") or name.endswith(".log") for name in listing)
    assert call(env, "list_files", pattern="*.py").text.splitlines() == ["src/app.py", "src/util.py"]
    assert call(env, "list_files", path="src", pattern="src/**/u*.py").text == "src/util.py"


def test_list_files_caps_with_a_count(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    for n in range(520):
        (root / f"f{n:03d}.txt").write_text("x")
    text = call(ToolEnv(root), "list_files").text
    assert len(text.splitlines()) == 501 and "[20 more files not shown" in text


def test_search_shows_matches_with_context_and_respects_gitignore(repo):
    env = ToolEnv(repo)
    result = call(env, "search", pattern=r"def helper")
    assert result.ok and "src/util.py:1: def helper():" in result.text
    assert "src/util.py-2-     return 42" in result.text
    assert "build/" not in result.text and "debug.log" not in result.text
    globbed = call(env, "search", pattern="line 99[0-9]", glob="*.py", path="src")
    assert globbed.data["matches"] == 10
    assert not call(env, "search", pattern="(unclosed").ok


def test_search_caps_matches(repo):
    result = call(ToolEnv(repo), "search", pattern="line")
    assert result.data["matches"] == 1000 and "[800 more matches not shown" in result.text


@pytest.mark.skipif(shutil.which("rg") is None, reason="ripgrep is not installed here")
def test_ripgrep_and_python_engines_agree(repo):
    env = ToolEnv(repo)
    from codeagent.tools.ignore import iter_files

    python_text = render(python_search(repo, iter_files(repo), "helper|line 5"))[0]
    assert call(env, "search", pattern="helper|line 5").text.startswith(python_text)


def test_the_python_engine_serves_when_rg_is_missing(repo, monkeypatch):
    env = ToolEnv(repo)
    with_rg = call(env, "search", pattern=r"helper|line 5\d\b")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    if shutil.which("rg"):
        pytest.skip("rg is installed system-wide; the fallback cannot be exercised here")
    without = call(env, "search", pattern=r"helper|line 5\d\b")
    assert without.data["engine"] == "python"
    assert without.text == with_rg.text and without.data["matches"] == with_rg.data["matches"]
