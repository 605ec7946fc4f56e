"""The repo map: tags in six languages, ranking toward the focus, the budget, the disk cache.

Every test writes real files into a temporary folder and builds real maps; the cache is a
real SQLite file, corrupted by writing to it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from codeagent.bench.repomap import bench_repomap
from codeagent.tools.base import OUT_OF_TIME, ToolEnv, ToolError, ToolSettings, run_tool
from codeagent.tools.registry import get_tool
from codeagent.tools.repomap.rank import build_graph, pagerank
from codeagent.tools.repomap.render import estimate
from codeagent.tools.repomap.repomap import RepoMap
from codeagent.tools.repomap.tags import Tag
from codeagent.tools.repomap.tool import split_focus

# language -> (files, file that uses the library, library file, its definitions, refs in the user)
PROJECTS: dict[str, tuple[dict[str, str], str, str, set[tuple[str, int]], set[tuple[str, int]]]] = {
    "python": (
        {
            "lib/shapes.py": "class Shape:\n    def area(self):\n        return 0\n\n\n"
            "def make_shape(kind):\n    return Shape()\n\nDEFAULT = 3\n",
            "app.py": "from lib.shapes import make_shape\n\ndef main():\n"
            '    shape = make_shape("square")\n    return shape.area()\n',
            "other.py": "def helper():\n    return 1\n",
        },
        "app.py",
        "lib/shapes.py",
        {("Shape", 1), ("area", 2), ("make_shape", 6), ("DEFAULT", 9)},
        {("make_shape", 1), ("make_shape", 4), ("area", 5)},
    ),
    "javascript": (
        {
            "lib.js": "export class Widget {\n  draw() { return paint(this); }\n}\n"
            "export function paint(w) { return w; }\nexport const create = () => new Widget();\n",
            "app.js": 'import { create } from "./lib.js";\nfunction start() {\n'
            "  const w = create();\n  w.draw();\n}\n",
            "other.js": "function idle() { return 0; }\n",
        },
        "app.js",
        "lib.js",
        {("Widget", 1), ("draw", 2), ("paint", 4), ("create", 5)},
        {("create", 3), ("draw", 4)},
    ),
    "typescript": (
        {
            "lib.ts": "export interface Store { get(key: string): string; }\nexport type Key = string;\n"
            "export class MemoryStore implements Store {\n  get(key: Key): string { return key; }\n}\n"
            "export enum Mode { Fast, Slow }\n",
            "app.ts": 'import { MemoryStore, Store } from "./lib";\nexport function open(): Store {\n'
            "  const s = new MemoryStore();\n  return s;\n}\n",
            "other.ts": "function idle(): number { return 0; }\n",
        },
        "app.ts",
        "lib.ts",
        {("Store", 1), ("get", 1), ("Key", 2), ("MemoryStore", 3), ("get", 4), ("Mode", 6)},
        {("Store", 2), ("MemoryStore", 3)},
    ),
    "tsx": (
        {
            "view.tsx": "interface Props { label: string }\n"
            "export function Button(props: Props) {\n  return <button>{props.label}</button>;\n}\n",
            "page.tsx": "export function Page() {\n  return <div><Button label='x' /></div>;\n}\n",
            "other.tsx": "function Idle() { return <span />; }\n",
        },
        "page.tsx",
        "view.tsx",
        {("Props", 1), ("Button", 2)},
        {("Button", 2)},
    ),
    "go": (
        {
            "lib/store.go": "package lib\n\ntype Store struct{}\n\nfunc (s *Store) Put(key string) {}\n\n"
            "func NewStore() *Store { return &Store{} }\n\nconst Limit = 10\n",
            "main.go": 'package main\n\nimport "example/lib"\n\nfunc main() {\n'
            '\ts := lib.NewStore()\n\ts.Put("k")\n}\n',
            "other.go": "package other\n\nfunc Idle() int { return 0 }\n",
        },
        "main.go",
        "lib/store.go",
        {("Store", 3), ("Put", 5), ("NewStore", 7), ("Limit", 9)},
        {("NewStore", 6), ("Put", 7)},
    ),
    "rust": (
        {
            "src/pool.rs": "pub struct Pool;\n\nimpl Pool {\n    pub fn new() -> Pool { Pool }\n"
            "    pub fn take(&self) {}\n}\n\npub trait Drain { fn drain(&self); }\n",
            "src/main.rs": "mod pool;\nuse pool::Pool;\n\nfn main() {\n    let p = Pool::new();\n    p.take();\n}\n",
            "src/other.rs": "fn idle() -> u32 { 0 }\n",
        },
        "src/main.rs",
        "src/pool.rs",
        {("Pool", 1), ("new", 4), ("take", 5), ("Drain", 8), ("drain", 8)},
        {("Pool", 5), ("new", 5), ("take", 6)},
    ),
    "java": (
        {
            "shop/Cart.java": "package shop;\n\npublic class Cart {\n"
            "    private final List<Item> items = new ArrayList<>();\n\n"
            "    public void add(Item item) { items.add(item); }\n\n"
            "    public int total() { return items.size(); }\n}\n",
            "shop/Shop.java": "package shop;\n\nclass Shop {\n    int checkout() {\n"
            "        Cart cart = new Cart();\n        cart.add(new Item());\n        return cart.total();\n"
            "    }\n}\n",
            "shop/Other.java": "package shop;\n\nclass Other {\n    void idle() {}\n}\n",
        },
        "shop/Shop.java",
        "shop/Cart.java",
        {("Cart", 3), ("add", 6), ("total", 8)},
        {("Cart", 5), ("add", 6), ("Item", 6), ("total", 7)},
    ),
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def file_order(text: str) -> list[str]:
    return [line[:-1] for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]


@pytest.mark.parametrize("language", sorted(PROJECTS))
def test_definitions_references_and_ranking_per_language(language, tmp_path):
    files, user, library, defs, refs = PROJECTS[language]
    root = write(tmp_path / "proj", files)
    with RepoMap(root, tmp_path / "cache") as repo_map:
        tags = repo_map.file_tags(sorted(files))
        text = repo_map.build({user}, max_tokens=1000, files=sorted(files))
    assert {(t.name, t.line) for t in tags[library] if t.kind == "def"} == defs
    assert all(t.rel_path == library for t in tags[library])
    assert refs <= {(t.name, t.line) for t in tags[user] if t.kind == "ref"}
    order = file_order(text)
    assert order[0] == library  # what the focus file uses comes first
    other = next(name for name in files if name not in (user, library))
    assert other not in order or order.index(library) < order.index(other)


def test_definition_lines_keep_their_source_text(tmp_path):
    root = write(tmp_path / "proj", PROJECTS["python"][0])
    with RepoMap(root, tmp_path / "cache") as repo_map:
        text = repo_map.build({"app.py"}, max_tokens=1000, files=["app.py", "lib/shapes.py"])
    assert "lib/shapes.py:\n1| class Shape:\n2|     def area(self):\n6| def make_shape(kind):" in text


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


CODE = ["api.py", "core.py", "unrelated.py"]


def test_focus_identifiers_win(project, tmp_path):
    with RepoMap(project, tmp_path / "cache") as repo_map:
        text = repo_map.build({"api.py"}, {"lonely"}, max_tokens=1000, files=CODE)
    assert text.splitlines()[:2] == ["unrelated.py:", "1| def lonely():"]


def test_pagerank_keeps_its_mass_and_feeds_what_is_used():
    tags = {
        "a.py": [Tag("a.py", "f", "ref", 1, "call"), Tag("a.py", "g", "ref", 2, "call")],
        "b.py": [Tag("b.py", "f", "def", 1, "function"), Tag("b.py", "g", "ref", 2, "call")],
        "c.py": [Tag("c.py", "g", "def", 1, "function"), Tag("c.py", "f", "def", 2, "function")],
        "d.py": [Tag("d.py", "h", "def", 1, "function")],
    }
    files = sorted(tags)
    graph = build_graph(files, tags, set())
    rank = dict(zip(files, pagerank(graph, [0.25] * 4), strict=True))
    assert sum(rank.values()) == pytest.approx(1.0)
    assert rank["c.py"] > rank["b.py"] > rank["d.py"] and rank["a.py"] == pytest.approx(rank["d.py"])


def test_the_budget_is_respected_and_a_larger_one_shows_more(project, tmp_path):
    with RepoMap(project, tmp_path / "cache") as repo_map:
        small = repo_map.build(max_tokens=20, files=CODE)
        shown_small = repo_map.stats.shown
        large = repo_map.build(max_tokens=400, files=[*CODE, "notes.txt"])
        assert repo_map.stats.shown == 6 > shown_small > 0
        assert repo_map.build(max_tokens=0, files=CODE) == ""
        words = repo_map.build(max_tokens=12, count_tokens=lambda text: len(text.split()), files=CODE)
    assert estimate(small) <= 20 < estimate(large) <= 400
    assert large.endswith("\nother files: notes.txt")  # no definitions: named once all else fits
    assert 0 < len(words.split()) <= 12


def test_output_is_deterministic(project, tmp_path):
    maps = []
    for name in ("one", "two"):
        with RepoMap(project, tmp_path / name) as repo_map:
            maps.append(repo_map.build({"api.py"}, max_tokens=300, files=CODE))
    assert maps[0] == maps[1]


def test_second_build_parses_nothing_and_a_changed_file_is_parsed_again(project, tmp_path):
    cache = tmp_path / "cache"
    with RepoMap(project, cache) as first:
        text = first.build(files=CODE)
    assert (first.stats.parsed, first.stats.cached) == (3, 0)
    with RepoMap(project, cache) as second:
        assert second.build(files=CODE) == text
    assert (second.stats.parsed, second.stats.cached) == (0, 3)
    (project / "unrelated.py").write_text("def renamed():\n    return 0\n")
    with RepoMap(project, cache) as third:
        assert "def renamed():" in third.build(files=CODE)
    assert (third.stats.parsed, third.stats.cached) == (1, 2)


def test_a_check_that_stops_a_build_keeps_what_was_parsed(project, tmp_path):
    cache = tmp_path / "cache"
    calls: list[int] = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 2:
            raise ToolError(OUT_OF_TIME)

    with RepoMap(project, cache) as stopped, pytest.raises(ToolError):
        stopped.build(files=CODE, check=check)
    with RepoMap(project, cache) as again:
        again.build(files=CODE)
    assert (again.stats.parsed, again.stats.cached) == (1, 2)
    env = ToolEnv(project, ToolSettings(cache_dir=tmp_path / "cold"), deadline=0.0)  # long past
    assert run_tool(get_tool("repo_map"), {}, env).text == f"error: {OUT_OF_TIME}"


@pytest.mark.parametrize("bad", ["not json", "[[1]]", '[["f", "def", "x", "function", ""]]'])
def test_a_corrupt_entry_is_ignored_and_rebuilt(project, tmp_path, bad):
    cache = tmp_path / "cache"
    with RepoMap(project, cache) as first:
        text = first.build(files=CODE)
    with sqlite3.connect(cache / "tags.sqlite") as db:
        db.execute("UPDATE tags SET data = ?", (bad,))
    db.close()
    with RepoMap(project, cache) as second:
        assert second.build(files=CODE) == text
    assert second.stats.parsed == 3
    with RepoMap(project, cache) as third:
        third.build(files=CODE)
    assert third.stats.parsed == 0


BUILD_SCRIPT = """
import sys
from pathlib import Path
from codeagent.tools.repomap.repomap import RepoMap
with RepoMap(Path(sys.argv[1]), Path(sys.argv[2])) as repo_map:
    print(repo_map.build(files=sys.argv[3:]))
"""


def test_processes_building_at_once_share_the_cache(project, tmp_path):
    cache = tmp_path / "cache"
    command = [sys.executable, "-c", BUILD_SCRIPT, str(project), str(cache), *CODE]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = {run.communicate(timeout=60)[0] for run in runs}
    assert [run.returncode for run in runs] == [0] * 4 and len(outputs) == 1
    with RepoMap(project, cache) as repo_map:
        assert repo_map.build(files=CODE) + "\n" in outputs
    assert repo_map.stats.parsed == 0


def test_a_cache_file_that_is_not_a_database_is_replaced(project, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tags.sqlite").write_bytes(b"garbage" * 100)
    with RepoMap(project, cache) as repo_map:
        assert "def compute" in repo_map.build(files=["core.py"])
    with RepoMap(project, cache) as again:
        again.build(files=["core.py"])
    assert again.stats.cached == 1


def test_an_unwritable_cache_folder_still_gives_a_map(project, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    with RepoMap(project, blocker / "cache") as repo_map:
        assert "def compute" in repo_map.build(files=["core.py"])
    assert not repo_map.cache.persistent


def test_split_focus_finds_files_by_path_suffix_and_folder():
    files = ["src/app/main.py", "src/app/util.py", "docs/main.py", "README.md"]
    named, idents = split_focus("./src/app/main.py, util.py docs/ Engine.run main.py", files)
    assert named == {"src/app/main.py", "src/app/util.py", "docs/main.py"}
    assert idents == {"Engine.run", "Engine", "run", "main.py", "main", "py"}


def test_tool_respects_gitignore_focus_and_skips_binary_and_huge_files(project, tmp_path):
    write(project, {"build/gen.py": "def generated():\n    pass\n", ".gitignore": "build/\n"})
    write(project, {"huge.py": "def huge():\n    pass\n" + "#" * 1_100_000 + "\n"})
    (project / "blob.py").write_bytes(b"def blob():\x00\n")
    env = ToolEnv(project, settings=ToolSettings(cache_dir=tmp_path / "cache", repo_map_tokens=500))
    result = run_tool(get_tool("repo_map"), {"focus": "lonely"}, env)
    best, outline = result.text.split("\n\noutline:\n")
    assert result.ok and best.splitlines()[1] == "unrelated.py:1-2  def lonely():"
    assert outline.startswith("unrelated.py:\n1| def lonely():")
    assert "generated" not in result.text and "gen.py" not in result.text
    assert "def huge" not in result.text and "def blob" not in result.text
    assert result.text.endswith("other files: .gitignore, blob.py, huge.py, notes.txt")
    env.focus_files.add("api.py")
    focused = run_tool(get_tool("repo_map"), {}, env)
    assert file_order(focused.text)[0] == "core.py" and focused.data["cached"] == 3


def test_bench_reports_cold_and_cached_builds(project, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "keep.txt").write_text("not ours")
    report = bench_repomap(project, cache)
    assert (report["source_files"], report["parsed_cold"], report["parsed_cached"]) == (3, 3, 0)
    assert report["source_lines"] == 15 and report["tags"] > 0 and report["cold_s"] > 0
    assert (cache / "keep.txt").exists()
    json.dumps(report)
