"""The core of the attack battery again, as an unprivileged user (uid 65534).

Arranged when the tests run as root: the sandbox package and the XDG folders it imports
(standard library only) are copied to a world-readable folder and run by a Python that user
can execute, through ``setpriv``.
Skipped, with the reason, where that cannot be arranged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import codeagent.sandbox.confine as confine
from codeagent import xdg

NOBODY = 65534
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")

SCRIPT = """
import json, os, sys
from pathlib import Path
from codeagent.sandbox.choose import SandboxUnavailable, choose
from codeagent.sandbox.confine import SandboxSpec, run_confined
try:
    confinement = choose(sys.argv[4]).confinement
except SandboxUnavailable as err:
    print(json.dumps({"skip": str(err)})); sys.exit(0)
ws = Path(sys.argv[1])
env = dict(os.environ, GITHUB_TOKEN="ghs_unpriv_secret")
def run(cmd):
    spec = SandboxSpec(ws, home=Path(sys.argv[2]), confinement=confinement)
    r = run_confined(spec, cmd, timeout=20, max_output_chars=20000, env=env)
    return r.output
print(json.dumps({
    "id": run("id -u"),
    "env": run("env; tr '\\\\0' '\\\\n' < /proc/1/environ"),
    "key": run("cat ~/.ssh/id_ed25519"),
    "write_outside": run("touch " + sys.argv[3] + "/pwned; echo done"),
    "net": run("curl -s -m 3 http://1.1.1.1/ && echo REACHED; echo done"),
    "hook": run("echo x > .git/hooks/pre-commit; echo done"),
    "caps": run("grep -E 'CapEff|NoNewPrivs' /proc/self/status"),
    "inside": run("echo ok > src/made.txt && cat src/made.txt"),
    "rename": run("mv .git .git-old; mkdir -p .github/workflows; echo done"),
    "token": run("cat .git/config; git config --list"),
    "home": run("cat ~/.canary-file; ls -a ~; echo done"),
}))
from codeagent.sandbox.git import GitRepo
GitRepo.open(ws).run(["status"])
"""


def _python_for_nobody() -> str | None:
    for candidate in SYSTEM_PYTHONS:
        probe = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", candidate, "-c", "1"]
        if (
            Path(candidate).exists()
            and subprocess.run(probe, capture_output=True, check=False).returncode == 0
        ):
            return candidate
    return None


@pytest.fixture
def world(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("switching to an unprivileged user needs root")
    if shutil.which("setpriv") is None or (python := _python_for_nobody()) is None:
        pytest.skip("no setpriv, or no Python the unprivileged user may run")
    base = Path(tempfile.mkdtemp(prefix="codeagent-unpriv-", dir="/tmp"))
    for package in (confine, xdg):
        folder = Path(package.__file__).parent
        copy = base / "lib" / "codeagent" / folder.name
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("__pycache__"))
    # outside /tmp, which the sandbox replaces with a private one: a folder the user may write
    # outside /tmp and /var/tmp, which the sandbox replaces with private ones
    outside = Path(
        tempfile.mkdtemp(prefix="codeagent-unpriv-outside-", dir="/srv" if Path("/srv").is_dir() else "/")
    )
    workspace, home = base / "ws", base / "home"
    for folder in (workspace / "src", home / ".ssh"):
        folder.mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    (home / ".canary-file").write_text("home-canary-value\n")
    with (workspace / ".git" / "config").open("a") as config:
        config.write(
            f'[http "https://github.com/"]\n\textraheader = AUTHORIZATION: basic unpriv-token-value\n'
            f"[core]\n\tfsmonitor = touch {outside}/fsmonitor-ran\n"
        )
    for path in [base, *base.rglob("*"), outside]:
        os.chown(path, NOBODY, NOBODY)
    yield python, base, workspace, home, outside
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(outside, ignore_errors=True)


@pytest.mark.attack("confinement")
@pytest.mark.parametrize("choice", ["bubblewrap", "landlock"])
def test_the_battery_holds_for_an_unprivileged_user(world, choice):
    import json

    python, base, workspace, home, outside = world
    proc = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            python,
            "-s",
            "-c",
            SCRIPT,
            str(workspace),
            str(home),
            str(outside),
            choice,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(base / "lib"), "HOME": str(home)},
        cwd=base,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    if "skip" in report:
        pytest.skip(f"{choice} cannot run unprivileged here: {report['skip']}")
    assert report["id"].strip() == str(NOBODY)
    assert "ghs_unpriv_secret" not in report["env"]
    assert "PRIVATE KEY" not in report["key"]
    assert not (outside / "pwned").exists() and "done" in report["write_outside"]
    assert "REACHED" not in report["net"]
    assert not (workspace / ".git" / "hooks" / "pre-commit").exists()
    assert "CapEff:\t0000000000000000" in report["caps"] and "NoNewPrivs:\t1" in report["caps"]
    assert report["inside"] == "ok\n" and (workspace / "src" / "made.txt").exists()
    assert (workspace / ".git").is_dir() and not (workspace / ".git-old").exists()
    assert not (workspace / ".github").exists() and "done" in report["rename"]
    assert "[core]" in report["token"]
    # the Landlock fallback's known limit: .git/config is readable as it is
    assert ("unpriv-token-value" in report["token"]) == (choice == "landlock")
    assert "home-canary-value" not in report["home"] and "done" in report["home"]
    assert not (outside / "fsmonitor-ran").exists()  # the host-side git ran no program of the repository
