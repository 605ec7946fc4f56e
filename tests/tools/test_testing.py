"""run_tests on tiny real projects, and the result parsers on captured runner output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from codeagent.tools import testing
from codeagent.tools.base import ToolEnv, ToolSettings, run_tool
from codeagent.tools.registry import get_tool
from codeagent.tools.test_results import (
    failure_text,
    parse_any,
    parse_cargo,
    parse_go,
    parse_node,
    parse_pytest,
    parse_unittest,
)

PYTEST_FILE = "def test_good():\n    assert True\n\n\ndef test_bad():\n    assert 1 == 2\n"
UNITTEST_FILE = (
    "import unittest\n\n\nclass T(unittest.TestCase):\n"
    "    def test_ok(self):\n        pass\n\n"
    "    def test_no(self):\n        self.assertEqual(1, 2)\n"
)


def run_tests(root: Path, settings: ToolSettings | None = None, **args):
    return run_tool(get_tool("run_tests"), args, ToolEnv(root, settings=settings or ToolSettings()))


def make_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_pytest_project_reports_names_and_failure_output(tmp_path):
    root = make_project(tmp_path, {"pytest.ini": "[pytest]\n", "test_a.py": PYTEST_FILE})
    result = run_tests(root)
    assert not result.ok and result.data["runner"] == "pytest" and result.data["exit_code"] == 1
    assert result.data["passed"] == ["test_a.py::test_good"]
    assert result.data["failed"] == ["test_a.py::test_bad"] and result.data["errors"] == []
    summary, failed, output = result.text.split("\n", 2)
    assert summary.startswith("1 passed, 1 failed, 0 errors (") and summary.endswith("; exit code: 1)")
    assert failed == "failed: test_a.py::test_bad"
    assert output.startswith("output:\n=") and "FAILURES" in output and "assert 1 == 2" in output
    assert "short test summary" not in output


def test_pytest_paths_and_node_ids_narrow_the_run(tmp_path):
    root = make_project(tmp_path, {"pytest.ini": "[pytest]\n", "test_a.py": PYTEST_FILE})
    only = run_tests(root, paths=["test_a.py::test_good"])
    assert only.ok and only.data["passed"] == ["test_a.py::test_good"] and only.data["failed"] == []
    assert only.text.count("\n") == 0  # a clean run is one summary line
    outside = run_tests(root, paths=["../elsewhere.py"])
    assert not outside.ok and "outside the repository" in outside.text


def test_unittest_project_when_pytest_is_not_importable(tmp_path):
    # The repository's own virtual environment has no pytest, so unittest runs.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / ".venv")], check=True)
    root = make_project(tmp_path, {".gitignore": ".venv/\n", "tests/test_b.py": UNITTEST_FILE})
    result = run_tests(root)
    assert result.data["runner"] == "unittest" and "discover" in result.data["command"]
    assert result.data["passed"] == ["test_ok (test_b.T.test_ok)"]
    assert result.data["failed"] == ["test_no (test_b.T.test_no)"]
    assert "AssertionError: 1 != 2" in result.text and not result.ok
    only = run_tests(root, paths=["tests"])
    assert only.data["passed"] == ["test_ok (tests.test_b.T.test_ok)"]
    one = run_tests(root, paths=["tests/test_b.py::T::test_no"])
    assert one.data["failed"] == ["test_no (tests.test_b.T.test_no)"] and one.data["passed"] == []


def test_paths_become_each_runner_s_targets(tmp_path):
    make_project(tmp_path, {"pkg/a_test.go": "", "tests/api.rs": ""})
    go = testing.with_paths(
        testing.TestCommand("go", ["go", "test", "-v"]), ["pkg/a_test.go", "pkg"], tmp_path
    )
    assert go.argv == ["go", "test", "-v", "./pkg", "./pkg/..."]
    assert testing.with_paths(testing.TestCommand("go", ["go", "test"]), [], tmp_path).argv == [
        "go",
        "test",
        "./...",
    ]
    cargo = testing.with_paths(testing.TestCommand("cargo", ["cargo", "test"]), ["tests/api.rs"], tmp_path)
    assert cargo.argv == ["cargo", "test", "--test", "api"]
    npm = testing.with_paths(testing.TestCommand("node", ["npm", "test"]), ["a.test.js"], tmp_path)
    assert npm.argv == ["npm", "test", "--", "a.test.js"]
    custom = testing.with_paths(testing.TestCommand("custom", "make test ARGS="), ["a b.py"], tmp_path)
    assert custom.argv == "make test ARGS= 'a b.py'"


def test_the_configured_command_wins(tmp_path):
    root = make_project(tmp_path, {"pytest.ini": "[pytest]\n", "test_b.py": UNITTEST_FILE})
    result = run_tests(root, ToolSettings(test_command="python3 -m unittest -v"))
    assert result.data["runner"] == "custom" and result.data["command"] == "python3 -m unittest -v"
    assert result.data["passed"] == ["test_ok (test_b.T.test_ok)"]
    assert result.data["failed"] == ["test_no (test_b.T.test_no)"]


def test_without_a_suite_it_says_how_to_configure(tmp_path):
    result = run_tests(make_project(tmp_path, {"README.md": "hi\n"}))
    assert not result.ok and "no test command detected" in result.text and "test_command" in result.text


PYTEST_OUT = """\
.F                                                                       [100%]
=================================== FAILURES ===================================
___________________________________ test_bad ___________________________________
E       assert 1 == 2
=========================== short test summary info ============================
PASSED t.py::test_a
PASSED t.py::test_p[a - b]
FAILED t.py::test_b - assert 1 == 2
ERROR t.py::test_c - ValueError
XFAIL t.py::test_x - known
"""
UNITTEST_OUT = """\
test_x (m.T.test_x) ... ok
test_y (m.T.test_y)
Checks y. ... FAIL
test_z (m.T.test_z) ... printed noise
ERROR

======================================================================
ERROR: test_z (m.T.test_z)
----------------------------------------------------------------------
Traceback (most recent call last):
RuntimeError: x

----------------------------------------------------------------------
Ran 3 tests in 0.001s
"""
GO_OUT = """\
=== RUN   TestA
--- PASS: TestA (0.00s)
=== RUN   TestB
=== RUN   TestB/sub
    b_test.go:9: want 2, got 1
    --- FAIL: TestB/sub (0.00s)
--- FAIL: TestB (0.00s)
=== RUN   TestSkip
--- SKIP: TestSkip (0.00s)
=== RUN   TestPanics
panic: boom [recovered]
FAIL\texample.com/p\t0.012s
FAIL\texample.com/q [build failed]
"""
CARGO_OUT = """\
running 3 tests
test tests::slow ... ignored
test tests::adds ... ok
test tests::subs ... FAILED

failures:

---- tests::subs stdout ----
assertion `left == right` failed

failures:
    tests::subs

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.22s

running 1 test
test src/lib.rs - add (line 3) ... ok
"""
NODE_TAP_OUT = """\
TAP version 13
# Subtest: adds numbers
ok 1 - adds numbers
  ---
  duration_ms: 5.743329
  ...
# Subtest: subtracts
not ok 2 - subtracts
  ---
  duration_ms: 1.655153
  failureType: 'testCodeFailure'
  ...
# Subtest: skipped one
ok 3 - skipped one # SKIP
  ---
  duration_ms: 0.278893
  ...
# Subtest: suite
    # Subtest: inner works
    ok 1 - inner works
      ---
      duration_ms: 0.266766
      ...
    1..1
ok 4 - suite
  ---
  duration_ms: 0.698565
  type: 'suite'
  ...
1..4
"""
NODE_SPEC_OUT = """\
✔ adds numbers (1.395938ms)
✖ subtracts (1.359855ms)
  AssertionError [ERR_ASSERTION]: Expected values to be strictly equal:
﹣ skipped one (0.147549ms) # SKIP
▶ suite
  ✔ inner works (0.161359ms)
✔ suite (0.431289ms)
ℹ tests 4

✖ failing tests:

✖ subtracts (1.359855ms)
"""
JEST_OUT = """\
 FAIL  src/math.test.js
  math
    ✓ adds (3 ms)
    ✕ subtracts (5 ms)
    ○ skipped later

  ● math › subtracts
"""


def names(report):
    return report.passed, report.failed, report.errors


def test_parse_pytest_reads_the_short_summary():
    assert names(parse_pytest(PYTEST_OUT)) == (
        ["t.py::test_a", "t.py::test_p[a - b]"],
        ["t.py::test_b"],
        ["t.py::test_c"],
    )
    assert failure_text("pytest", PYTEST_OUT).startswith("=" * 35 + " FAILURES")
    assert "short test summary" not in failure_text("pytest", PYTEST_OUT)


def test_parse_unittest_survives_docstrings_and_noise():
    assert names(parse_unittest(UNITTEST_OUT)) == (
        ["test_x (m.T.test_x)"],
        ["test_y (m.T.test_y)"],
        ["test_z (m.T.test_z)"],
    )
    assert failure_text("unittest", UNITTEST_OUT).startswith("=" * 70 + "\nERROR: test_z")


def test_parse_go_counts_subtests_panics_and_build_failures():
    assert names(parse_go(GO_OUT)) == (
        ["TestA"],
        ["TestB/sub", "TestB"],
        ["TestPanics", "example.com/q"],
    )


def test_parse_cargo_includes_doc_tests():
    assert names(parse_cargo(CARGO_OUT)) == (
        ["tests::adds", "src/lib.rs - add (line 3)"],
        ["tests::subs"],
        [],
    )
    assert failure_text("cargo", CARGO_OUT).startswith("failures:\n\n---- tests::subs stdout")


def test_parse_node_tap_and_spec_reporters_skip_suites():
    expected = (["adds numbers", "inner works"], ["subtracts"], [])
    assert names(parse_node(NODE_TAP_OUT)) == expected
    assert names(parse_node(NODE_SPEC_OUT)) == expected


def test_parse_jest_spec_lines():
    assert names(parse_node(JEST_OUT)) == (["adds"], ["subtracts"], [])


def test_parse_any_reads_a_runner_it_was_not_told_about():
    assert names(parse_any(GO_OUT))[1] == ["TestB/sub", "TestB"]
