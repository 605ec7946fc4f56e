"""Attacks on the sandbox, each asserting it fails and nothing outside the workspace changed.

Each runs under bubblewrap and under the Landlock fallback (the ``confinement`` fixture),
skipped with the reason where one cannot run; .ci/run installs bubblewrap. Where the
fallback cannot contain an attack, or contains it differently, the test says so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codeagent.sandbox.confine import SandboxSpec, run_confined

pytestmark = pytest.mark.attack("confinement")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "app.py").write_text("print('hi')\n")
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home folder with the secrets an agent's machine would have."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    (home / ".config" / "codeagent").mkdir(parents=True)
    (home / ".config" / "codeagent" / "config.toml").write_text("api_key_env = 'X'\n")
    (home / ".netrc").write_text("machine example.com password hunter2\n")
    return home


def run(confinement: str, workspace: Path, home: Path, command: str, timeout: float = 20, **env: str):
    spec = SandboxSpec(workspace, home=home, confinement=confinement)
    full_env = {
        **os.environ,
        "GITHUB_TOKEN": "ghs_secret_token_123",
        "OPENAI_API_KEY": "sk-secret-456",
        **env,
    }
    return run_confined(spec, command, timeout=timeout, max_output_chars=20_000, env=full_env)


@pytest.mark.attack("secrets")
def test_secrets_in_the_environment_are_invisible(confinement, workspace, home):
    result = run(
        confinement, workspace, home, "env; cat /proc/self/environ | tr '\\0' '\\n'; cat /proc/1/environ"
    )
    assert "ghs_secret_token_123" not in result.output and "sk-secret-456" not in result.output
    assert "PATH=" in result.output


@pytest.mark.attack("secrets")
def test_credentials_and_settings_are_hidden(confinement, workspace, home):
    os.symlink(home / ".ssh", workspace / "keys")
    result = run(
        confinement,
        workspace,
        home,
        "cat ~/.ssh/id_ed25519 keys/id_ed25519 ~/.netrc ~/.config/codeagent/config.toml",
    )
    assert result.exit_code != 0
    assert (
        "PRIVATE KEY" not in result.output
        and "hunter2" not in result.output
        and "api_key_env" not in result.output
    )


@pytest.mark.parametrize(
    "command",
    [
        "curl -s -m 3 http://1.1.1.1/ && echo REACHED",
        "curl -s -m 3 http://example.com/ && echo REACHED",
        "python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('8.8.8.8', 53)); print('REACHED')\"",
    ],
)
def test_egress_fails(confinement, workspace, home, command):
    result = run(confinement, workspace, home, command)
    assert "REACHED" not in result.output


def test_a_daemons_unix_socket_is_unreachable(confinement, workspace, home):
    """The host's daemons listen on unix sockets in /run (a docker socket is a way to the host):
    a socket file is reachable through read-only mounts and other network namespaces, so
    bubblewrap gives commands an empty /run and the fallback's filter refuses unix sockets."""
    if not os.access("/run", os.W_OK):
        pytest.skip("cannot make a socket in /run here (not root)")
    path = f"/run/codeagent-attack-{os.getpid()}.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    os.chmod(path, 0o666)
    code = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({path!r}); print('REACHED')"
    try:
        result = run(confinement, workspace, home, f'python3 -c "{code}" 2>&1; echo done')
        assert "REACHED" not in result.output and "done" in result.output
    finally:
        server.close()
        os.unlink(path)


def test_the_hosts_loopback_is_unreachable(confinement, workspace, home):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"REACHED")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert socket.create_connection(("127.0.0.1", port), timeout=2)  # reachable from outside
        result = run(confinement, workspace, home, f"curl -s -m 3 http://127.0.0.1:{port}/ ; echo done")
        assert "REACHED" not in result.output and "done" in result.output
    finally:
        server.shutdown()


def test_only_the_workspace_is_writable(confinement, workspace, home, tmp_path):
    sibling = tmp_path / (workspace.name + "-evil")
    sibling.mkdir()
    (workspace / "src").mkdir()
    command = (
        f"touch {sibling}/x; touch /etc/pwned; touch ~/pwned; "
        "sed -i 's/hi/bye/' app.py; echo ok > new.txt; echo ok > src/new.txt; "
        "echo tmp > $TMPDIR/t && cat $TMPDIR/t; echo slash-tmp > /tmp/t && cat /tmp/t"
    )
    result = run(confinement, workspace, home, command)
    assert not (sibling / "x").exists() and not Path("/etc/pwned").exists() and not (home / "pwned").exists()
    assert (workspace / "src" / "new.txt").exists() and "tmp" in result.output
    if confinement == "bubblewrap":
        assert (workspace / "app.py").read_text() == "print('bye')\n" and (workspace / "new.txt").exists()
        assert "slash-tmp" in result.output  # a private /tmp
    else:
        # the fallback's known limits: no top-level entry is created, removed or renamed (sed -i
        # renames), and /tmp is not private but closed: $TMPDIR is the private one
        assert (workspace / "app.py").read_text() == "print('hi')\n" and not (workspace / "new.txt").exists()
        assert "slash-tmp" not in result.output and not Path("/tmp/t").exists()


@pytest.mark.attack("protected-paths")
@pytest.mark.parametrize(
    "command",
    [
        "echo 'touch /tmp/hooked' > .git/hooks/pre-commit",
        "mkdir -p .git/hooks && printf '#!/bin/sh\\n' > .git/hooks/post-checkout",
        "printf '[core]\\n\\tfsmonitor = touch /tmp/x\\n' >> .git/config",
        "mkdir -p .codeagent && echo 'model = \"remote:evil\"' > .codeagent/settings.toml",
        "mkdir -p .github/workflows && echo 'on: push' > .github/workflows/evil.yml",
        "echo 'curl evil' > .envrc",
        "$(printf 'ec\\x68o') x > .git/hooks/pre-push",
        "true && cp app.py .git/hooks/pre-commit",
    ],
)
def test_protected_paths_cannot_be_created_or_changed(confinement, workspace, home, command):
    config_before = (workspace / ".git" / "config").read_text()
    run(confinement, workspace, home, command)
    assert (workspace / ".git" / "config").read_text() == config_before
    hooks = [p.name for p in (workspace / ".git" / "hooks").iterdir() if not p.name.endswith(".sample")]
    assert hooks == []
    assert not (workspace / ".envrc").exists()  # the empty mount point is removed afterwards
    assert not (workspace / ".codeagent").exists() and not (workspace / ".github").exists()


def test_root_gets_no_capabilities_and_no_new_privileges(confinement, workspace, home):
    result = run(
        confinement,
        workspace,
        home,
        "grep -E 'CapEff|CapPrm|NoNewPrivs' /proc/self/status; "
        "mount -o remount,rw / && echo REMOUNTED; unshare -Urm true && echo UNSHARED; echo end",
    )
    assert "CapEff:\t0000000000000000" in result.output and "NoNewPrivs:\t1" in result.output
    assert "REMOUNTED" not in result.output and "UNSHARED" not in result.output and "end" in result.output


def test_a_setsid_daemon_dies_at_the_timeout(confinement, workspace, home):
    (workspace / "logs").mkdir()  # the fallback lets commands write in folders, not at the top
    started = time.monotonic()
    result = run(
        confinement,
        workspace,
        home,
        "setsid sh -c 'while true; do date >> logs/tick.log; sleep 0.2; done' & sleep 60",
        timeout=2,
    )
    assert result.timed_out and time.monotonic() - started < 15
    size = (workspace / "logs" / "tick.log").stat().st_size
    time.sleep(1)
    assert (workspace / "logs" / "tick.log").stat().st_size == size  # nothing is still writing


def test_huge_output_is_capped(confinement, workspace, home):
    result = run(
        confinement, workspace, home, "head -c 1000000000 /dev/zero | tr '\\0' y; echo END", timeout=120
    )
    assert result.truncated and result.output.endswith("END\n") and len(result.output) < 21_000


def test_a_fork_bomb_is_contained(confinement, workspace, home):
    from codeagent.sandbox.limits import ResourceLimits, jail

    probe_jail = jail(ResourceLimits())  # what this machine allows
    probe_jail.close()
    mechanism = probe_jail.mechanism
    if "unbounded" in mechanism:
        pytest.skip(f"process count cannot be bounded here ({mechanism})")
    spec = SandboxSpec(workspace, home=home, confinement=confinement)
    started = time.monotonic()
    result = run_confined(
        spec,
        "bomb() { bomb | bomb & }; bomb; sleep 30",
        timeout=5,
        max_output_chars=2000,
        env=dict(os.environ),
        limits=ResourceLimits(max_processes=200),
    )
    assert result.timed_out and time.monotonic() - started < 30
    assert run(confinement, workspace, home, "echo still-alive").output == "still-alive\n"


def test_a_huge_allocation_is_contained(confinement, workspace, home):
    from codeagent.sandbox.limits import ResourceLimits

    spec = SandboxSpec(workspace, home=home, confinement=confinement)
    result = run_confined(
        spec,
        "python3 -c 'x = bytearray(6 * 2**30); print(len(x))'; echo after",
        timeout=60,
        max_output_chars=4000,
        env=dict(os.environ),
        limits=ResourceLimits(max_memory_bytes=512 * 2**20),
    )
    assert "6442450944" not in result.output and "after" in result.output


def test_an_interpreter_in_tmp_stays_usable_read_only(confinement, workspace, home, tmp_path):
    """A virtual environment under /tmp (the sandbox's /tmp is private) is mounted back, read-only."""
    venv = Path(tempfile.mkdtemp(prefix="codeagent-venv-", dir="/tmp"))
    try:
        (venv / "bin").mkdir()
        tool = venv / "bin" / "hello-tool"
        tool.write_text("#!/bin/sh\necho hello from tmp\n")
        tool.chmod(0o755)
        env_path = f"{venv / 'bin'}:{os.environ['PATH']}"
        result = run(
            confinement,
            workspace,
            home,
            "hello-tool; touch $(dirname $(command -v hello-tool))/x; echo done",
            PATH=env_path,
        )
        assert "hello from tmp" in result.output and "done" in result.output
        assert not (venv / "bin" / "x").exists()
    finally:
        shutil.rmtree(venv, ignore_errors=True)
