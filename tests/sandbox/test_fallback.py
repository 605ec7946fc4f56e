"""The Landlock fallback: chosen where namespaces are unavailable, and what it cannot contain.

The container case is reproduced the way Docker's default seccomp profile makes it: a filter
under which ``unshare``, ``setns``, ``mount`` and ``clone`` with a ``CLONE_NEW*`` flag fail
with EPERM, installed in a child Python before it imports codeagent. There ``probe()`` must
say bubblewrap cannot create namespaces, ``choose("on")`` must pick the fallback, and
commands must run confined. (Dropping ``CAP_SYS_ADMIN`` from root does not reproduce it
here: bubblewrap then makes an unprivileged user namespace.) The fallback's known limits
are tests that assert the limit, or strict xfails, never skips.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codeagent.sandbox import fallback, seccomp
from codeagent.sandbox.choose import SandboxUnavailable, choose
from codeagent.sandbox.confine import SandboxSpec, run_confined

try:
    FALLBACK: str | None = choose("landlock").confinement
    REASON = ""
except SandboxUnavailable as err:
    FALLBACK, REASON = None, str(err)
pytestmark = pytest.mark.skipif(FALLBACK is None, reason=f"no Landlock here: {REASON}")

# Docker's default profile, the part that stops bubblewrap (x86-64 numbers)
CONTAINER = """
import ctypes, struct, sys
def op(code, k, jt=0, jf=0):
    return struct.pack("=HBBI", code, jt, jf, k)
EPERM = 0x00050000 | 1
prog = op(0x20, 4) + op(0x15, 0xC000003E, 1, 0) + op(0x06, 0x7FFF0000) + op(0x20, 0)
for nr in (272, 308, 165):  # unshare, setns, mount
    prog += op(0x15, nr, 0, 1) + op(0x06, EPERM)
prog += op(0x15, 435, 0, 1) + op(0x06, 0x00050000 | 38)  # clone3: ENOSYS
prog += op(0x15, 56, 0, 3) + op(0x20, 16) + op(0x45, 0x7E020000, 0, 1) + op(0x06, EPERM)
prog += op(0x06, 0x7FFF0000)
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0
buf = ctypes.create_string_buffer(prog, len(prog))
assert libc.prctl(22, 2, ctypes.byref(Prog(len(prog) // 8, ctypes.cast(buf, ctypes.c_char_p))), 0, 0) == 0

import json, os
from pathlib import Path
from codeagent.sandbox.choose import choose
from codeagent.sandbox.confine import SandboxSpec, probe, run_confined
ws, outside = Path(sys.argv[1]), Path(sys.argv[2])
choice = choose("on")
spec = SandboxSpec(ws, confinement=choice.confinement)
def run(command):
    return run_confined(spec, command, timeout=20, max_output_chars=20000, env=dict(os.environ)).output
print(json.dumps({
    "probe": probe(),
    "choice": choice.confinement,
    "reason": choice.fallback_reason,
    "unshare": run("unshare -Urm true && echo UNSHARED; echo end"),
    "outside": run(f"touch {outside}/pwned; echo end"),
    "inside": run("echo ok > src/made && cat src/made"),
    "status": run("grep -E 'CapEff|NoNewPrivs|Seccomp_filters' /proc/self/status"),
}))
"""


def _repo(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the container filter is written for x86-64")
@pytest.mark.attack("confinement")
def test_in_a_container_without_namespaces_the_fallback_runs_commands_confined(tmp_path):
    root, outside = _repo(tmp_path), tmp_path / "outside"
    outside.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", CONTAINER, str(root), str(outside)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert "cannot create namespaces" in report["probe"]
    assert report["choice"] == FALLBACK and report["reason"] == report["probe"]
    assert "UNSHARED" not in report["unshare"] and "end" in report["unshare"]
    assert not (outside / "pwned").exists() and "end" in report["outside"]
    assert report["inside"] == "ok\n"
    assert "CapEff:\t0000000000000000" in report["status"] and "NoNewPrivs:\t1" in report["status"]
    assert "Seccomp_filters:\t2" in report["status"] or FALLBACK == "landlock"  # the container's and ours


def run(root: Path, command: str, confinement: str | None = None, network: bool = False) -> str:
    spec = SandboxSpec(root, network=network, confinement=confinement or FALLBACK or "landlock")
    return run_confined(spec, command, timeout=20, max_output_chars=20_000, env=dict(os.environ)).output


def test_a_command_that_cannot_be_confined_never_runs(tmp_path):
    """A launcher that cannot apply its rules exits 126 with the reason: the command never runs."""
    root = _repo(tmp_path)
    launch = fallback.prepare(
        SandboxSpec(root, confinement="landlock"), ["touch", str(root / "src" / "x")], {}
    )
    try:
        policy = json.loads(launch.argv[4])
        policy["rules"].append(["/no/such/folder", 1])
        argv = [*launch.argv[:4], json.dumps(policy), *launch.argv[5:]]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    finally:
        launch.close()
    assert proc.returncode == 126 and "cannot confine" in proc.stderr
    assert not (root / "src" / "x").exists()


@pytest.mark.attack("confinement")
def test_no_top_level_entry_is_created_removed_or_renamed(tmp_path):
    root = _repo(tmp_path)
    (root / "app.py").write_text("x = 1\n")
    out = run(
        root,
        "echo y > new.py; rm app.py; mv src lib; mv .git g; ln -s /etc etc; mkdir build; "
        "echo 'x = 2' > app.py; echo ok > src/inner.py; mkdir -p src/a/b && mv src/inner.py src/a/b/; echo end",
    )
    assert "end" in out
    assert sorted(p.name for p in root.iterdir()) == [".git", "app.py", "src"]
    assert (root / "app.py").read_text() == "x = 2\n"  # edited in place
    assert (root / "src" / "a" / "b" / "inner.py").exists()  # anything goes inside a folder


@pytest.mark.attack("confinement")
def test_processes_outside_cannot_be_signalled_traced_or_read(tmp_path):
    root = _repo(tmp_path)
    victim = subprocess.Popen(["sleep", "30"], env={"PATH": os.environ["PATH"], "CANARY": "victim-secret"})
    try:
        out = run(
            root,
            f"kill -TERM {victim.pid} 2>&1; cat /proc/{victim.pid}/environ 2>&1; "
            f"ls -l /proc/{victim.pid}/cwd 2>&1; gdb -p {victim.pid} -batch 2>&1 | tail -1; echo end",
        )
        time.sleep(0.2)
        assert victim.poll() is None and "victim-secret" not in out and "end" in out
    finally:
        victim.kill()
        victim.wait()


def test_known_limit_processes_outside_are_visible(tmp_path):
    """No PID namespace: the command lines of processes outside show in /proc (their
    environment, memory and files do not: see the test above)."""
    root = _repo(tmp_path)
    victim = subprocess.Popen(["sleep", "31.5"])
    try:
        assert "sleep 31.5" in run(root, f"tr '\\0' ' ' < /proc/{victim.pid}/cmdline")
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.attack("confinement")
def test_abstract_unix_sockets_outside_are_unreachable(tmp_path):
    root = _repo(tmp_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0codeagent-test-abstract")
    server.listen(1)
    try:
        code = (
            "import socket; s = socket.socket(socket.AF_UNIX); "
            "s.connect('\\0codeagent-test-abstract'); print('REACHED')"
        )
        out = run(root, f'python3 -c "{code}" 2>&1; echo end')
        assert "REACHED" not in out and "end" in out
    finally:
        server.close()


@pytest.mark.attack("confinement")
@pytest.mark.skipif(not seccomp.supported(), reason="no seccomp filter for this architecture")
def test_a_unix_socket_file_like_dockers_is_unreachable_without_network(tmp_path):
    """A CI container often holds /var/run/docker.sock: a way to the host that Landlock does not
    govern (connect is not a filesystem right). Without network the filter refuses unix sockets;
    socketpair, which only joins a command's own processes, still works."""
    root = _repo(tmp_path)
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    os.chmod(path, 0o666)
    code = (
        "import socket\n"
        "a, b = socket.socketpair(); a.sendall(b'p'); print('PAIR', b.recv(1))\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect({str(path)!r}); print('REACHED')\n"
    )
    (root / "src" / "probe.py").write_text(code)
    try:
        out = run(root, "python3 src/probe.py 2>&1; echo end", confinement="landlock+seccomp")
        assert "PAIR b'p'" in out and "REACHED" not in out and "Operation not permitted" in out
        allowed = run(
            root, "python3 src/probe.py 2>&1; echo end", confinement="landlock+seccomp", network=True
        )
        assert "REACHED" in allowed  # the known limit with --network
    finally:
        server.close()


def test_udp_is_refused_by_seccomp_and_open_without_it(tmp_path):
    """Landlock's network rights cover TCP only: UDP is closed by the seccomp filter, so the
    fallback without a filter (an architecture we have no numbers for) leaves it open."""
    root = _repo(tmp_path)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    port = receiver.getsockname()[1]
    send = f"python3 -c \"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {port}))\""
    try:
        if seccomp.supported():
            run(root, send, confinement="landlock+seccomp")
            with pytest.raises(TimeoutError):
                receiver.recvfrom(10)
        run(root, send, confinement="landlock")  # the known limit without seccomp
        assert receiver.recvfrom(10)[0] == b"x"
    finally:
        receiver.close()


def test_network_when_allowed(tmp_path):
    root = _repo(tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        code = (
            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')"
        )
        assert "CONNECTED" in run(root, f'python3 -c "{code}" 2>&1', network=True)
        assert "CONNECTED" not in run(root, f'python3 -c "{code}" 2>&1')
    finally:
        listener.close()
