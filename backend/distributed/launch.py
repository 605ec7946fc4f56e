"""Starting the ranks of a split model: on one machine by us, on several by ``torchrun``.

``start(folder, dtype, device, tp, ep)`` is called by rank 0 (the process the user started).
Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the environment) every rank runs
the same command line: rank 0 goes on with the command, and ``follower_main`` (called by the
CLI before anything else) turns every other rank into a follower. Without ``torchrun``, rank 0
starts ``tp - 1`` follower processes of its own (``python -m codeagent.backend.distributed.
worker``) on 127.0.0.1 with a free port, each on its own GPU (``cuda:r``) or, on a CPU, with
its share of the cores; their output goes to a log file whose tail is shown if one fails.

A follower that exits before rank 0 closes (it failed to load, or was killed) fails rank 0's
next collective: within the group's deadline at the latest (``CODEAGENT_DIST_TIMEOUT``,
default 120 s), usually at once since the connection closes. ``Workers.close`` waits for the
followers to finish after the engine sent them ``Stop``, and kills what is left.

Limits: one tensor-parallel group (``--tp`` up to the GPUs of the machine, or across machines
with ``torchrun --nnodes``); CPU followers split the cores evenly, so ``--tp`` on a CPU
measures communication, it does not add compute.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from codeagent.backend.distributed.group import TorchGroup, join
from codeagent.backend.distributed.layout import Layout

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class LaunchError(RuntimeError):
    """The ranks could not be started or did not meet."""


def under_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARS)


def rank_device(device: str, local_rank: int) -> torch.device:
    return torch.device(f"cuda:{local_rank}") if device.startswith("cuda") else torch.device("cpu")


@dataclass
class Workers:
    """The follower processes rank 0 started (none under torchrun)."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log: Path | None = None

    def failed(self) -> str | None:
        """A one-line account of a follower that exited with an error, with its log's tail."""
        for rank, process in enumerate(self.processes, 1):
            code = process.poll()
            if code not in (None, 0):
                tail = self.log.read_text(errors="replace")[-2000:] if self.log and self.log.exists() else ""
                return f"rank {rank} exited with status {code}" + (
                    f"; its log ({self.log}) ends:\n{tail}" if tail else ""
                )
        return None

    def close(self, timeout: float = 30.0) -> None:
        """Wait for the followers (killed after ``timeout``); their log is removed when every one
        ended well, and kept, for ``failed`` and the user, when one did not."""
        for process in self.processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.log is not None and all(process.returncode == 0 for process in self.processes):
            self.log.unlink(missing_ok=True)


def start(
    folder: Path, dtype: str, device: str, tp: int, ep: bool = False
) -> tuple[TorchGroup, Workers, torch.device]:
    """Rank 0's group, the followers it started, and rank 0's device."""
    if under_torchrun():
        world = int(os.environ["WORLD_SIZE"])
        if world != tp:
            raise LaunchError(f"torchrun started {world} processes but --tp is {tp}; give the same number")
        local = rank_device(device, int(os.environ["LOCAL_RANK"]))
        return join(Layout(tp, ep, int(os.environ["RANK"])), local), Workers(), local
    if device.startswith("cuda") and torch.cuda.device_count() < tp:
        raise LaunchError(
            f"--tp {tp} needs {tp} GPUs on this machine; torch sees {torch.cuda.device_count()}"
        )
    port = _free_port()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    threads = max(1, (os.cpu_count() or 1) // tp)
    if not device.startswith("cuda"):
        env["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    log = Path(tempfile.mkstemp(prefix="codeagent-ranks-", suffix=".log")[1])
    workers = Workers([], log)
    with log.open("ab") as sink:
        for rank in range(1, tp):
            command = [
                sys.executable,
                "-m",
                "codeagent.backend.distributed.worker",
                str(folder),
                dtype,
                device,
            ]
            command += [str(tp), str(rank)] + (["--ep"] if ep else [])
            workers.processes.append(subprocess.Popen(command, env=env, stdout=sink, stderr=sink))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    local = rank_device(device, 0)
    try:
        group = join(Layout(tp, ep, 0), local)
    except RuntimeError as err:
        workers.close(timeout=1)
        raise LaunchError(f"the {tp} ranks did not meet: {err}; {workers.failed() or ''}") from err
    return group, workers, local


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
