"""search: output form, gitignore-awareness, caps, and the rg and Python engines agreeing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from codeagent.tools.base import Observation, ToolEnv, run_tool
from codeagent.tools.ignore import iter_files
from codeagent.tools.registry import get_tool
from codeagent.tools.search import (
    MAX_LINE_CHARS,
    MAX_MATCHES,
    RgUnsupported,
    python_search,
    render,
    rg_search,
    searchable,
)

RG = shutil.which("rg")
needs_rg = pytest.mark.skipif(RG is None, reason="ripgrep is not installed here")


def call(env: ToolEnv, **args: object) -> Observation:
    return run_tool(get_tool("search"), args, env)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    files = {
        ".gitignore": "build/\n*.log\n",
        "src/util.py": "import os\n\n\ndef helper():\n    return 42\n\n\ndef other():\n    return helper()\n",
        "src/many.txt": "".join(f"hit {n}\n" for n in range(1, 301)),
        "src/crlf.txt": "first helper\r\nsecond\r\n",
        "build/out.py": "def helper():\n    pass\n",
        "debug.log": "helper\n",
        "docs/latin.txt": "caf\xe9 helper\nnext\n",
        "docs/odd.txt": "a\x0cb helper\nlast\r",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        data = text.encode("latin-1") if rel == "docs/latin.txt" else text.encode()
        (root / rel).write_bytes(data)
    (root / "blob.bin").write_bytes(b"\x00helper\x00" * 10)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def hide_rg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave a PATH that has git but no rg, so the tool must use its Python engine."""
    bin_dir = tmp_path / "bin-without-rg"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    monkeypatch.setenv("PATH", str(bin_dir))


def test_matches_show_with_context_grouped_per_file(repo):
    result = call(ToolEnv(repo), pattern=r"def \w+", path="src")
    assert result.ok and result.data["matches"] == 2
    assert result.text == (
        "src/util.py-2- \n"
        "src/util.py-3- \n"
        "src/util.py:4: def helper():\n"
        "src/util.py-5-     return 42\n"
        "src/util.py-6- \n"
        "src/util.py-7- \n"
        "src/util.py:8: def other():\n"
        "src/util.py-9-     return helper()"
    )


def test_separate_groups_and_files_are_divided(repo):
    result = call(ToolEnv(repo), pattern=r"import os|return helper|first")
    assert "src/crlf.txt:1: first helper\nsrc/crlf.txt-2- second\n--\nsrc/util.py:1: import os" in result.text
    assert "src/util.py-3- \n--\nsrc/util.py-7- " in result.text


def test_ignored_and_binary_files_are_not_searched(repo):
    result = call(ToolEnv(repo), pattern="helper")
    paths = {line.split(":")[0].split("-")[0] for line in result.text.split("\n") if line != "--"}
    assert paths == {"docs/latin.txt", "docs/odd.txt", "src/crlf.txt", "src/util.py"}


def test_path_and_glob_narrow_the_search(repo):
    env = ToolEnv(repo)
    assert call(env, pattern="helper", glob="*.py").data["matches"] == 2
    assert call(env, pattern="helper", path="docs").data["matches"] == 2
    single = call(env, pattern="return", path="src/util.py")
    assert single.data["matches"] == 2 and "src/util.py:5:     return 42" in single.text
    assert call(env, pattern="helper", path="src", glob="util.*").data["matches"] == 2


def test_invalid_regex_is_reported_with_the_regex_error(repo):
    result = call(ToolEnv(repo), pattern="(unclosed")
    assert not result.ok and "invalid regular expression '(unclosed'" in result.text
    assert "missing ), unterminated subpattern" in result.text


def test_no_match_and_multiline_hint(repo):
    assert call(ToolEnv(repo), pattern="zebra").text == "no matches for 'zebra'"
    assert "one line at a time" in call(ToolEnv(repo), pattern=r"helper\(\)\n").text


def test_matches_are_capped_with_a_count_of_the_rest(repo):
    result = call(ToolEnv(repo), pattern=r"^hit \d+$")
    assert result.data == {"matches": 300, "shown": MAX_MATCHES, "engine": result.data["engine"]}
    assert result.text.count("src/many.txt:") == MAX_MATCHES
    assert f"src/many.txt:{MAX_MATCHES}: hit {MAX_MATCHES}\n" in result.text
    assert f"src/many.txt-{MAX_MATCHES + 1}-" not in result.text  # a hidden match is not context
    assert result.text.endswith("[100 more matches not shown; narrow the pattern, path or glob]")


def test_long_lines_are_cut(repo):
    (repo / "min.js").write_text("var a=1;" * 200 + "needle\n")
    result = call(ToolEnv(repo), pattern="var a")
    assert result.text.endswith(" [...]") and len(result.text) < MAX_LINE_CHARS + 50


def test_crlf_lines_end_without_cr_and_lookaround_works(repo):
    env = ToolEnv(repo)
    assert "src/crlf.txt:1: first helper\n" in call(env, pattern=r"helper\r?$").text
    behind = call(env, pattern=r"(?<=first )helper")
    assert behind.data["matches"] == 1 and "src/crlf.txt:1:" in behind.text


def test_the_python_engine_serves_when_rg_is_missing(repo, tmp_path, monkeypatch):
    hide_rg(tmp_path, monkeypatch)
    result = call(ToolEnv(repo), pattern="def helper")
    assert result.data["engine"] == "python" and "src/util.py:4: def helper():" in result.text


PATTERNS = [
    "helper",
    r"helper$",
    r"helper\r?$",
    r"\s$",
    r"^$",
    r"caf.",
    r"[^a-z ]",
    r"\bhit 1\d\b",
    r"(?i)HELPER",
    r"\d+",
    r"a.b",
    r"last.",
    r"(?<=first )helper",
    r"(\w)\1",
]


@needs_rg
@pytest.mark.parametrize("pattern", PATTERNS)
def test_both_engines_give_the_same_results(repo, pattern):
    files = searchable(repo, iter_files(repo))
    python = python_search(repo, files[0] + files[1], re.compile(pattern))
    try:
        rg = rg_search(RG, repo, files[0], pattern) | python_search(repo, files[1], re.compile(pattern))
    except RgUnsupported:
        # rg's regex engine rejects it (look-around, backreference): the tool runs Python alone.
        result = call(ToolEnv(repo), pattern=pattern)
        assert result.data["engine"] == "python" and result.text.startswith(render(python)[0])
        return
    assert rg == python
    assert render(rg) == render(python)


@needs_rg
@pytest.mark.parametrize("pattern", ["helper", r"^hit \d+$", r"caf.", r"\s$"])
def test_the_tool_answers_the_same_with_and_without_rg(repo, pattern, tmp_path, monkeypatch):
    with_rg = call(ToolEnv(repo), pattern=pattern)
    hide_rg(tmp_path, monkeypatch)
    without = call(ToolEnv(repo), pattern=pattern)
    assert with_rg.data["engine"] == "rg" and without.data["engine"] == "python"
    assert (with_rg.text, with_rg.data["matches"]) == (without.text, without.data["matches"])


def test_searchable_sorts_files_for_the_engines(repo):
    utf8, other = searchable(repo, ["src/util.py", "docs/latin.txt", "blob.bin", "gone.txt"])
    assert (utf8, other) == (["src/util.py"], ["docs/latin.txt"])
