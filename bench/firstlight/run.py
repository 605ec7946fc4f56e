"""One run of ``codeagent bench first-light``: the stages in turn, each a child process with a
deadline, and ``summary.json`` rewritten after each (what the stages are: ``stages.py``).

Time: a stage may run for its budget plus what earlier stages left unused, never into what
later stages are promised, and never past the run's ``budget_s``; one with under
``MIN_STAGE_S`` left is not run. A stage that overruns is stopped (its process group:
SIGTERM, then SIGKILL) and recorded as ``timeout``. Each child's stderr goes, line by
line, to this process's stderr (the device tool shows the end of it) and to
``first-light.log`` beside the results; its stdout (the benches print their JSON there,
the file has it) only to the log. This process imports no torch: versions are read from
package metadata and the GPU from ``nvidia-smi``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from codeagent.bench.firstlight import targets
from codeagent.bench.firstlight.stages import Stage

MIN_STAGE_S = 15.0
GRACE_S = 5.0  # between SIGTERM and SIGKILL
TAIL_LINES = 25
REPO = Path(__file__).resolve().parents[2]  # where tests/ is, in a checkout
Log = Callable[[str], None]


def first_light(
    stages: list[Stage], out: Path, budget_s: float, tiny: bool, log: Log, min_stage_s: float = MIN_STAGE_S
) -> dict[str, Any]:
    """Run ``stages`` within ``budget_s`` seconds; the summary (also written to ``out/summary.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    summary: dict[str, Any] = {
        "benchmark": "first-light",
        "tiny": tiny,
        "note": "tiny shapes on the CPU: checks the run; timings and verdicts mean nothing" if tiny else None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": _machine(),
        "budget_s": budget_s,
        "stages": [],
    }
    with (out / "first-light.log").open("w", encoding="utf-8") as log_file:
        for index, stage in enumerate(stages):
            left = budget_s - (time.monotonic() - began)
            promised = sum(s.budget_s for s in stages[index + 1 :])
            limit = min(left, max(stage.budget_s, left - promised))
            row = _stage(stage, limit, min_stage_s, log_file, log)
            summary["stages"].append(row)
            summary["wall_s"] = round(time.monotonic() - began, 1)
            _write(out / "summary.json", summary)
    summary["targets"] = targets.check({s.name: s.output for s in stages}, tiny)
    _write(out / "summary.json", summary)
    return summary


def _stage(stage: Stage, limit_s: float, min_s: float, log_file: TextIO, log: Log) -> dict[str, Any]:
    row: dict[str, Any] = {"stage": stage.name, "output": stage.output.name, "budget_s": stage.budget_s}
    if stage.needs and importlib.util.find_spec(stage.needs) is None:
        return {**row, "status": "not-run", "why": f"{stage.needs} is not installed here"}
    if limit_s < min_s:
        return {**row, "status": "not-run", "why": f"{limit_s:.0f} s left of the run's budget"}
    command = [sys.executable, "-m", stage.module, *stage.args]
    log(f"{stage.name}: up to {limit_s:.0f} s: {' '.join(command[1:])}")
    print(f"===== {stage.name}: {' '.join(command)}", file=log_file, flush=True)
    stage.output.unlink(missing_ok=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=REPO, env={**os.environ, **stage.env, "PYTHONUNBUFFERED": "1"},
        stdout=log_file, stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True,
    )  # fmt: skip
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    reader = threading.Thread(target=_relay, args=(proc.stderr, stage.name, log_file, tail), daemon=True)
    reader.start()
    try:
        rc: int | None = proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        _stop(proc)
        rc = None
    reader.join(timeout=GRACE_S)
    wall = round(time.monotonic() - started, 1)
    row.update(wall_s=wall, limit_s=round(limit_s), exit_code=rc, log_tail=list(tail))
    written = _readable(stage.output)
    if rc is None:
        row.update(status="timeout", why=f"stopped after {wall} s")
    elif rc != 0:
        row.update(status="failed", why=f"exit code {rc}")
    elif not written:
        row.update(status="failed", why=f"exit code 0 but no JSON in {stage.output.name}")
    else:
        row["status"] = "ok"
    row["output_written"] = written
    log(f"{stage.name}: {row['status']} in {wall} s" + (f" ({row['why']})" if "why" in row else ""))
    return row


def _relay(stream: TextIO, name: str, log_file: TextIO, tail: deque[str]) -> None:
    for line in stream:
        tail.append(line.rstrip()[-400:])
        log_file.write(line)
        log_file.flush()
        print(f"[{name}] {line.rstrip()}", file=sys.stderr, flush=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the stage's process group, SIGKILL it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _readable(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _machine() -> dict[str, Any]:
    versions = {}
    for name in ("torch", "triton", "transformers", "pytest", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    gpus = None
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        proc = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
        gpus = [line.strip() for line in proc.stdout.splitlines() if line.strip()] or proc.stderr.strip()
    return {"python": sys.version.split()[0], "cpus": os.cpu_count(), "gpus": gpus, "packages": versions}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
