"""edit_file: exact replacement, each tolerant rule, ambiguity, candidates, creation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from codeagent.tools.base import Observation, ToolEnv, run_tool
from codeagent.tools.registry import get_tool

CALC = (
    "class Calc:\n"
    "    def add(self, a, b):\n"
    "        return a - b\n"
    "\n"
    "    def sub(self, a, b):\n"
    "        return a - b\n"
)


def edit(root: Path, path: str, old: str, new: str) -> Observation:
    return run_tool(get_tool("edit_file"), {"path": path, "old_text": old, "new_text": new}, ToolEnv(root))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "calc.py").write_text(CALC)
    return tmp_path


def test_exact_edit_writes_and_returns_the_diff(root):
    env = ToolEnv(root)
    args = {
        "path": "calc.py",
        "old_text": "def add(self, a, b):\n        return a - b",
        "new_text": "def add(self, a, b):\n        return a + b",
    }
    result = run_tool(get_tool("edit_file"), args, env)
    assert result.ok and result.data["tolerance"] is None and result.text.startswith("edited calc.py\n")
    assert result.data["diff"] == (
        "--- a/calc.py\n+++ b/calc.py\n@@ -1,6 +1,6 @@\n class Calc:\n     def add(self, a, b):\n"
        "-        return a - b\n+        return a + b\n \n     def sub(self, a, b):\n         return a - b\n"
    )
    assert (root / "calc.py").read_text() == CALC.replace("return a - b", "return a + b", 1)
    assert env.focus_files == {"calc.py"}


def test_more_than_one_exact_match_is_an_error_naming_the_lines(root):
    result = edit(root, "calc.py", "return a - b", "return 0")
    assert not result.ok and "old_text occurs 2 times (at lines 3, 6)" in result.text
    assert (root / "calc.py").read_text() == CALC


def test_overlapping_occurrences_count_as_ambiguous(tmp_path):
    (tmp_path / "a.txt").write_text("aaa\n")
    assert "occurs 2 times (at lines 1, 1)" in edit(tmp_path, "a.txt", "aa", "b").text


def test_crlf_file_edited_with_lf_text_keeps_its_line_endings(tmp_path):
    (tmp_path / "w.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    result = edit(tmp_path, "w.txt", "one\ntwo\n", "uno\ndos\nextra\n")
    assert result.ok and result.data["tolerance"] == "line endings"
    assert "ignoring line endings" in result.text
    assert (tmp_path / "w.txt").read_bytes() == b"uno\r\ndos\r\nextra\r\nthree\r\n"


def test_an_exact_match_still_gets_the_files_line_endings_in_new_text(tmp_path):
    (tmp_path / "w.txt").write_bytes(b"one\r\ntwo\r\n")
    assert edit(tmp_path, "w.txt", "two", "2\n2.5").data["tolerance"] is None
    assert (tmp_path / "w.txt").read_bytes() == b"one\r\n2\r\n2.5\r\n"


def test_mixed_line_endings_outside_the_edit_are_left_alone(tmp_path):
    (tmp_path / "m.txt").write_bytes(b"a\r\nb  \r\nc\nd\r\n")
    result = edit(tmp_path, "m.txt", "b\nc\n", "B\nC\n")
    assert result.ok and result.data["tolerance"] == "trailing whitespace"
    assert (tmp_path / "m.txt").read_bytes() == b"a\r\nB\r\nC\r\nd\r\n"


def test_trailing_whitespace_differences_are_tolerated(tmp_path):
    (tmp_path / "t.py").write_text("x = 1   \ny = 2\t\nz = 3\n")
    result = edit(tmp_path, "t.py", "x = 1\ny = 2  \n", "x = 10\ny = 20\n")
    assert result.ok and result.data["tolerance"] == "trailing whitespace"
    assert (tmp_path / "t.py").read_text() == "x = 10\ny = 20\nz = 3\n"


def test_old_text_indented_less_than_the_file_is_reindented(root):
    result = edit(
        root,
        "calc.py",
        "def sub(self, a, b):\n    return a - b",
        "def sub(self, a, b):\n    return b - a\n\ndef mul(self, a, b):\n    return a * b",
    )
    assert result.ok and result.data["tolerance"] == "indentation"
    assert (
        (root / "calc.py")
        .read_text()
        .endswith(
            "    def sub(self, a, b):\n        return b - a\n\n    def mul(self, a, b):\n        return a * b\n"
        )
    )


def test_old_text_indented_more_than_the_file_is_reindented(tmp_path):
    (tmp_path / "f.py").write_text("def f():\n    if x:\n        y()\n    z()\n")
    result = edit(
        tmp_path, "f.py", "        if x:\n            y()", "        if x:\n            y(1)\n        w()"
    )
    assert result.ok and result.data["tolerance"] == "indentation"
    assert (tmp_path / "f.py").read_text() == "def f():\n    if x:\n        y(1)\n    w()\n    z()\n"


def test_tolerant_match_in_two_places_is_ambiguous(root):
    result = edit(root, "calc.py", "return a - b   \n", "return 0\n")
    assert not result.ok and "matches 2 places ignoring indentation (at lines 3, 6)" in result.text
    assert (root / "calc.py").read_text() == CALC


def test_no_match_shows_the_closest_places_with_line_numbers(root):
    result = edit(root, "calc.py", "def add(self, x, y):\n    return x - y", "pass")
    assert (
        not result.ok and "not even ignoring line endings, trailing whitespace or indentation" in result.text
    )
    body = result.text.split("Closest places in the file (copy old_text from the real text):\n")[1]
    headings = [line for line in body.splitlines() if line.startswith("lines ")]
    assert [h.split(" (")[0] for h in headings] == ["lines 2-3", "lines 5-6"]  # no overlapping third
    assert "    2|     def add(self, a, b):\n    3|         return a - b" in body
    assert (root / "calc.py").read_text() == CALC


def test_candidates_do_not_overlap_and_come_fast_in_a_long_file(tmp_path):
    lines = [f"    value_{n} = compute({n}, factor={n % 7})" for n in range(20_000)]
    (tmp_path / "big.py").write_text("\n".join(lines) + "\n")
    wanted = "\n".join(lines[12_000:12_010]).replace("compute", "calculate")
    started = time.perf_counter()
    result = edit(tmp_path, "big.py", wanted, "x = 1")
    assert time.perf_counter() - started < 10
    headings = [line for line in result.text.splitlines() if line.startswith("lines ")]
    starts = [int(h.split()[1].split("-")[0]) for h in headings]
    assert starts[0] == 12_001 and all(abs(a - b) >= 10 for a in starts for b in starts if a != b)


def test_empty_old_text_creates_a_missing_file_only(root):
    created = edit(root, "pkg/new.py", "", "print('hi')\n")
    assert created.ok and created.text.startswith("created pkg/new.py")
    assert (root / "pkg/new.py").read_text() == "print('hi')\n"
    assert created.data["diff"].startswith("--- /dev/null\n+++ b/pkg/new.py\n")
    exists = edit(root, "calc.py", "", "x")
    assert not exists.ok and "already exists" in exists.text and (root / "calc.py").read_text() == CALC
    missing = edit(root, "nope.py", "x", "y")
    assert not missing.ok and "pass an empty old_text" in missing.text


def test_deleting_lines_through_a_tolerant_rule_leaves_no_blank_line(tmp_path):
    (tmp_path / "d.txt").write_text("keep\ndrop  \nkeep too\n")
    assert edit(tmp_path, "d.txt", "drop\n", "").ok
    assert (tmp_path / "d.txt").read_text() == "keep\nkeep too\n"


def test_a_file_without_a_final_newline_keeps_it_that_way(tmp_path):
    (tmp_path / "n.txt").write_text("a\n  b  ")
    assert edit(tmp_path, "n.txt", "b", "c").data["tolerance"] is None
    assert edit(tmp_path, "n.txt", "  c\n", "  d\n  e\n").data["tolerance"] == "trailing whitespace"
    assert (tmp_path / "n.txt").read_text() == "a\n  d\n  e"


def test_stray_bytes_elsewhere_survive_an_edit_and_the_mode_is_kept(tmp_path):
    path = tmp_path / "latin.py"
    path.write_bytes(b"# caf\xe9\n" + b"x = 1\n" * 40)
    path.chmod(0o700)
    result = edit(tmp_path, "latin.py", "# caf", "# bistro")
    assert result.ok and path.read_bytes().startswith(b"# bistro\xe9\nx = 1\n")
    assert path.stat().st_mode & 0o777 == 0o700


def test_unchanged_and_refused_edits(root):
    same = edit(root, "calc.py", "class Calc:", "class Calc:")
    assert same.ok and "unchanged" in same.text
    (root / "blob.bin").write_bytes(b"\x00\x01 x")
    assert "binary" in edit(root, "blob.bin", "x", "y").text
    assert "protected" in edit(root, ".github/workflows/ci.yml", "", "on: push\n").text
