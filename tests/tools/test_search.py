"""search: output form, gitignore-awareness, caps, and the rg and Python engines agreeing."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from codeagent.tools.base import OUT_OF_TIME, Observation, ToolEnv, ToolSettings, run_tool
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
    python = python_search(repo, files[0] + files[1], pattern)
    try:
        rg = rg_search(RG, repo, files[0], pattern) | python_search(repo, files[1], pattern)
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


# Bounded time: a pattern that makes a backtracking engine take exponential time must come
# back as an error the model can act on. pytest-timeout is the hang guard.
NEAR_MISS = "a" * 40 + "b\n"  # (a+)+$ tries about 2**40 ways to split the a's before failing


@pytest.fixture
def trap(tmp_path: Path) -> Path:
    root = tmp_path / "trap"
    root.mkdir()
    (root / "trap.txt").write_text(NEAR_MISS)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def quick(root: Path, **fields: object) -> ToolEnv:
    return ToolEnv(root, ToolSettings(search_timeout=1.0), **fields)


@pytest.mark.attack("bounds")
@pytest.mark.timeout(60)
def test_a_catastrophic_pattern_without_rg_is_stopped_with_advice(trap, tmp_path, monkeypatch):
    hide_rg(tmp_path, monkeypatch)
    result = call(quick(trap), pattern=r"(a+)+$")
    assert not result.ok
    assert result.text.startswith("error: search stopped after 1s. The pattern ran in Python's regex engine")
    assert "(a+)+" in result.text and "narrow path or glob" in result.text


@pytest.mark.attack("bounds")
@needs_rg
@pytest.mark.timeout(60)
def test_a_catastrophic_pattern_is_linear_in_rg(trap):
    result = call(quick(trap), pattern=r"(a+)+$")
    assert result.ok and result.data == {"matches": 0, "engine": "rg"}
    assert result.text == "no matches for '(a+)+$'"


@pytest.mark.attack("bounds")
@needs_rg
@pytest.mark.timeout(60)
def test_a_backreference_rg_rejects_is_stopped_in_the_python_engine(trap):
    result = call(quick(trap), pattern=r"(a+)+\1$")
    assert not result.ok and "search stopped after 1s. The pattern ran in Python's" in result.text


@pytest.mark.attack("bounds")
@pytest.mark.timeout(60)
def test_files_that_are_not_utf8_are_searched_in_bounded_time_too(trap):
    (trap / "latin.txt").write_bytes(b"caf\xe9 " + NEAR_MISS.encode())
    (trap / "trap.txt").unlink()
    result = call(quick(trap), pattern=r"(a+)+$")  # rg or not, this file goes to Python
    assert not result.ok and "search stopped after 1s" in result.text


@pytest.mark.attack("bounds")
@pytest.mark.timeout(60)
def test_the_runs_deadline_cuts_a_search_shorter_than_its_own_limit(trap, tmp_path, monkeypatch):
    hide_rg(tmp_path, monkeypatch)
    env = ToolEnv(trap, deadline=time.monotonic() + 1.0)  # search_timeout stays at its 20s
    result = call(env, pattern=r"(a+)+$")
    assert not result.ok and result.text == f"error: {OUT_OF_TIME}"
    assert call(env, pattern="b").text == f"error: {OUT_OF_TIME}"  # nothing starts once it passed


@pytest.mark.timeout(60)
def test_a_fast_python_search_still_works_under_the_limits(trap, tmp_path, monkeypatch):
    hide_rg(tmp_path, monkeypatch)
    result = call(quick(trap, deadline=time.monotonic() + 30), pattern=r"(a)\1+b")
    assert result.ok and result.data["engine"] == "python" and "trap.txt:1:" in result.text


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(" * 2000 + ")" * 2000, "is 4000 characters long; the limit is 2000"),
        ("(" * 900 + ")" * 900, "invalid regular expression"),  # too deep for the parser
        ("a{99999999999}", "invalid regular expression"),  # repeat count overflows
        (7, "pattern must be a string"),
    ],
)
@pytest.mark.attack("bounds")
def test_patterns_python_cannot_compile_are_refused(trap, pattern, reason):
    result = call(ToolEnv(trap), pattern=pattern)
    assert not result.ok and reason in result.text


@pytest.mark.attack("bounds")
@pytest.mark.timeout(60)
def test_a_glob_with_many_stars_does_not_backtrack(trap):
    (trap / ("a" * 150 + ".txt")).write_text("needle\n")
    env = ToolEnv(trap)
    glob = "*a" * 20 + "*c"
    result = call(env, pattern="needle", glob=glob)
    assert result.ok and result.data["matches"] == 0
    assert call(env, pattern="needle", glob="*a" * 20 + "*.txt").data["matches"] == 1
