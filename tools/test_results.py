"""Parsers that turn a test runner's output into passed, failed and errored test names.

One function per runner, each tolerant of noise around the lines it reads: pytest
(``-rA`` summary lines), unittest (``-v`` lines), ``go test -v``, ``cargo test``, TAP
(node's test runner) and spec-style reporters (jest, node ``--test-reporter=spec``).
``parse_any`` tries them all, for custom test commands. Names are reported as each
runner spells them; output a runner prints in other shapes yields no names, and the
caller still has the exit code and the raw output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(slots=True)
class TestReport:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.passed or self.failed or self.errors)

    def merge(self, other: TestReport) -> None:
        for mine, theirs in (
            (self.passed, other.passed),
            (self.failed, other.failed),
            (self.errors, other.errors),
        ):
            mine.extend(name for name in theirs if name not in mine)


def _collect(pattern: re.Pattern[str], text: str, kinds: dict[str, str]) -> TestReport:
    report = TestReport()
    for match in pattern.finditer(text):
        bucket = kinds.get(match.group("status"))
        if bucket:
            names = getattr(report, bucket)
            if match.group("name") not in names:
                names.append(match.group("name").strip())
    return report


PYTEST = re.compile(r"^(?P<status>PASSED|FAILED|ERROR|XPASS) (?P<name>\S+)", re.MULTILINE)
UNITTEST = re.compile(
    r"^(?P<name>\w+ \([\w.]+\))(?:\n[^\n]*?)? \.\.\. (?P<status>ok|FAIL|ERROR|unexpected success)$",
    re.MULTILINE,
)
GO = re.compile(r"^\s*--- (?P<status>PASS|FAIL): (?P<name>\S+)", re.MULTILINE)
GO_BUILD = re.compile(r"^FAIL\s+(?P<name>\S+)\s+\[(?:build|setup) failed\]", re.MULTILINE)
CARGO = re.compile(r"^test (?P<name>\S+) \.\.\. (?P<status>ok|FAILED)$", re.MULTILINE)
TAP = re.compile(r"^\s*(?P<status>ok|not ok) \d+ - (?P<name>.+?)(?: # .*)?$", re.MULTILINE)
SPEC = re.compile(r"^\s*(?P<status>[✓✔√]|[✕✖×]) (?P<name>.+?)(?: \(\d+(?:\.\d+)? ?m?s\))?$", re.MULTILINE)


def parse_pytest(text: str) -> TestReport:
    return _collect(
        PYTEST, text, {"PASSED": "passed", "XPASS": "passed", "FAILED": "failed", "ERROR": "errors"}
    )


def parse_unittest(text: str) -> TestReport:
    kinds = {"ok": "passed", "unexpected success": "failed", "FAIL": "failed", "ERROR": "errors"}
    return _collect(UNITTEST, text, kinds)


def parse_go(text: str) -> TestReport:
    report = _collect(GO, text, {"PASS": "passed", "FAIL": "failed"})
    report.errors += [m.group("name") for m in GO_BUILD.finditer(text)]
    return report


def parse_cargo(text: str) -> TestReport:
    return _collect(CARGO, text, {"ok": "passed", "FAILED": "failed"})


def parse_node(text: str) -> TestReport:
    report = _collect(TAP, text, {"ok": "passed", "not ok": "failed"})
    spec = {"✓": "passed", "✔": "passed", "√": "passed", "✕": "failed", "✖": "failed", "×": "failed"}
    report.merge(_collect(SPEC, text, spec))
    return report


PARSERS = {
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
