"""Supervisor for one command: ``python -I -S _reaper.py REPORT_FD PARENT_PID [OPTIONS] -- ARGV...``.

Options: ``--join FILE`` writes its own pid into a cgroup's ``cgroup.procs`` before the
command starts (so everything the command forks is counted there); ``--rlimit NAME=VALUE``
sets a resource limit (``NPROC``, ``AS``, ...) on the command. ``limits.py`` builds them.

It makes itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), so processes that
leave the command's session (``setsid``, double forks) are re-parented to it rather than to
init, and it can find and kill them all by walking ``/proc/*/stat`` parent links rooted at
itself: on SIGTERM from the parent (timeout), when the parent dies (``PR_SET_PDEATHSIG``),
and when the command exits normally, so nothing a command starts outlives it. Its exit
status is the command's; the number of processes it killed is written to REPORT_FD.

It imports the standard library only and runs as a file with ``-I -S`` (no site-packages,
no ``PYTHON*`` variables), which keeps its start-up cost low and the command's environment
from steering it. Linux only. Limits: a process that escapes through a new PID namespace or
gets adopted by another subreaper it started itself is still found (it stays a descendant);
one handed to an unrelated daemon (``systemd-run``, ``at``, a container runtime) is not.
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
MAX_ROUNDS = 500  # a fork bomb refills the tree while we kill it; each round kills what exists


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state letter) for every process visible in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # exited meanwhile
        # The command name may hold spaces and parentheses: the fields start after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), fields[0].decode())
    return table


def descendants(root: int) -> list[int]:
    """Live (non-zombie) descendants of ``root``, parents before children."""
    children: dict[int, list[int]] = {}
    states = {}
    for pid, (ppid, state) in process_table().items():
        children.setdefault(ppid, []).append(pid)
        states[pid] = state
    found, queue = [], list(children.get(root, []))
    while queue:
        pid = queue.pop(0)
        if states[pid] != "Z":
            found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def kill_descendants(me: int) -> int:
    """SIGKILL every descendant until none is left; orphans land on us as subreaper."""
    killed: set[int] = set()
    for _ in range(MAX_ROUNDS):
        if not _reap():
            break  # no children at all means no descendants: every orphan is re-parented to us
        tree = descendants(me)
        if not tree:
            break
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.002)
    _reap()
    return len(killed)


def _reap() -> bool:
    """Collect exited children; False when we have no children left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


class _Stop(Exception):
    pass


def _stop(_signum: int, _frame: object) -> None:
    raise _Stop


def parse(args: list[str]) -> tuple[list[str], list[tuple[int, int]], list[str]]:
    """(cgroup.procs files to join, rlimits, the command) from the arguments after PARENT_PID."""
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


def _exec_command(argv: list[str], report_fd: int, limits: list[tuple[int, int]]) -> None:
    """In the forked child: a session of its own, no core dumps, then the command."""
    os.setsid()
    os.close(report_fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing test must not fill the disk with cores
    for kind, amount in limits:
        resource.setrlimit(kind, (amount, amount))
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        os.write(2, f"cannot run {argv[0]}: {err.strerror}\n".encode())
    os._exit(127)


def _wait(child: int) -> int:
    """The command's exit code (128 + N for a signal N), waiting through other children."""
    while True:
        pid, raw = os.waitpid(-1, 0)
        if pid == child:
            code = os.waitstatus_to_exitcode(raw)
            return code if code >= 0 else 128 - code


def main(report_fd: int, parent: int, options: list[str]) -> int:
    joins, limits, argv = parse(options)
    for procs in joins:
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # a dying parent asks us to clean up, like a timeout
    if os.getppid() != parent:
        return 128 + signal.SIGTERM  # the parent died before the death signal was armed
    # SIGTERM stays blocked until the handler is in place, so an early timeout cannot kill us
    # while the command runs unsupervised in its own session.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    child = os.fork()
    if child == 0:
        _exec_command(argv, report_fd, limits)
    signal.signal(signal.SIGTERM, _stop)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        status = _wait(child)
    except _Stop:
        status = 128 + signal.SIGKILL
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    killed = kill_descendants(os.getpid())
    with contextlib.suppress(OSError):
        os.write(report_fd, f"{killed}\n".encode())
    return status


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]))
