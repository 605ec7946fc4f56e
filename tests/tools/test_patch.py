"""apply_patch: parsing the forms models write, locating hunks, all-or-nothing writes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from codeagent.tools.base import Observation, ToolEnv, ToolError, run_tool
from codeagent.tools.locate import Locator
from codeagent.tools.patch import Change, write_all
from codeagent.tools.patch_parse import parse_patch
from codeagent.tools.registry import get_tool

CALC = (
    "class Calc:\n"
    "    def add(self, a, b):\n"
    "        return a - b\n"
    "\n"
    "    def sub(self, a, b):\n"
    "        return a - b\n"
)


def patch(root: Path, text: str) -> Observation:
    return run_tool(get_tool("apply_patch"), {"patch": text}, ToolEnv(root))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text(CALC)
    (repo / "old.txt").write_text("bye\n")
    return repo


FIX_ADD = "--- a/calc.py\n+++ b/calc.py\n@@ -2,2 +2,2 @@\n     def add(self, a, b):\n-        return a - b\n+        return a + b\n"


def test_git_patch_modifies_creates_and_deletes_files(root):
    env = ToolEnv(root)
    text = (
        "diff --git a/calc.py b/calc.py\nindex 1111111..2222222 100644\n"
        + FIX_ADD
        + "diff --git a/notes.md b/notes.md\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/notes.md\n@@ -0,0 +1,2 @@\n+# Notes\n+added\n"
        "diff --git a/old.txt b/old.txt\ndeleted file mode 100644\n--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
    )
    result = run_tool(get_tool("apply_patch"), {"patch": text}, env)
    assert result.ok, result.text
    assert result.text.startswith("modified calc.py, created notes.md, deleted old.txt\n")
    assert (root / "calc.py").read_text() == CALC.replace("a - b", "a + b", 1)
    assert (root / "notes.md").read_text() == "# Notes\nadded\n"
    assert not (root / "old.txt").exists()
    assert result.data["paths"] == ["calc.py", "notes.md", "old.txt"]
    assert "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n" in result.data["diff"]
    assert env.focus_files == {"calc.py", "notes.md"}


def test_plain_diff_without_prefixes_and_with_timestamps(root):
    text = "--- calc.py\t2024-01-01 00:00:00\n+++ calc.py\t2024-01-02 00:00:00\n@@ -6 +6 @@\n-        return a - b\n+        return a * b\n"
    assert patch(root, text).ok
    assert (root / "calc.py").read_text().endswith("        return a * b\n")


def test_a_failing_hunk_in_the_second_file_leaves_the_first_unchanged(root):
    (root / "b.py").write_text("x = 1\n")
    text = FIX_ADD + "--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n-y = 1\n+y = 2\n"
    result = patch(root, text)
    assert not result.ok and "hunk 1 of b.py does not apply" in result.text and "y = 1" in result.text
    assert (root / "calc.py").read_text() == CALC and (root / "b.py").read_text() == "x = 1\n"


def test_a_failing_later_hunk_of_the_same_file_changes_nothing(root):
    text = FIX_ADD + "@@ -90 +90 @@\n-no such line\n+x\n"
    result = patch(root, text)
    assert not result.ok and "hunk 2 of calc.py does not apply" in result.text
    assert (root / "calc.py").read_text() == CALC


def test_a_missing_file_or_an_existing_creation_target_changes_nothing(root):
    missing = patch(root, FIX_ADD + "--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-a\n+b\n")
    assert not missing.ok and "nope.py does not exist" in missing.text
    exists = patch(root, FIX_ADD + "--- /dev/null\n+++ b/old.txt\n@@ -0,0 +1 @@\n+new\n")
    assert not exists.ok and "old.txt already exists" in exists.text
    assert (root / "calc.py").read_text() == CALC and (root / "old.txt").read_text() == "bye\n"


def test_a_write_failing_midway_restores_the_files_already_written(root):
    blocker = root / "blocker"
    blocker.write_text("a file where a folder would have to be\n")
    changes = {
        root / "calc.py": Change("calc.py", CALC, "changed\n"),
        root / "old.txt": Change("old.txt", "bye\n", None, 0o640),
        blocker / "new.txt": Change("blocker/new.txt", None, "x\n"),
    }
    (root / "old.txt").chmod(0o640)
    with pytest.raises(ToolError, match="the files already written were restored"):
        write_all(changes)
    assert (root / "calc.py").read_text() == CALC
    assert (root / "old.txt").read_text() == "bye\n" and (root / "old.txt").stat().st_mode & 0o777 == 0o640
    assert blocker.read_text().startswith("a file")


def test_a_creation_under_a_file_is_refused_before_anything_is_written(root):
    (root / "blocker").write_text("")
    result = patch(root, FIX_ADD + "--- /dev/null\n+++ b/blocker/new.txt\n@@ -0,0 +1 @@\n+x\n")
    assert not result.ok and "blocker on its path is a file" in result.text
    assert (root / "calc.py").read_text() == CALC


def test_wrong_line_numbers_and_counts_still_find_the_place(root):
    result = patch(
        root,
        "--- a/calc.py\n+++ b/calc.py\n@@ -40,9 +40,1 @@\n     def sub(self, a, b):\n-        return a - b\n+        return b - a\n",
    )
    assert result.ok and (root / "calc.py").read_text().endswith(
        "def sub(self, a, b):\n        return b - a\n"
    )


def test_hunks_apply_in_order_at_the_occurrence_nearest_the_stated_line(tmp_path):
    (tmp_path / "r.txt").write_text("x\nsame\nx\nsame\nx\nsame\n")
    result = patch(
        tmp_path, "--- a/r.txt\n+++ b/r.txt\n@@ -4 +4 @@\n-same\n+second\n@@ -3 +3 @@\n-same\n+later\n"
    )
    assert result.ok, result.text
    # The second hunk says line 3 but must come after the first: it takes line 6.
    assert (tmp_path / "r.txt").read_text() == "x\nsame\nx\nsecond\nx\nlater\n"


def test_whitespace_only_differences_in_context_are_tolerated_and_kept(tmp_path):
    (tmp_path / "w.py").write_text("def f():\n\tif x:  \n\t\treturn 1\n")
    result = patch(
        tmp_path,
        "--- a/w.py\n+++ b/w.py\n@@ -1,3 +1,3 @@\n def f():\n     if x:\n-        return 1\n+\t\treturn 2\n",
    )
    assert result.ok, result.text
    assert (tmp_path / "w.py").read_text() == "def f():\n\tif x:  \n\t\treturn 2\n"


def test_crlf_files_stay_crlf_and_blank_context_may_lack_its_space(tmp_path):
    (tmp_path / "c.txt").write_bytes(b"a\r\n\r\nb\r\n")
    assert patch(tmp_path, "--- a/c.txt\n+++ b/c.txt\n@@ -1,3 +1,4 @@\n a\n\n-b\n+b2\n+b3\n").ok
    assert (tmp_path / "c.txt").read_bytes() == b"a\r\n\r\nb2\r\nb3\r\n"


def test_no_newline_markers(tmp_path):
    (tmp_path / "n.txt").write_text("a\nb")
    text = "--- a/n.txt\n+++ b/n.txt\n@@ -1,2 +1,3 @@\n a\n-b\n\\ No newline at end of file\n+b\n+c\n\\ No newline at end of file\n"
    assert patch(tmp_path, text).ok and (tmp_path / "n.txt").read_text() == "a\nb\nc"
    appended = patch(tmp_path, "--- a/n.txt\n+++ b/n.txt\n@@ -3 +3,2 @@\n c\n+d\n")
    assert appended.ok and (tmp_path / "n.txt").read_text() == "a\nb\nc\nd\n"


def test_git_renames_with_and_without_hunks(root):
    pure = "diff --git a/old.txt b/moved/new.txt\nsimilarity index 100%\nrename from old.txt\nrename to moved/new.txt\n"
    assert patch(root, pure).ok
    assert (root / "moved/new.txt").read_text() == "bye\n" and not (root / "old.txt").exists()
    edited = "--- a/calc.py\n+++ b/calculator.py\n@@ -1 +1 @@\n-class Calc:\n+class Calculator:\n"
    assert patch(root, edited).ok and (root / "calculator.py").read_text().startswith("class Calculator:\n")
    assert not (root / "calc.py").exists()


def test_deletion_must_remove_every_line(root):
    (root / "two.txt").write_text("one\ntwo\n")
    result = patch(root, "--- a/two.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-one\n")
    assert not result.ok and "do not remove all of its lines" in result.text and (root / "two.txt").exists()


def test_bare_hunk_headers_and_trailing_prose(root):
    text = "Here is the fix:\n\n--- a/calc.py\n+++ b/calc.py\n@@\n     def add(self, a, b):\n-        return a - b\n+        return a + b\nThat should do it.\n"
    assert patch(root, text).ok and "return a + b" in (root / "calc.py").read_text()


def test_a_hunk_line_without_a_prefix_is_an_error_not_half_an_edit(root):
    text = "--- a/calc.py\n+++ b/calc.py\n@@ -1,3 +1,3 @@\nclass Calc:\n     def add(self, a, b):\n-        return a - b\n+        return a + b\n"
    result = patch(root, text)
    assert not result.ok and "patch line 5 continues a hunk" in result.text
    assert (root / "calc.py").read_text() == CALC


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just words\n", "no file headers found"),
        ("@@ -1 +1 @@\n-a\n+b\n", "hunk before any"),
        ("--- /dev/null\n+++ /dev/null\n", "/dev/null on both sides"),
        ("diff --git a/x b/x\nGIT binary patch\nliteral 3\n", "cannot apply binary patches"),
    ],
)
def test_malformed_patches_are_explained(root, text, message):
    result = patch(root, text)
    assert not result.ok and message in result.text


def test_git_paths_containing_the_separator_are_read_by_their_equal_halves():
    (section,) = parse_patch("diff --git a/x b/y.txt b/x b/y.txt\nnew file mode 100644\n")
    assert (section.old, section.new) == (None, "x b/y.txt")


@pytest.mark.parametrize(
    "target", ["../escape.txt", "/tmp/escape-from-patch.txt", "link/escape.txt", ".git/hooks/post-checkout"]
)
def test_patch_paths_are_confined(root, tmp_path, target):
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    result = patch(root, FIX_ADD + f"--- /dev/null\n+++ {target}\n@@ -0,0 +1 @@\n+x\n")
    assert not result.ok and ("outside the repository" in result.text or ".git folder" in result.text)
    assert (root / "calc.py").read_text() == CALC
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "outside/escape.txt").exists()
    assert not Path("/tmp/escape-from-patch.txt").exists()


def brute_force(lines: list[str], block: list[str], near: int, low: int) -> int | None:
    """The locating rule tried at every place, as apply_patch once did it: the reference."""
    if not block:
        return min(max(near, low), len(lines))
    for same in (str, str.rstrip, str.strip):
        starts = [
            start
            for start in range(low, len(lines) - len(block) + 1)
            if all(same(lines[start + k]) == same(block[k]) for k in range(len(block)))
        ]
        if starts:
            return min(starts, key=lambda start: (abs(start - near), start))
    return None


def test_the_locator_agrees_with_trying_every_place():
    rng = random.Random(3)
    words = ["x", "x ", " x", "\tx  ", "y", "", " ", "z"]  # repeats and whitespace variants
    for _ in range(3000):
        lines = [rng.choice(words) for _ in range(rng.randint(0, 14))]
        block = [rng.choice(words) for _ in range(rng.randint(0, 4))]
        if lines and rng.random() < 0.5:  # often a block the file holds, with a line's spacing changed
            at = rng.randrange(len(lines))
            block = lines[at : at + rng.randint(1, 4)]
            block = [line.strip() if rng.random() < 0.3 else line for line in block]
        near, low = rng.randint(-2, len(lines) + 2), rng.randint(0, len(lines))
        assert Locator(lines).find(block, near, low) == brute_force(lines, block, near, low), (lines, block)


@pytest.mark.attack("bounds")
def test_blocks_of_repeated_lines_are_found_past_many_near_misses():
    # Every "x" is a candidate that almost matches; so many fail that the locator switches
    # to one linear scan of the file, which must find the one place that holds.
    lines = (["pass"] * 9 + ["x"]) * 80 + ["pass"] * 20 + ["x"] + (["pass"] * 9 + ["x"]) * 20
    block = ["pass"] * 20 + ["x"]
    assert Locator(lines).find(block, 0, 0) == brute_force(lines, block, 0, 0) == 800
    assert Locator(lines).find(block, 0, 801) is None
    assert Locator(["pass"] * 1000).find(["pass"] * 50, 700, 0) == 700


def test_identical_lines_take_the_place_nearest_the_stated_line(tmp_path):
    (tmp_path / "r.txt").write_text("\n".join(["pass"] * 30) + "\n")
    result = patch(tmp_path, "--- a/r.txt\n+++ b/r.txt\n@@ -20,3 +20,3 @@\n pass\n-pass\n+done\n pass\n")
    assert result.ok, result.text
    assert (tmp_path / "r.txt").read_text().split("\n").index("done") == 20
    # Without a line number the search starts where the previous hunk ended: the first place.
    result = patch(tmp_path, "--- a/r.txt\n+++ b/r.txt\n@@\n pass\n-pass\n+first\n")
    assert result.ok and (tmp_path / "r.txt").read_text().split("\n").index("first") == 1


def test_exact_beats_trailing_space_beats_indentation_wherever_the_stated_line_is(tmp_path):
    text = "    v = 1\n" + "v = 1  \n" + "v = 1\n" + "end\n"
    (tmp_path / "v.py").write_text(text)
    exact = "--- a/v.py\n+++ b/v.py\n@@ -1 +1 @@\n-v = 1\n+v = 2\n"
    assert patch(tmp_path, exact).ok  # stated line 1 holds the indented one: the exact one wins
    assert (tmp_path / "v.py").read_text() == "    v = 1\nv = 1  \nv = 2\nend\n"
    assert patch(tmp_path, exact.replace("v = 2", "v = 3")).ok  # no exact "v = 1" left: trailing
    assert (tmp_path / "v.py").read_text() == "    v = 1\nv = 3\nv = 2\nend\n"
    assert patch(tmp_path, exact.replace("v = 2", "v = 4")).ok  # then the indented one
    assert (tmp_path / "v.py").read_text() == "v = 4\nv = 3\nv = 2\nend\n"
