"""edit_file (exact and tolerant) and apply_patch (multi-file, atomic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeagent.tools.base import ToolEnv, run_tool
from codeagent.tools.registry import get_tool


def edit(root: Path, path: str, old: str, new: str):
    return run_tool(get_tool("edit_file"), {"path": path, "old_text": old, "new_text": new}, ToolEnv(root))


def patch(root: Path, text: str):
    return run_tool(get_tool("apply_patch"), {"patch": text}, ToolEnv(root))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "calc.py").write_text(
        "class Calc:\n    def add(self, a, b):\n        return a - b\n\n    def sub(self, a, b):\n        return a - b\n"
    )
    return tmp_path


def test_exact_edit_returns_a_diff(root):
    result = edit(
        root,
        "calc.py",
        "    def add(self, a, b):\n        return a - b",
        "    def add(self, a, b):\n        return a + b",
    )
    assert result.ok and "-        return a - b\n+        return a + b" in result.data["diff"]
    assert result.data["tolerance"] is None
    assert (root / "calc.py").read_text().count("return a + b") == 1


def test_ambiguous_edit_names_the_lines(root):
    result = edit(root, "calc.py", "return a - b", "return 0")
    assert not result.ok and "occurs 2 times (at lines 3, 6)" in result.text


def test_crlf_file_edited_with_lf_text_keeps_crlf(tmp_path):
    (tmp_path / "w.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    result = edit(tmp_path, "w.txt", "one\ntwo\n", "uno\ndos\n")
    assert result.ok and result.data["tolerance"] == "line endings"
    assert (tmp_path / "w.txt").read_bytes() == b"uno\r\ndos\r\nthree\r\n"


def test_trailing_whitespace_differences_are_tolerated(tmp_path):
    (tmp_path / "t.py").write_text("x = 1   \ny = 2\t\nz = 3\n")
    result = edit(tmp_path, "t.py", "x = 1\ny = 2\n", "x = 10\ny = 20\n")
    assert result.ok and result.data["tolerance"] == "trailing whitespace"
    assert (tmp_path / "t.py").read_text() == "x = 10\ny = 20\nz = 3\n"


def test_uniformly_shifted_indentation_is_tolerated_and_reindented(root):
    result = edit(
        root, "calc.py", "def sub(self, a, b):\n    return a - b", "def sub(self, a, b):\n    return b - a"
    )
    assert result.ok and result.data["tolerance"] == "indentation"
    assert "    def sub(self, a, b):\n        return b - a\n" in (root / "calc.py").read_text()


def test_no_match_shows_the_closest_candidates_with_line_numbers(root):
    result = edit(root, "calc.py", "def add(self, x, y):\n    return x - y", "pass")
    assert not result.ok and "Closest places" in result.text
    assert "lines 2-3" in result.text and "    2|     def add(self, a, b):" in result.text


def test_empty_old_text_creates_a_missing_file_only(root):
    assert edit(root, "new.py", "", "print('hi')\n").ok
    assert (root / "new.py").read_text() == "print('hi')\n"
    refused = edit(root, "calc.py", "", "x")
    assert not refused.ok and "already exists" in refused.text


def test_patch_applies_several_files_creates_and_deletes(root):
    (root / "old.txt").write_text("bye\n")
    result = patch(
        root,
        """diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -2,2 +2,2 @@
     def add(self, a, b):
-        return a - b
+        return a + b
--- /dev/null
+++ b/notes.md
@@ -0,0 +1,2 @@
+# Notes
+added
--- a/old.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
""",
    )
    assert result.ok, result.text
    assert "return a + b" in (root / "calc.py").read_text()
    assert (root / "notes.md").read_text() == "# Notes\nadded\n"
    assert not (root / "old.txt").exists()
    assert set(result.data["paths"]) == {"calc.py", "notes.md", "old.txt"}


def test_patch_is_all_or_nothing(root):
    before = (root / "calc.py").read_text()
    result = patch(
        root,
        """--- a/calc.py
+++ b/calc.py
@@ -3 +3 @@
-        return a - b
+        return a + b
--- a/missing_context.py
+++ b/missing_context.py
@@ -1 +1 @@
-nothing here
+x
""",
    )
    assert not result.ok and "missing_context.py does not exist" in result.text
    assert (root / "calc.py").read_text() == before
    bad_hunk = patch(
        root,
        """--- a/calc.py
+++ b/calc.py
@@ -3 +3 @@
-        return a - b
+        return a + b
@@ -90 +90 @@
-no such line
+x
""",
    )
    assert not bad_hunk.ok and "hunk 2 of calc.py does not apply" in bad_hunk.text
    assert (root / "calc.py").read_text() == before


def test_patch_with_wrong_line_numbers_still_finds_its_place(root):
    result = patch(
        root,
        "--- a/calc.py\n+++ b/calc.py\n@@ -40,2 +40,2 @@\n     def sub(self, a, b):\n-        return a - b\n+        return b - a\n",
    )
    assert result.ok and "return b - a" in (root / "calc.py").read_text()


def test_patch_paths_are_confined(root):
    result = patch(root, "--- /dev/null\n+++ b/../escape.txt\n@@ -0,0 +1 @@\n+x\n")
    assert not result.ok and "outside the repository" in result.text
    assert not (root.parent / "escape.txt").exists()
