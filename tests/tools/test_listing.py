"""list_files: gitignore-awareness in real git repos and plain folders, globs, the cap."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from codeagent.tools.base import Observation, ToolEnv, run_tool
from codeagent.tools.globs import compile_glob
from codeagent.tools.listing import MAX_ENTRIES
from codeagent.tools.registry import get_tool


def call(env: ToolEnv, **args: object) -> Observation:
    return run_tool(get_tool("list_files"), args, env)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


FILES = {
    ".gitignore": "build/\n*.log\n",
    "src/app.py": "",
    "src/pkg/util.py": "",
    "src/pkg/test_util.py": "",
    "tests/test_app.py": "",
    "a.txt": "",
    "b.txt": "",
    "c.txt": "",
    "build/out.py": "",
    "debug.log": "",
    "docs/nested.log": "",
    "README.md": "",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    write(root, FILES)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "src/app.py"], check=True)  # tracked and untracked alike
    return root


def test_lists_tracked_and_untracked_files_but_not_ignored_ones_or_git(repo):
    listing = call(ToolEnv(repo)).text.splitlines()
    assert listing == [
        ".gitignore",
        "README.md",
        "a.txt",
        "b.txt",
        "c.txt",
        "src/app.py",
        "src/pkg/test_util.py",
        "src/pkg/util.py",
        "tests/test_app.py",
    ]


def test_gitignore_applies_outside_a_git_repository_too(tmp_path):
    root = tmp_path / "plain"
    write(root, FILES)
    listing = call(ToolEnv(root)).text.splitlines()
    assert "src/app.py" in listing and "README.md" in listing
    assert not any(name.startswith("build/") or name.endswith(".log") for name in listing)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"pattern": "*.py"}, ["src/app.py", "src/pkg/test_util.py", "src/pkg/util.py", "tests/test_app.py"]),
        ({"pattern": "src/*.py"}, ["src/app.py"]),
        ({"pattern": "src/**/*.py"}, ["src/app.py", "src/pkg/test_util.py", "src/pkg/util.py"]),
        ({"pattern": "**/test_*.py"}, ["src/pkg/test_util.py", "tests/test_app.py"]),
        ({"pattern": "[ab].txt"}, ["a.txt", "b.txt"]),
        ({"pattern": "[!ab].txt"}, ["c.txt"]),
        ({"pattern": "./src/?pp.py"}, ["src/app.py"]),
        ({"path": "src/pkg"}, ["src/pkg/test_util.py", "src/pkg/util.py"]),
        ({"path": "src", "pattern": "pkg/u*.py"}, ["src/pkg/util.py"]),
        ({"pattern": "*.log"}, []),
    ],
)
def test_glob_patterns(repo, args, expected):
    result = call(ToolEnv(repo), **args)
    assert result.ok and result.data["count"] == len(expected)
    assert (result.text.splitlines() if expected else []) == expected


def test_globs_keep_single_stars_inside_one_folder():
    assert compile_glob("*.py").match("app.py") and not compile_glob("*.py").match("src/app.py")
    assert compile_glob("**/x").match("x") and compile_glob("**/x").match("a/b/x")
    assert compile_glob("a[]]b").match("a]b") and compile_glob("a[").match("a[")


def test_no_match_says_ignored_files_are_not_listed(repo):
    result = call(ToolEnv(repo), path="build")
    assert result.ok and result.text == "(no files match; gitignored files are not listed)"


def test_the_listing_is_capped_with_a_count_of_what_was_left_out(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    for n in range(MAX_ENTRIES + 37):
        (root / f"f{n:04d}.txt").write_text("")
    result = call(ToolEnv(root))
    lines = result.text.splitlines()
    assert len(lines) == MAX_ENTRIES + 1 and lines[MAX_ENTRIES - 1] == f"f{MAX_ENTRIES - 1:04d}.txt"
    assert lines[-1] == "[37 more files not shown; narrow with path or pattern]"
    assert result.data == {"count": MAX_ENTRIES + 37, "shown": MAX_ENTRIES}


def test_files_and_missing_folders_are_refused(repo):
    assert "use read_file" in call(ToolEnv(repo), path="README.md").text
    assert "does not exist" in call(ToolEnv(repo), path="nowhere").text


def reference(glob: str, path: str) -> bool:
    """A backtracking matcher written from the syntax: slow, but plainly right on tiny inputs."""
    if not glob:
        return not path
    if glob.startswith("**/"):
        ends = [i + 1 for i, ch in enumerate(path) if ch == "/"]
        return reference(glob[3:], path) or any(reference(glob[3:], path[end:]) for end in ends)
    if glob.startswith("**"):
        return any(reference(glob[2:], path[i:]) for i in range(len(path) + 1))
    if glob[0] == "*":
        return any(reference(glob[1:], path[i:]) for i in range(len(path) + 1) if "/" not in path[:i])
    if not path or (glob[0] == "?" and path[0] == "/") or glob[0] not in ("?", path[0]):
        return False
    return reference(glob[1:], path[1:])


def test_globs_agree_with_a_reference_matcher():
    rng = random.Random(7)
    pieces = ["a", "b", "/", ".", "*", "?", "**", "**/"]
    for _ in range(2000):
        glob = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
        compiled = compile_glob(glob)
        for _ in range(20):
            path = "".join(rng.choice("ab/.") for _ in range(rng.randint(0, 8)))
            assert compiled.match(path) == reference(glob, path), (glob, path)


@pytest.mark.parametrize(
    ("glob", "yes", "no"),
    [
        ("[a-c]x", ["bx"], ["dx", "/x"]),
        ("[!a-c]x", ["dx"], ["bx", "/x"]),
        ("[]]x", ["]x"], ["ax"]),
        ("[!]]x", ["ax"], ["]x"]),
        ("x[", ["x["], ["xa"]),
        ("[\\^]", ["\\", "^"], ["a"]),
    ],
)
def test_glob_classes(glob, yes, no):
    compiled = compile_glob(glob)
    assert all(compiled.match(path) for path in yes) and not any(compiled.match(path) for path in no)


@pytest.mark.attack("bounds")
@pytest.mark.timeout(60)
def test_globs_that_would_backtrack_as_regexes_are_matched_in_linear_time(tmp_path):
    root = tmp_path / "deep"
    deep = root / "/".join(["a"] * 40)
    deep.mkdir(parents=True)
    (deep / ("a" * 200)).write_text("")
    (root / ("a" * 200 + "c")).write_text("")
    env = ToolEnv(root)
    stars = call(env, pattern="*a" * 30 + "*b")  # as a regex: ~200**30 ways to fail
    folders = call(env, pattern="**/" * 30 + "b")
    spans = call(env, pattern="**a" * 30 + "**b")
    assert all(result.ok and result.data["count"] == 0 for result in (stars, folders, spans))
    assert call(env, pattern="*a" * 30 + "*c").text == "a" * 200 + "c"
    assert call(env, pattern="**/" * 30 + "a" * 200).data["count"] == 1


def test_unusable_globs_are_refused_with_the_reason(repo):
    assert "bad class '[z-a]'" in call(ToolEnv(repo), pattern="[z-a].py").text
    assert "the limit is 1000" in call(ToolEnv(repo), pattern="*" * 1001).text
