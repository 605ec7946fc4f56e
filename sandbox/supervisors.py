"""The supervisors of this process's running commands, and stopping them from another thread.

Every command ``process.run_command`` runs has a supervisor of its own (``_reaper.py``), a
child of this process; SIGTERM asks it to kill the command's whole tree, exactly as a
timeout does, and the caller then returns what the command printed so far. So a front end
can stop the commands an agent's thread is waiting on without cancellation points inside
the sandbox layer.

The supervisors are found among this process's children through ``/proc`` (Linux only, like
the sandbox): a child whose command line holds the reaper's path. Processes that end while
they are looked at are skipped.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from codeagent.sandbox.process import REAPER


def supervisors(parent: int | None = None) -> list[int]:
    """The process ids of the supervisors among ``parent``'s children (default: this process)."""
    marker = str(REAPER).encode()
    found = []
    for pid in children(os.getpid() if parent is None else parent):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # it ended meanwhile
        if marker in argv:
            found.append(pid)
    return found


def stop_commands() -> int:
    """SIGTERM the supervisors of this process's running commands; how many there were."""
    stopped = 0
    for pid in supervisors():
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            continue  # it ended meanwhile
        stopped += 1
    return stopped


def children(parent: int) -> list[int]:
    """The process ids whose parent is ``parent``, from ``/proc/*/stat``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # the name may hold spaces and ')'
        if int(fields[1]) == parent:
            found.append(int(entry))
    return found
