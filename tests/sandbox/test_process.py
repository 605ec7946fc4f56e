"""The process layer with real processes: whole trees killed (setsid and double forks too),
daemons killed after a normal exit, output capped head and tail in bounded memory, a running
command stopped from another thread (``supervisors``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from codeagent.sandbox.process import clip_middle, run_command
from codeagent.sandbox.supervisors import stop_commands

ENV = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    return state != "Z"


def read_pids(folder: Path, names: list[str]) -> list[int]:
    deadline = time.monotonic() + 5
    while not all((folder / n).exists() and (folder / n).read_text().strip() for n in names):
        assert time.monotonic() < deadline, "the command never wrote its pids"
        time.sleep(0.02)
    return [int((folder / n).read_text()) for n in names]


def run(command: str | list[str], cwd: Path, timeout: float = 10, cap: int = 1000, **kwargs):
    return run_command(command, cwd, timeout=timeout, max_output_chars=cap, env=ENV, **kwargs)


def test_exit_code_interleaved_output_and_stdin(tmp_path):
    result = run("echo out; echo err >&2; read line; echo got $line; exit 3", tmp_path, stdin="hi\n")
    assert result.exit_code == 3 and not result.timed_out and not result.truncated
    assert result.output == "out\nerr\ngot hi\n"
    assert result.killed_processes == 0


def test_timeout_kills_setsid_and_double_forked_grandchildren(tmp_path):
    command = (
        f"setsid bash -c 'echo $$ > {tmp_path}/a; exec sleep 300' & "
        f"( ( bash -c 'echo $$ > {tmp_path}/b; exec sleep 300' & ) & ) ; "
        f"echo $$ > {tmp_path}/c; sleep 300"
    )
    started = time.monotonic()
    result = run(command, tmp_path, timeout=1)
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 5
    assert result.killed_processes >= 3  # the shell (exec'd into its last sleep) and both escaped sleeps
    for pid in read_pids(tmp_path, ["a", "b", "c"]):
        assert not alive(pid), f"process {pid} outlived the timeout"


def test_timeout_kills_many_escaped_processes(tmp_path):
    command = "for i in $(seq 40); do setsid sleep 300 & done; sleep 300"
    result = run(command, tmp_path, timeout=1)
    assert result.timed_out and result.killed_processes >= 41


def test_daemons_die_with_a_command_that_exits_normally(tmp_path):
    command = (
        f"setsid bash -c 'echo $$ > {tmp_path}/d; exec sleep 300' & "
        f"( ( bash -c 'echo $$ > {tmp_path}/e; exec sleep 300' & ) & ) ; "
        f"while [ ! -s {tmp_path}/d ] || [ ! -s {tmp_path}/e ]; do sleep 0.01; done; echo done"
    )
    result = run(command, tmp_path)
    assert result.exit_code == 0 and result.output == "done\n"
    assert result.killed_processes == 2
    assert not any(alive(pid) for pid in read_pids(tmp_path, ["d", "e"]))


def test_the_tree_dies_when_codeagent_dies(tmp_path):
    script = (
        "import os, pathlib, sys\n"
        "from codeagent.sandbox.process import run_command\n"
        f'run_command("echo $$ > {tmp_path}/f; sleep 300", pathlib.Path({str(tmp_path)!r}), '
        f"timeout=300, max_output_chars=100, env={ENV!r})\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    (pid,) = read_pids(tmp_path, ["f"])
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while alive(pid):
        assert time.monotonic() < deadline, "the command outlived codeagent"
        time.sleep(0.02)


def test_output_is_capped_keeping_head_and_tail(tmp_path):
    command = "echo START; head -c 5000000 /dev/zero | tr '\\0' x; echo; echo END"
    result = run(command, tmp_path, cap=2000)
    assert result.exit_code == 0 and result.truncated
    assert result.output.startswith("START\nxxx") and result.output.endswith("xxx\nEND\n")
    assert result.omitted_chars == 5_000_000 + len("START\n\nEND\n") - 2000
    assert f"\n[... {result.omitted_chars} characters omitted ...]\n" in result.output
    assert len(result.output) < 2100


def test_capping_counts_characters_and_never_splits_one(tmp_path):
    result = run("printf 'é%.0s' $(seq 5000)", tmp_path, cap=1003)  # 2 bytes each: both cuts split one
    assert result.truncated and "\ufffd" not in result.output
    kept = result.output.count("é")
    assert kept == 500 and kept + result.omitted_chars == 5000


def test_huge_output_is_read_in_bounded_memory(tmp_path):
    # A fresh interpreter, so its peak memory is this command's alone.
    script = (
        "import os, pathlib, resource\n"
        "from codeagent.sandbox.process import run_command\n"
        "r = run_command('head -c 300000000 /dev/zero', pathlib.Path('.'), timeout=60,"
        f" max_output_chars=10000, env={ENV!r})\n"
        # VmHWM, not ru_maxrss: exec keeps the maxrss a big forking parent (pytest with torch) had
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(r.omitted_chars, int(hwm) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    omitted, peak_mib = map(int, out.stdout.split())
    assert omitted == 300_000_000 - 10_000
    assert peak_mib < 100, f"peak memory {peak_mib} MiB for 300 MB of output"


def test_a_missing_program_is_exit_127(tmp_path):
    result = run(["no-such-program-xyz"], tmp_path)
    assert result.exit_code == 127 and "cannot run no-such-program-xyz" in result.output


def test_core_dumps_are_off(tmp_path):
    assert run("ulimit -c", tmp_path).output == "0\n"


def test_clip_middle_matches_the_stream_cap():
    assert clip_middle("abc", 10) == "abc"
    clipped = clip_middle("a" * 50 + "b" * 50, 20)
    assert clipped == "a" * 10 + "\n[... 80 characters omitted ...]\n" + "b" * 10


def test_stopping_kills_the_running_command_tree_at_once(tmp_path):
    result = {}

    def work():
        result["r"] = run_command(
            "sleep 30 & sleep 30; echo never",
            tmp_path,
            timeout=60,
            max_output_chars=1000,
            env=dict(os.environ),
        )

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 5
    while not (stopped := stop_commands()) and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    worker.join(10)
    assert stopped == 1 and time.monotonic() - started < 3
    assert "never" not in result["r"].output and not result["r"].timed_out
