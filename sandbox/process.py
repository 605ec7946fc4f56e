"""Run one command with a wall-time limit, an output cap, and its whole process tree
killed when it ends. Linux only.

Each command runs under ``_reaper.py``, a child subreaper started in a session of its own,
which kills every descendant, including ``setsid`` and double-forked ones, on timeout, when
codeagent dies, and when the command exits (a command's daemons die with it). On timeout
the parent sends the supervisor SIGTERM, and SIGKILLs the supervisor's process group if it
does not finish within a grace period. Core dumps are off for the command (RLIMIT_CORE=0).

Output (stdout and stderr on one pipe, so interleaved as a terminal shows them) is read by
a thread as it comes and capped: the first and last ``max_output_chars // 2`` bytes are kept
(so at most that many characters; a character cut in two is dropped whole), the middle is
dropped and counted in characters, so 1 GB of output never sits in memory. Bytes that are
not UTF-8 show as replacement characters.

Limits of this layer: it bounds time, output and the process tree, and the caller passes a
scrubbed environment (``environment.scrub_env``); it does not confine the filesystem or the
network, nor bound memory or process counts. That is bubblewrap's and the limits' job,
layered on top (``confine.py``).
"""

from __future__ import annotations

import codecs
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REAPER = Path(__file__).with_name("_reaper.py")
GRACE_S = 5.0
MAX_POLL_S = 2_000_000.0  # poll() takes a C int of milliseconds
CHUNK = 65536
UTF8_CONTINUATION = bytes(range(0x80, 0xC0))


@dataclass(slots=True)
class CommandResult:
    exit_code: int | None  # None when killed for the timeout
    output: str
    timed_out: bool
    truncated: bool
    omitted_chars: int
    duration_s: float
    killed_processes: int


def omission_marker(count: int) -> str:
    return f"\n[... {count} characters omitted ...]\n"


def _chars(data: bytes | bytearray) -> int:
    """UTF-8 characters in ``data``: every byte that does not continue a sequence starts one."""
    return len(bytes(data).translate(None, UTF8_CONTINUATION))


class CappedBuffer:
    """Keeps the first and last ``limit // 2`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.half = max(1, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped_chars = 0

    def add(self, data: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        excess = len(self.tail) - self.half
        if excess > 0:
            self.dropped_chars += _chars(self.tail[:excess])
            del self.tail[:excess]

    def text(self) -> tuple[str, int]:
        """The kept text with a marker where the middle was, and how many characters it stands for."""
        if not self.dropped_chars:
            return (self.head + self.tail).decode("utf-8", errors="replace"), 0
        # The cuts may fall inside a character: drop its pieces rather than show replacement marks.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        head = decoder.decode(bytes(self.head), final=False)
        omitted = self.dropped_chars + (1 if decoder.getstate()[0] else 0)
        tail = bytes(self.tail).lstrip(UTF8_CONTINUATION).decode("utf-8", errors="replace")
        return head + omission_marker(omitted) + tail, omitted


def clip_middle(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters the way command output is: head, marker, tail."""
    if len(text) <= limit:
        return text
    half = max(1, limit // 2)
    return text[:half] + omission_marker(len(text) - 2 * half) + text[-half:]


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
    """Run ``command`` (a str goes through ``/bin/bash -c``) in ``cwd`` with exactly ``env``.
    ``supervisor_options`` go to ``_reaper.py`` (cgroups to join, rlimits; see ``limits.py``)."""
    argv = ["/bin/bash", "-c", command] if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError("empty command")
    started = time.monotonic()
    proc, out_r, report_r = _start([*supervisor_options, "--", *argv], cwd, env, stdin is not None)
    buffer = CappedBuffer(max_output_chars)
    reader = threading.Thread(target=_pump, args=(out_r, buffer), daemon=True)
    reader.start()
    if stdin is not None and proc.stdin:
        _feed(proc.stdin, stdin)
    timed_out = _wait(proc, timeout)
    # The supervisor killed every writer before exiting, so the pipe is at its end unless a
    # process could not be killed (stuck in the kernel); then we stop waiting for it.
    reader.join(GRACE_S)
    killed = _read_report(report_r)
    output, omitted = buffer.text()
    duration = time.monotonic() - started
    exit_code = None if timed_out else proc.returncode
    return CommandResult(exit_code, output, timed_out, omitted > 0, omitted, duration, killed)


def _start(
    argv: list[str], cwd: Path, env: dict[str, str], piped_stdin: bool
) -> tuple[subprocess.Popen[bytes], int, int]:
    """The supervisor with ``argv`` (its options, ``--``, the command); returns it, the output
    pipe and the kill-report pipe."""
    report_r, report_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(REAPER), str(report_w), str(os.getpid()), *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if piped_stdin else subprocess.DEVNULL,
            stdout=out_w,
            stderr=out_w,
            pass_fds=(report_w,),
            start_new_session=True,
        )
    except OSError:
        os.close(out_r)
        os.close(report_r)
        raise
    finally:
        os.close(out_w)
        os.close(report_w)
    return proc, out_r, report_r


def _pump(stream: int, buffer: CappedBuffer) -> None:
    while chunk := os.read(stream, CHUNK):
        buffer.add(chunk)
    os.close(stream)


def _feed(pipe: IO[bytes], text: str) -> None:
    def write() -> None:
        try:
            pipe.write(text.encode())
            pipe.close()
        except BrokenPipeError:
            pass  # the command stopped reading; what it did not read is not an error of ours

    threading.Thread(target=write, daemon=True).start()


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for the supervisor; on timeout (or an interrupt) have it kill the tree. True if timed out."""
    try:
        if _exited_within(proc, timeout):
            return False
        _stop(proc)
        return True
    except BaseException:
        _stop(proc)  # Ctrl-C or a cancelled worker must not leave the command running
        raise


def _exited_within(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Block until the supervisor exits (True) or ``timeout`` passes (False).

    ``Popen.wait(timeout)`` polls with sleeps growing to 50 ms, which would add up to that much
    to every command; a pidfd wakes us the moment the supervisor exits."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # kernels before 5.3: fall back to polling
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        exited = bool(poller.poll(int(min(timeout, MAX_POLL_S) * 1000)))
    finally:
        os.close(pidfd)
    if exited:
        proc.wait()
    return exited


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _read_report(fd: int) -> int:
    with os.fdopen(fd, "rb") as handle:
        text = handle.read().decode().strip()
    return int(text) if text.isdigit() else 0
