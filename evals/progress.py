"""The progress bar of a run, on stderr so stdout keeps the summary.

On a terminal one line is redrawn in place (bar, counts, elapsed time, the last task);
elsewhere (CI logs, pipes) each finished task gets a line of its own, since carriage returns
make logs unreadable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from codeagent.evals.reports import TaskReport

WIDTH = 24


class Progress:
    def __init__(self, total: int, done: int = 0, stream: TextIO = sys.stderr, enabled: bool = True) -> None:
        self.total = total
        self.done = done
        self.resolved = 0
        self.skipped = 0
        self.stream = stream
        self.enabled = enabled
        self.live = enabled and stream.isatty()
        self.started = time.monotonic()

    def __call__(self, report: TaskReport) -> None:
        self.done += 1
        self.resolved += report.resolved
        self.skipped += report.status == "skipped"
        if not self.enabled:
            return
        if self.live:
            self._draw(report)
        else:
            print(
                f"[{self.done}/{self.total}] {report.instance_id}: {report.status} ({report.wall_time_s:.1f}s)",
                file=self.stream,
                flush=True,
            )

    def _draw(self, report: TaskReport) -> None:
        filled = WIDTH * self.done // max(1, self.total)
        bar = "#" * filled + "." * (WIDTH - filled)
        elapsed = time.monotonic() - self.started
        line = (
            f"[{bar}] {self.done}/{self.total} resolved {self.resolved} skipped {self.skipped} "
            f"{elapsed:.0f}s  {report.instance_id}: {report.status}"
        )
        self.stream.write("\r\x1b[2K" + line[:160])
        self.stream.flush()

    def close(self) -> None:
        if self.live and self.done:
            self.stream.write("\n")
            self.stream.flush()
