"""Run one command with a wall-time limit, an output cap, and its whole process tree
killed when it ends.

Each command runs under ``_reaper.py``, a child subreaper that kills every descendant,
including ``setsid`` and double-forked ones, on timeout, when codeagent dies, and when the
command exits (a command's daemons die with it). Output (stdout and stderr interleaved,
as a terminal shows them) is read as it comes and capped: the head and the tail are kept,
the middle is dropped and counted, so 1 GB of output never sits in memory.

Limits of this layer: it bounds time, output and the process tree, and the caller passes a
scrubbed environment (``environment.scrub_env``); it does not confine the filesystem or
the network. That is bubblewrap's job, layered on top.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REAPER = Path(__file__).with_name("_reaper.py")
GRACE_S = 5.0
CHUNK = 65536


@dataclass(slots=True)
class CommandResult:
    exit_code: int | None  # None when killed for the timeout
    output: str
    timed_out: bool
    truncated: bool
    omitted_chars: int
    duration_s: float
    killed_processes: int


class CappedBuffer:
    """Keeps the first and last ``limit // 2`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.half = max(1, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        excess = len(self.tail) - self.half
        if excess > 0:
            self.dropped += excess
            del self.tail[:excess]

    def text(self) -> tuple[str, int]:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if not self.dropped:
            return head + tail, 0
        return f"{head}\n[... {self.dropped} characters omitted ...]\n{tail}", self.dropped


def _pump(stream: int, buffer: CappedBuffer) -> None:
    while chunk := os.read(stream, CHUNK):
        buffer.add(chunk)
    os.close(stream)


def run_command(
    command: str | list[str],
    cwd: Path,
    *,
    timeout: float,
    max_output_chars: int,
    env: dict[str, str],
    stdin: str | None = None,
    supervisor_options: Sequence[str] = (),
) -> CommandResult:
    """Run ``command`` (a str runs through bash). ``supervisor_options`` go to ``_reaper.py``
    (cgroups to join, rlimits), see ``limits.py``."""
    argv = ["/bin/bash", "-c", command] if isinstance(command, str) else list(command)
    report_r, report_w = os.pipe()
    out_r, out_w = os.pipe()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(REAPER), str(report_w), *supervisor_options, "--", *argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=out_w,
        stderr=out_w,
        pass_fds=(report_w,),
        start_new_session=True,
        close_fds=True,
    )
    os.close(out_w)
    os.close(report_w)
    buffer = CappedBuffer(max_output_chars)
    reader = threading.Thread(target=_pump, args=(out_r, buffer), daemon=True)
    reader.start()
    if stdin is not None and proc.stdin:
        _feed(proc.stdin, stdin)
    timed_out = _wait(proc, timeout)
    reader.join(GRACE_S)
    killed = _read_report(report_r)
    output, omitted = buffer.text()
    return CommandResult(
        None if timed_out else proc.returncode,
        output,
        timed_out,
        omitted > 0,
        omitted,
        time.monotonic() - started,
        killed,
    )


def _feed(pipe, text: str) -> None:  # type: ignore[no-untyped-def]
    def write() -> None:
        try:
            pipe.write(text.encode())
            pipe.close()
        except BrokenPipeError:
            pass  # the command stopped reading; what it did not read is not an error of ours

    threading.Thread(target=write, daemon=True).start()


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for the supervisor; on timeout ask it to kill the tree, then make sure. True if timed out."""
    try:
        proc.wait(timeout)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return True


def _read_report(fd: int) -> int:
    with os.fdopen(fd, "rb") as handle:
        text = handle.read().decode().strip()
    return int(text) if text.isdigit() else 0
