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
    def __init__(
        self, total: int, finished: list[TaskReport], stream: TextIO = sys.stderr, enabled: bool = True
    ) -> None:
        self.total = total
        self.done = len(finished)  # by an earlier session of a resumed run
        self.resolved = sum(r.resolved for r in finished)
        self.skipped = sum(r.status == "skipped" for r in finished)
        self.stream = stream
        self.enabled = enabled
        self.live = enabled and stream.isatty()
        self.started = time.monotonic()

    def begin(self) -> None:
        if self.live:
            self._draw("starting")

    def __call__(self, report: TaskReport) -> None:
        self.done += 1
        self.resolved += report.resolved
        self.skipped += report.status == "skipped"
        if not self.enabled:
            return
        if self.live:
            self._draw(f"{report.instance_id}: {report.status}")
        else:
            print(
                f"[{self.done}/{self.total}] {report.instance_id}: {report.status} ({report.wall_time_s:.1f}s)",
                file=self.stream,
                flush=True,
            )

    def _draw(self, last: str) -> None:
        filled = WIDTH * self.done // max(1, self.total)
        bar = "#" * filled + "." * (WIDTH - filled)
        elapsed = time.monotonic() - self.started
        line = (
            f"[{bar}] {self.done}/{self.total} resolved {self.resolved} skipped {self.skipped} "
            f"{elapsed:.0f}s  {last}"
        )
        self.stream.write("\r\x1b[2K" + line[:160])
        self.stream.flush()

    def close(self) -> None:
        if self.live and self.done:
            self.stream.write("\n")
            self.stream.flush()
