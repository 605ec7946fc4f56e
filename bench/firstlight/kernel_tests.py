"""``python -m codeagent.bench.firstlight.kernel_tests --output FILE -- PYTEST_ARGS``: pytest with
every result written to a JSON file as it comes.

Run in the repository (the tests are not installed). The file is rewritten after each
test, so a run stopped at its time limit still holds what had finished: counts by
outcome, each failure with the end of its message, the reasons of skips with their
counts, the slowest tests, and where the kernels ran (CUDA, or Triton's interpreter).
``finished`` turns true with pytest's exit status at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

MESSAGE_LINES = 12  # the end of a failure's report kept


class Recorder:
    """A pytest plugin that keeps every test's outcome and writes them after each one."""

    def __init__(self, output: Path, args: list[str]) -> None:
        self.output, self.args = output, args
        self.outcomes: Counter[str] = Counter()
        self.failures: list[dict[str, str]] = []
        self.skips: Counter[str] = Counter()
        self.durations: list[tuple[float, str]] = []
        self.exit_status: int | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome != "passed":
            outcome = "error" if report.when != "call" and report.failed else report.outcome
            self.outcomes[outcome] += 1
            if report.failed:
                tail = report.longreprtext.strip().splitlines()[-MESSAGE_LINES:]
                self.failures.append({"test": report.nodeid, "when": report.when, "message": "\n".join(tail)})
            elif report.skipped and isinstance(report.longrepr, tuple):
                self.skips[str(report.longrepr[2]).removeprefix("Skipped: ")] += 1
            if report.when == "call":
                self.durations.append((report.duration, report.nodeid))
            self.write()

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.exit_status = int(exitstatus)
        self.write()

    def write(self) -> None:
        slowest = sorted(self.durations, reverse=True)[:10]
        report: dict[str, Any] = {
            "benchmark": "kernel-tests",
            "args": self.args,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "triton_interpreter": os.environ.get("TRITON_INTERPRET") == "1",
            "finished": self.exit_status is not None,
            "exit_status": self.exit_status,
            "counts": {k: self.outcomes.get(k, 0) for k in ("passed", "failed", "error", "skipped")},
            "failures": self.failures,
            "skip_reasons": dict(self.skips.most_common()),
            "slowest": [{"test": name, "s": round(s, 3)} for s, name in slowest],
        }
        self.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codeagent.bench.firstlight.kernel_tests")
    parser.add_argument("--output", type=Path, required=True, help="the JSON file")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: pytest's arguments")
    args = parser.parse_args(argv)
    rest = args.pytest_args
    pytest_args = rest[1:] if rest[:1] == ["--"] else rest
    recorder = Recorder(args.output, pytest_args)
    recorder.write()
    return int(pytest.main(pytest_args, plugins=[recorder]))


if __name__ == "__main__":
    sys.exit(main())
