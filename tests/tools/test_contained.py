"""Host-side reads of repository files never follow a symlink out of the repository.

An attacker's repository holds symlinks to an outside folder full of secrets: as a memory
folder (``.codeagent``), as a folder git's index still lists files under, as the file
itself. Every host-side reader (memory files, file listings, search, the codebase snapshot
and its tracker, the repo map, compaction's file texts) must leave the secret out.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from codeagent.agent.codebase import Tracker, collect
from codeagent.agent.context import _current_files, read_memory_files, system_message
from codeagent.tools.base import ToolEnv, run_tool
from codeagent.tools.contained import Contained, contained_file
from codeagent.tools.ignore import iter_files
from codeagent.tools.registry import get_tool
from codeagent.tools.repomap.repomap import RepoMap

SECRET = "OUTSIDE_SECRET_4242"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    for name in ("instructions.md", "AGENTS.md", "notes.md", "mod.py"):
        (folder / name).write_text(f"def leaked():\n    return '{SECRET}'\n")
    return folder


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def repository(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "repo"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q")
    return root


def test_the_rule_for_paths(tmp_path, outside):
    root = repository(tmp_path, {"src/a.py": "", "docs/b.md": ""})
    (root / "out").symlink_to(outside)
    (root / "in").symlink_to(root / "src")
    (root / "file_link.py").symlink_to(root / "src" / "a.py")
    vet = Contained(root)
    assert vet.file("src/a.py") == root / "src" / "a.py"
    assert vet.file("./src//a.py") == root / "src" / "a.py"
    assert vet.file(str(root / "docs" / "b.md")) == root / "docs" / "b.md"
    assert vet.file("in/a.py") == root / "in" / "a.py"  # a link that stays inside may be passed
    refused = ["out/notes.md", "file_link.py", "src", "src/../src/a.py", "../outside/notes.md"]
    refused += [str(outside / "notes.md"), "", "missing.py", "src/a.py/x", "a\0b"]
    assert [rel for rel in refused if vet.file(rel) is not None] == []


@pytest.mark.attack("secrets")
def test_memory_files_behind_a_link_that_leads_out_are_not_read(tmp_path, outside):
    root = repository(tmp_path, {"CLAUDE.md": "be brief\n"})
    (root / ".codeagent").symlink_to(outside)
    (root / "AGENTS.md").symlink_to(outside / "AGENTS.md")
    assert read_memory_files(root) == [("CLAUDE.md", "be brief\n")]
    assert SECRET not in system_message(root, "")["content"]


def test_memory_files_in_real_folders_are_read(tmp_path):
    root = repository(tmp_path, {".codeagent/instructions.md": "use tabs\n", "AGENTS.md": "x" * 30_000})
    found = dict(read_memory_files(root))
    assert found[".codeagent/instructions.md"] == "use tabs\n" and len(found["AGENTS.md"]) == 20_000


@pytest.mark.attack("secrets")
def test_listings_leave_out_files_git_still_lists_behind_a_link(tmp_path, outside):
    root = repository(tmp_path, {"docs/notes.md": "fine\n", "src/mod.py": "x = 1\n"})
    git(root, "add", "-A")
    # A command replaces the tracked folder with a link out: the index still names docs/notes.md.
    (root / "docs" / "notes.md").unlink()
    (root / "docs").rmdir()
    (root / "docs").symlink_to(outside)
    assert iter_files(root) == ["src/mod.py"]
    env = ToolEnv(root)
    assert SECRET not in run_tool(get_tool("search"), {"pattern": "SECRET"}, env).text
    assert "docs/notes.md" not in run_tool(get_tool("list_files"), {}, env).text


@pytest.mark.attack("secrets")
def test_a_plain_folder_walk_reads_no_ignore_file_or_folder_through_links(tmp_path, outside):
    root = tmp_path / "plain"
    (root / "src").mkdir(parents=True)
    (root / "src" / "mod.py").write_text("")
    (root / "linked").symlink_to(outside)
    (outside / ".gitignore").write_text("src/\n")  # would hide src/ if it were read
    (root / ".gitignore").symlink_to(outside / ".gitignore")
    assert iter_files(root) == ["src/mod.py"]


@pytest.mark.attack("secrets")
def test_the_codebase_snapshot_and_its_tracker_stay_inside(tmp_path, outside):
    root = repository(tmp_path, {"pkg/mod.py": "x = 1\n", "main.py": "print(1)\n"})
    git(root, "add", "-A")
    snapshot = collect(root)
    assert snapshot is not None and set(snapshot.files) == {"main.py", "pkg/mod.py"}
    tracker = Tracker(snapshot.files)
    (root / "pkg" / "mod.py").unlink()
    (root / "pkg").rmdir()
    (root / "pkg").symlink_to(outside)  # pkg/mod.py now reads outside text
    note = tracker.changes(root)
    assert SECRET not in note and "-x = 1" in note  # reported as deleted
    assert SECRET not in (collect(root) or snapshot).render()


@pytest.mark.attack("secrets")
def test_the_repo_map_parses_nothing_behind_a_link(tmp_path, outside):
    root = repository(tmp_path, {"app.py": "def run():\n    return 1\n"})
    (root / "vendor").symlink_to(outside)
    with RepoMap(root, tmp_path / "cache") as repo_map:
        text = repo_map.build(files=["app.py", "vendor/mod.py"])
    assert "def run" in text and "leaked" not in text


@pytest.mark.attack("secrets")
def test_compaction_reads_no_model_named_file_outside(tmp_path, outside):
    root = repository(tmp_path, {"a.py": "A = 1\n"})
    (root / "out").symlink_to(outside)
    paths = ["a.py", "out/mod.py", "../outside/mod.py", str(outside / "mod.py")]
    calls = [
        {"id": str(n), "function": {"name": "write_file", "arguments": f'{{"path": "{path}"}}'}}
        for n, path in enumerate(paths)
    ]
    assert _current_files(root, [{"role": "assistant", "tool_calls": calls}]) == [("a.py", "A = 1\n")]
    assert contained_file(root, "out/mod.py") is None
