"""``codeagent bench load``: peak resident memory while loading a random checkpoint.

Writes a random Qwen3-MoE checkpoint of about ``size_gb`` (bf16, sharded;
``bench.checkpoint``) and measures, in fresh processes, the peak resident memory of
loading it (``backend.runtime.load``, bf16 on the CPU) against the baseline of the same
process importing the runtime. The checkpoint lies in a temporary folder, removed
afterwards.

With ``tps`` above 1 each layout is loaded split: ``tp`` fresh processes join a gloo group
on 127.0.0.1 and each loads only its share (``load_model(group=)``: slices read with
``pread``, ``backend/stored.py``); every rank reports its own peak against its own baseline,
so the table shows what one rank of that layout needs beside the checkpoint's size: the
resident set just before loading (after the imports and the group's setup) and the peak
(``VmHWM``) at the end; the peak may still be the imports' if loading added less.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from codeagent.bench.checkpoint import qwen3_config, write_checkpoint
from codeagent.bench.machine import machine

LOAD_SCRIPT = """
import pathlib, resource, sys
from codeagent.backend.runtime import load
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(load(pathlib.Path(sys.argv[1]), "bfloat16", "cpu").load_s if sys.argv[1] != "-" else 0.0)
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


RANK_SCRIPT = """
import json, pathlib, sys, time, torch
from codeagent.backend.distributed.group import join
from codeagent.backend.distributed.layout import Layout
from codeagent.backend.loader import load_model
folder, tp, rank = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
group = join(Layout(tp, False, rank), torch.device("cpu"))
before = status("VmRSS")
started = time.perf_counter()
model = load_model(folder, torch.bfloat16, "cpu", group).model
seconds = time.perf_counter() - started
held = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"rank": rank, "load_s": round(seconds, 2), "baseline_rss_bytes": before,
                  "peak_rss_bytes": status("VmHWM"), "weights_held_bytes": held}))
group.close()
"""


def _measure_split(folder: Path, tp: int) -> list[dict[str, Any]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT, str(folder), str(tp), str(rank)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(tp)
    ]
    rows = []
    for process in ranks:
        out, err = process.communicate(timeout=1800)
        if process.returncode:
            raise RuntimeError(f"a rank failed to load: {err.strip()[-500:]}")
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def _measure(folder: Path | None) -> tuple[float, int, int]:
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(folder) if folder else "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, rss = proc.stdout.strip().splitlines()
    before, peak = map(int, rss.split())
    return float(seconds), before * 1024, peak * 1024


def bench_load(size_gb: float, tps: tuple[int, ...] = ()) -> dict[str, Any]:
    layers = max(1, round(size_gb * 2**30 / (64 * 3 * 1024 * 512 * 2)))
    config = qwen3_config(hidden=1024, layers=layers, experts=64, width=512, vocab=32000)
    split: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="codeagent-bench-load-") as tmp:
        size = write_checkpoint(Path(tmp) / "model", config)
        _, _, baseline = _measure(None)
        seconds, _, peak = _measure(Path(tmp) / "model")
        for tp in (t for t in tps if t > 1):
            rows = _measure_split(Path(tmp) / "model", tp)
            for row in rows:
                row["peak_minus_baseline_over_checkpoint"] = round(
                    (row["peak_rss_bytes"] - row["baseline_rss_bytes"]) / size, 3
                )
                row["held_over_checkpoint"] = round(row["weights_held_bytes"] / size, 3)
            split[f"tp{tp}"] = rows
    return {
        "scenario": "load",
        "checkpoint_bytes": size,
        "layers": layers,
        "load_s": round(seconds, 2),
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
        "peak_minus_baseline_over_checkpoint": round((peak - baseline) / size, 3),
        "split": split,
        "machine": machine(),
    }
