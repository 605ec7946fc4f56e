"""Stopping the model's running command from the UI thread.

Every command the tools run has a supervisor of its own (``sandbox/_reaper.py``), started by
this process; SIGTERM asks it to kill the command's whole tree, exactly as a timeout does, and
the tool then returns what the command printed so far. ``stop_commands`` finds those
supervisors among this process's children through ``/proc`` (Linux only, like the sandbox), so
the agent's thread needs no cancellation points inside the sandbox layer.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from codeagent.sandbox.process import REAPER


def stop_commands() -> int:
    """SIGTERM the supervisors of this process's running commands; how many there were."""
    me, marker, stopped = os.getpid(), str(REAPER).encode(), 0
    for pid in _children(me):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if marker in argv:
                os.kill(pid, signal.SIGTERM)
                stopped += 1
        except OSError:
            continue  # it ended meanwhile
    return stopped


def _children(parent: int) -> list[int]:
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
