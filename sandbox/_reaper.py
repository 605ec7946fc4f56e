"""Supervisor for one command: ``python -I -S _reaper.py REPORT_FD [OPTIONS] -- ARGV...``.

Options: ``--join FILE`` writes its own pid into a cgroup's ``cgroup.procs`` before anything
starts (so the command and all it forks are counted there); ``--rlimit NAME=VALUE`` sets a
resource limit (``NPROC``, ``AS``, ``CORE``, ...) on the command.

It makes itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), so processes that
leave the command's session (``setsid``, double forks) are re-parented to it rather than to
init, and it can find and kill them all: on SIGTERM from the parent (timeout), when the
parent dies (``PR_SET_PDEATHSIG``), and when the command exits normally, so nothing a
command starts outlives it. Its exit status is the command's; the number of processes it
had to kill is written to REPORT_FD. It imports the standard library only, so it starts
with ``-I -S`` (no site-packages), which keeps its start-up cost low. Linux only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def kill_descendants(me: int) -> int:
    """SIGKILL every descendant until none is left; orphans land on us as subreaper."""
    killed: set[int] = set()
    for _ in range(200):
        stack, tree = children_of(me), []
        while stack:
            pid = stack.pop()
            tree.append(pid)
            stack.extend(children_of(pid))
        if not tree:
            break
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        _reap()
        time.sleep(0.01)
    _reap()
    return len(killed)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def parse(args: list[str]) -> tuple[list[str], list[tuple[int, int]], list[str]]:
    """(cgroup.procs files to join, rlimits, the command) from the arguments after REPORT_FD."""
    joins: list[str] = []
    limits: list[tuple[int, int]] = []
    while args and args[0] != "--":
        option, value = args[0], args[1]
        if option == "--join":
            joins.append(value)
        elif option == "--rlimit":
            name, _, amount = value.partition("=")
            limits.append((getattr(resource, f"RLIMIT_{name}"), int(amount)))
        else:
            raise SystemExit(f"_reaper: unknown option {option}")
        args = args[2:]
    return joins, limits, args[1:]


def main(report_fd: int, options: list[str]) -> int:
    joins, limits, argv = parse(options)
    for procs in joins:
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # a dying parent asks us to clean up, like a timeout
    me = os.getpid()
    child = os.fork()
    if child == 0:
        os.setsid()
        os.close(report_fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for kind, amount in limits:
            resource.setrlimit(kind, (amount, amount))
        try:
            os.execvp(argv[0], argv)
        except OSError as err:
            os.write(2, f"cannot run {argv[0]}: {err.strerror}\n".encode())
            os._exit(127)
    signal.signal(signal.SIGTERM, _stop)
    try:
        status = _wait(child)
    except _Stop:
        status = 128 + signal.SIGKILL
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    killed = kill_descendants(me)
    with contextlib.suppress(OSError):
        os.write(report_fd, f"{killed}\n".encode())
    return status


class _Stop(Exception):
    pass


def _stop(_signum: int, _frame: object) -> None:
    raise _Stop


def _wait(child: int) -> int:
    """The command's exit code (128 + N for a signal N), waiting through other children."""
    while True:
        pid, raw = os.waitpid(-1, 0)
        if pid == child:
            code = os.waitstatus_to_exitcode(raw)
            return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2:]))
