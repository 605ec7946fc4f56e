"""run and run_tests through real subprocesses, and the test-output parsers."""

from __future__ import annotations

import subprocess
from pathlib import Path

from codeagent.tools.base import ToolEnv, ToolSettings, run_tool
from codeagent.tools.registry import get_tool
from codeagent.tools.test_results import parse_cargo, parse_go, parse_node, parse_pytest, parse_unittest


def run(env: ToolEnv, name: str, **args):
    return run_tool(get_tool(name), args, env)


def test_run_reports_exit_code_and_strips_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_supersecret123")
    monkeypatch.setenv("HARMLESS_SETTING", "visible")
    result = run(ToolEnv(tmp_path), "run", command="env; exit 4")
    assert not result.ok and result.data["exit_code"] == 4 and result.text.endswith("exit code: 4")
    assert "HARMLESS_SETTING=visible" in result.text
    assert "ghs_supersecret123" not in result.text and "GITHUB_TOKEN" not in result.text


def test_run_timeout_is_reported_and_bounded_by_settings(tmp_path):
    env = ToolEnv(tmp_path, settings=ToolSettings(command_timeout=1.0))
    result = run(env, "run", command="sleep 30", timeout=100)
    assert not result.ok and result.data["timed_out"] and "timed out after 1s" in result.text


def test_run_caps_output(tmp_path):
    env = ToolEnv(tmp_path, settings=ToolSettings(max_output_chars=1000))
    result = run(env, "run", command="seq 1 100000")
    assert result.ok and result.data["truncated"]
    assert (
        result.text.startswith("1\n2\n") and "characters omitted" in result.text and "100000\n" in result.text
    )


def make_project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_run_tests_detects_pytest_and_names_failures(tmp_path):
    root = make_project(
        tmp_path / "p",
        {
            "pytest.ini": "[pytest]\n",
            "test_a.py": "def test_good():\n    assert True\n\ndef test_bad():\n    assert 1 == 2\n",
        },
    )
    result = run(ToolEnv(root), "run_tests")
    assert not result.ok and result.data["runner"] == "pytest"
    assert result.data["passed"] == ["test_a.py::test_good"] and result.data["failed"] == [
        "test_a.py::test_bad"
    ]
    assert result.text.startswith("1 passed, 1 failed, 0 errors")
    only = run(ToolEnv(root), "run_tests", paths=["test_a.py::test_good"[: len("test_a.py")]])
    assert only.data["passed"] == ["test_a.py::test_good"]


def test_run_tests_uses_the_configured_command_for_unittest(tmp_path):
    root = make_project(
        tmp_path / "u",
        {
            "test_b.py": "import unittest\n\nclass T(unittest.TestCase):\n    def test_ok(self):\n        pass\n\n"
            "    def test_err(self):\n        raise RuntimeError('x')\n",
        },
    )
    env = ToolEnv(root, settings=ToolSettings(test_command="python3 -m unittest -v"))
    result = run(env, "run_tests")
    assert result.data["runner"] == "custom"
    assert result.data["passed"] == ["test_ok (test_b.T.test_ok)"]
    assert result.data["errors"] == ["test_err (test_b.T.test_err)"]


def test_run_tests_without_a_suite_says_how_to_configure(tmp_path):
    root = make_project(tmp_path / "n", {"README.md": "hi\n"})
    result = run(ToolEnv(root), "run_tests")
    assert not result.ok and "test_command" in result.text


def test_parsers_read_each_runner():
    pytest_out = "PASSED t.py::test_a\nFAILED t.py::test_b - assert 1 == 2\nERROR t.py::test_c - ValueError\n"
    assert (parse_pytest(pytest_out).passed, parse_pytest(pytest_out).failed) == (
        ["t.py::test_a"],
        ["t.py::test_b"],
    )
    assert parse_pytest(pytest_out).errors == ["t.py::test_c"]
    unittest_out = "test_x (m.T.test_x) ... ok\ntest_y (m.T.test_y) ... FAIL\ntest_z (m.T.test_z) ... ERROR\n"
    report = parse_unittest(unittest_out)
    assert (report.passed, report.failed, report.errors) == (
        ["test_x (m.T.test_x)"],
        ["test_y (m.T.test_y)"],
        ["test_z (m.T.test_z)"],
    )
    go_out = "=== RUN   TestA\n--- PASS: TestA (0.00s)\n--- FAIL: TestB (0.01s)\nFAIL\texample.com/p [build failed]\n"
    report = parse_go(go_out)
    assert (report.passed, report.failed, report.errors) == (["TestA"], ["TestB"], ["example.com/p"])
    cargo_out = "running 2 tests\ntest tests::adds ... ok\ntest tests::subs ... FAILED\n"
    report = parse_cargo(cargo_out)
    assert (report.passed, report.failed) == (["tests::adds"], ["tests::subs"])
    node_out = "TAP version 13\nok 1 - adds numbers\nnot ok 2 - subtracts # time=1ms\n  ✓ renders (3 ms)\n  ✕ clicks\n"
    report = parse_node(node_out)
    assert report.passed == ["adds numbers", "renders"] and report.failed == ["subtracts", "clicks"]
