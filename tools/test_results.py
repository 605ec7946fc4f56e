"""Reading a test runner's output: passed, failed and errored test names, and the part of
the output that explains the failures.

One parser per runner, each tolerant of noise around the lines it reads:

- pytest: the ``-rA`` short summary (``PASSED/FAILED/ERROR nodeid``), read from the
  "short test summary info" section when it is there;
- unittest: ``-v`` lines (``test_x (mod.Class.test_x) ... ok``), plus the ``FAIL:``/``ERROR:``
  headers of its tracebacks, which survive when a test's own output splits its ``-v`` line;
- ``go test -v``: ``--- PASS/FAIL: Name``; a package that fails to build, and tests that
  started (``=== RUN``) but never reported because the binary panicked, are errors;
- ``cargo test``: ``test name ... ok/FAILED`` (doc-test names with spaces included);
- node: TAP (``ok N - name`` / ``not ok N - name``; ``# SKIP``, ``# TODO`` and node's
  ``describe`` suites ignored) and spec-style reporters (jest, node ``--test-reporter=spec``,
  mocha: ``✓ name`` / ``✕ name``; node's ``▶ suite`` names ignored).

``parse_any`` tries them all, for configured test commands. Names are reported as each
runner spells them; results a runner prints in other shapes yield no names, and the caller
still has the exit code and the raw output.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class TestReport:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.passed or self.failed or self.errors)

    def add(self, bucket: str, name: str) -> None:
        names = getattr(self, bucket)
        if name not in names:
            names.append(name)

    def merge(self, other: TestReport) -> None:
        for bucket in ("passed", "failed", "errors"):
            for name in getattr(other, bucket):
                self.add(bucket, name)


def _collect(pattern: re.Pattern[str], text: str, kinds: dict[str, str]) -> TestReport:
    report = TestReport()
    for match in pattern.finditer(text):
        bucket = kinds.get(match.group("status"))
        if bucket:
            report.add(bucket, match.group("name").strip())
    return report


PYTEST_SUMMARY = re.compile(r"^=+ short test summary info =+$", re.MULTILINE)
# A node id has no spaces outside its parameter brackets; " - " starts the message.
PYTEST = re.compile(
    r"^(?P<status>PASSED|FAILED|ERROR|XPASS) (?P<name>[^\s\[(]+(?:\[.*?\])?)(?: - .*)?$", re.MULTILINE
)
UNITTEST = re.compile(
    r"^(?P<name>\w+ \([\w.]+\))(?:\n[^\n]*?)? \.\.\. (?P<status>ok|FAIL|ERROR|unexpected success)$",
    re.MULTILINE,
)
UNITTEST_HEADER = re.compile(r"^(?P<status>FAIL|ERROR): (?P<name>\w+ \([\w.]+\))$", re.MULTILINE)
GO = re.compile(r"^[ \t]*--- (?P<status>PASS|FAIL|SKIP): (?P<name>\S+)", re.MULTILINE)
GO_RUN = re.compile(r"^=== RUN\s+(?P<name>\S+)$", re.MULTILINE)
GO_BUILD = re.compile(r"^FAIL\s+(?P<name>\S+)\s+\[(?:build|setup) failed\]", re.MULTILINE)
CARGO = re.compile(r"^test (?P<name>.+?) \.\.\. (?P<status>ok|FAILED)$", re.MULTILINE)
# A TAP result line and its optional YAML block; node marks describe() blocks "type: 'suite'".
TAP = re.compile(
    r"^[ \t]*(?P<status>ok|not ok) \d+ - (?P<name>.+?)(?P<directive> # .*)?$(?P<yaml>\n\s+---\n(?:.*\n)*?\s+\.\.\.$)?",
    re.MULTILINE,
)
SPEC_SUITE = re.compile(r"^[ \t]*▶ (?P<name>.+)$", re.MULTILINE)
SPEC = re.compile(
    r"^[ \t]*(?P<status>[✓✔√]|[✕✖×]) (?P<name>.+?[^:\n])(?: \(\d+(?:\.\d+)? ?m?s\))?$", re.MULTILINE
)
SPEC_KINDS = {"✓": "passed", "✔": "passed", "√": "passed", "✕": "failed", "✖": "failed", "×": "failed"}


def parse_pytest(text: str) -> TestReport:
    summary = PYTEST_SUMMARY.search(text)
    section = text[summary.end() :] if summary else text
    kinds = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failed", "ERROR": "errors"}
    return _collect(PYTEST, section, kinds)


def parse_unittest(text: str) -> TestReport:
    kinds = {"ok": "passed", "unexpected success": "failed", "FAIL": "failed", "ERROR": "errors"}
    report = _collect(UNITTEST, text, kinds)
    report.merge(_collect(UNITTEST_HEADER, text, kinds))
    return report


def parse_go(text: str) -> TestReport:
    report = _collect(GO, text, {"PASS": "passed", "FAIL": "failed"})
    reported = {m.group("name") for m in GO.finditer(text)}
    for name in dict.fromkeys(m.group("name") for m in GO_RUN.finditer(text)):
        if name not in reported:
            report.add("errors", name)
    for match in GO_BUILD.finditer(text):
        report.add("errors", match.group("name"))
    return report


def parse_cargo(text: str) -> TestReport:
    return _collect(CARGO, text, {"ok": "passed", "FAILED": "failed"})


def parse_node(text: str) -> TestReport:
    report = TestReport()
    for match in TAP.finditer(text):
        directive = (match.group("directive") or "").upper()
        if "# SKIP" in directive or "# TODO" in directive or "type: 'suite'" in (match.group("yaml") or ""):
            continue
        report.add("passed" if match.group("status") == "ok" else "failed", match.group("name").strip())
    suites = {m.group("name").strip() for m in SPEC_SUITE.finditer(text)}
    for match in SPEC.finditer(text):
        if match.group("name").strip() not in suites:
            report.add(SPEC_KINDS[match.group("status")], match.group("name").strip())
    return report


PARSERS: dict[str, Callable[[str], TestReport]] = {
    "pytest": parse_pytest,
    "unittest": parse_unittest,
    "go": parse_go,
    "cargo": parse_cargo,
    "node": parse_node,
}


def parse_any(text: str) -> TestReport:
    report = TestReport()
    for parse in PARSERS.values():
        report.merge(parse(text))
    return report


PYTEST_HEADER = re.compile(r"^=+ (?P<title>.+?) =+$", re.MULTILINE)
CARGO_FAILURES = re.compile(r"^failures:\n\n---- .*?(?=^failures:$|\Z)", re.MULTILINE | re.DOTALL)
UNITTEST_FAILURES = re.compile(
    r"^=+\n(?:FAIL|ERROR): .*?(?=^-+\nRan \d+ tests?|\Z)", re.MULTILINE | re.DOTALL
)


def failure_text(runner: str, output: str) -> str:
    """The part of ``output`` that explains failures, or all of it when that part is not found."""
    if runner == "pytest":
        sections = _pytest_sections(output, {"ERRORS", "FAILURES"})
        return "".join(sections) or output
    if runner == "unittest":
        match = UNITTEST_FAILURES.search(output)
        return match.group(0) if match else output
    if runner == "cargo":
        return "".join(m.group(0) for m in CARGO_FAILURES.finditer(output)) or output
    return output


def _pytest_sections(output: str, titles: set[str]) -> list[str]:
    headers = list(PYTEST_HEADER.finditer(output))
    if not headers:
        return []
    ends = [following.start() for following in headers[1:]] + [len(output)]
    return [
        output[h.start() : end] for h, end in zip(headers, ends, strict=True) if h.group("title") in titles
    ]
