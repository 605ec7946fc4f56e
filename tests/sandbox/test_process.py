"""The process layer: whole trees killed (setsid and double forks too), capped output, clean env."""

from __future__ import annotations

import os
import time
from pathlib import Path

from codeagent.sandbox.environment import scrub_env
from codeagent.sandbox.process import run_command


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    return status != "Z"


def read_pids(folder: Path, names: list[str]) -> list[int]:
    deadline = time.monotonic() + 5
    while not all((folder / n).exists() and (folder / n).read_text().strip() for n in names):
        assert time.monotonic() < deadline, "the command never wrote its pids"
        time.sleep(0.05)
    return [int((folder / n).read_text()) for n in names]


def test_exit_code_and_interleaved_output(tmp_path):
    result = run_command(
        "echo out; echo err >&2; exit 3", tmp_path, timeout=10, max_output_chars=1000, env={}
    )
    assert result.exit_code == 3 and not result.timed_out
    assert result.output == "out\nerr\n"


def test_timeout_kills_setsid_and_double_forked_grandchildren(tmp_path):
    command = (
        f"setsid bash -c 'echo $$ > {tmp_path}/a; exec sleep 300' & "
        f"( ( bash -c 'echo $$ > {tmp_path}/b; exec sleep 300' & ) & ) ; "
        "sleep 300"
    )
    started = time.monotonic()
    result = run_command(command, tmp_path, timeout=1.5, max_output_chars=1000, env=dict(os.environ))
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 10
    assert result.killed_processes >= 3
    for pid in read_pids(tmp_path, ["a", "b"]):
        assert not alive(pid), f"process {pid} outlived the timeout"


def test_daemons_die_with_a_command_that_exits_normally(tmp_path):
    command = f"setsid bash -c 'echo $$ > {tmp_path}/d; exec sleep 300' & sleep 0.3; echo done"
    result = run_command(command, tmp_path, timeout=10, max_output_chars=1000, env=dict(os.environ))
    assert result.exit_code == 0 and result.output == "done\n"
    (pid,) = read_pids(tmp_path, ["d"])
    assert not alive(pid) and result.killed_processes == 1


def test_output_is_capped_keeping_head_and_tail(tmp_path):
    command = "echo START; head -c 50000000 /dev/zero | tr '\\0' x; echo; echo END"
    result = run_command(command, tmp_path, timeout=60, max_output_chars=2000, env=dict(os.environ))
    assert result.exit_code == 0 and result.truncated
    assert result.output.startswith("START\nxxx") and result.output.endswith("xxx\nEND\n")
    assert result.omitted_chars == 50_000_000 + len("START\n\nEND\n") - 2000
    assert f"[... {result.omitted_chars} characters omitted ...]" in result.output
    assert len(result.output) < 2200


def test_a_missing_program_is_exit_127(tmp_path):
    result = run_command(
        ["no-such-program-xyz"], tmp_path, timeout=10, max_output_chars=1000, env=dict(os.environ)
    )
    assert result.exit_code == 127 and "cannot run no-such-program-xyz" in result.output


def test_secret_variables_are_stripped_with_their_aliases():
    env = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "GIT_AUTHOR_NAME": "Dev",
        "GITHUB_TOKEN": "ghs_abcdefghijkl",
        "OPENAI_API_KEY": "sk-1234567890",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-1",
        "DB_PASSWORD": "hunter2hunter2",
        "SSH_AUTH_SOCK": "/tmp/agent.sock",
        "my_session_cookie": "c00kie-value",
        "INNOCENT_ALIAS": "ghs_abcdefghijkl",
        "CUSTOM_THING": "custom-value-1",
    }
    kept = scrub_env(env, extra_names=["custom_thing"])
    assert kept == {"PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8", "GIT_AUTHOR_NAME": "Dev"}
