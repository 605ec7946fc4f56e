"""The repo map: tags in six languages, ranking toward the focus, the budget, the disk cache."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from codeagent.tools.base import ToolEnv, ToolSettings, run_tool
from codeagent.tools.registry import get_tool
from codeagent.tools.repomap.repomap import RepoMap
from codeagent.tools.repomap.tags import extract

SAMPLES = {
    "python": (
        b"class Store:\n    def get(self, key):\n        return load(key)\n\ndef load(k):\n    pass\n",
        {("Store", 1), ("get", 2), ("load", 5)},
        {"load"},
    ),
    "javascript": (
        b"class View {\n  render() { return draw(); }\n}\nfunction draw() {}\nconst go = () => new View();\n",
        {("View", 1), ("render", 2), ("draw", 4), ("go", 5)},
        {"draw", "View"},
    ),
    "typescript": (
        b"interface Shape { area(): number }\nclass Box implements Shape {\n  area() { return size(); }\n}\n"
        b"function size(): number { return 1; }\n",
        {("Shape", 1), ("area", 1), ("Box", 2), ("area", 3), ("size", 5)},
        {"size", "Shape"},
    ),
    "go": (
        b"package p\n\ntype Server struct{}\n\nfunc (s *Server) Start() { listen() }\n\nfunc listen() {}\n",
        {("Server", 3), ("Start", 5), ("listen", 7)},
        {"listen", "Server"},
    ),
    "rust": (
        b"struct Pool;\nimpl Pool {\n    fn take(&self) { grow(); }\n}\nfn grow() {}\n",
        {("Pool", 1), ("take", 3), ("grow", 5)},
        {"grow", "Pool"},
    ),
    "java": (
        b"class Cart {\n  void add() { total(); new Item(); }\n  int total() { return 0; }\n}\n",
        {("Cart", 1), ("add", 2), ("total", 3)},
        {"total", "Item"},
    ),
}


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_definitions_and_references_per_language(language):
    source, defs, refs = SAMPLES[language]
    tags = extract(source, language)
    assert {(t.name, t.line) for t in tags if t.kind == "def"} == defs
    assert refs <= {t.name for t in tags if t.kind == "ref"}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = write(
        tmp_path / "proj",
        {
            "core.py": "def compute(x):\n    return x\n\nclass Engine:\n    def run(self):\n        return compute(1)\n",
            "api.py": "from core import compute\n\ndef handler():\n    return compute(2)\n",
            "unrelated.py": "def lonely():\n    return 0\n\ndef other_thing():\n    return 1\n",
            "notes.txt": "not code\n",
        },
    )
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def positions(text: str) -> dict[str, int]:
    return {line.rstrip(":"): n for n, line in enumerate(text.splitlines()) if not line.startswith(" ")}


def test_files_referenced_by_the_focus_rank_first(project, tmp_path):
    repo_map = RepoMap(project, tmp_path / "cache")
    files = ["api.py", "core.py", "unrelated.py"]
    text = repo_map.build(files, focus_files={"api.py"}, max_tokens=1000)
    order = positions(text)
    assert order["core.py"] < order["unrelated.py"]
    assert "def compute(x):" in text


def test_focus_identifiers_win(project, tmp_path):
    text = RepoMap(project, tmp_path / "cache").build(
        ["api.py", "core.py", "unrelated.py"], focus_idents={"lonely"}, max_tokens=1000
    )
    assert text.splitlines()[0] == "unrelated.py:"


def test_the_budget_is_respected_and_a_larger_one_shows_more(project, tmp_path):
    repo_map = RepoMap(project, tmp_path / "cache")
    files = ["api.py", "core.py", "unrelated.py"]
    small = repo_map.build(files, max_tokens=20)
    large = repo_map.build(files, max_tokens=400)
    assert (len(small) + 3) // 4 <= 20 < (len(large) + 3) // 4 <= 400
    assert repo_map.stats.shown == 6 and "other files: notes.txt" not in large  # notes.txt is not in files


def test_second_build_parses_nothing_and_a_corrupt_entry_is_rebuilt(project, tmp_path):
    cache = tmp_path / "cache"
    files = ["api.py", "core.py", "unrelated.py"]
    first = RepoMap(project, cache)
    text = first.build(files)
    assert first.stats.parsed == 3
    second = RepoMap(project, cache)
    assert second.build(files) == text and second.stats.parsed == 0 and second.stats.cached == 3
    with sqlite3.connect(cache / "tags.sqlite") as db:
        db.execute("UPDATE tags SET data = 'not json' WHERE key LIKE '%'")
    third = RepoMap(project, cache)
    assert third.build(files) == text and third.stats.parsed == 3


def test_a_cache_file_that_is_not_a_database_is_replaced(project, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tags.sqlite").write_bytes(b"garbage" * 100)
    assert "def compute" in RepoMap(project, cache).build(["core.py"])


def test_tool_respects_gitignore_and_focus_argument(project, tmp_path):
    write(project, {"build/gen.py": "def generated():\n    pass\n", ".gitignore": "build/\n"})
    env = ToolEnv(project, settings=ToolSettings(cache_dir=tmp_path / "cache"))
    result = run_tool(get_tool("repo_map"), {"focus": "lonely"}, env)
    assert result.ok and result.text.startswith("unrelated.py:")
    assert "generated" not in result.text and "other files: .gitignore, notes.txt" in result.text
