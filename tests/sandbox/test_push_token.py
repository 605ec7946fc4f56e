"""Pushing with ``GH_TOKEN`` given to git only in the push's environment (``sandbox.gitpush``).

Against a real smart-HTTP git server over TLS on 127.0.0.1 (``git http-backend`` behind a
small CGI handler, a throwaway certificate made with the ``openssl`` command, trusted through
the repository's ``http.sslCAInfo``): the server refuses requests without the token's
``Authorization`` header, records the headers it gets, and on every request reads the command
line of every process on the machine, which must never hold the token. Afterwards no file of
the work tree, its git folder or the remote holds it, and neither does the output.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codeagent.agent.gitops import GitError, push_token
from codeagent.sandbox.choose import SandboxUnavailable, choose
from codeagent.sandbox.git import GitRepo
from codeagent.sandbox.gitpush import HostToken, push, token_settings

TOKEN = "ghs_pushtoken0123456789abcdef"
STALE = "AUTHORIZATION: basic " + base64.b64encode(b"x-access-token:ghs_stale").decode()
EXPECTED = "basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command here")


def plain_git(cwd: Path, *args: str) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1"}
    env |= {
        "GIT_AUTHOR_NAME": "a",
        "GIT_AUTHOR_EMAIL": "a@a",
        "GIT_COMMITTER_NAME": "a",
        "GIT_COMMITTER_EMAIL": "a@a",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def command_lines() -> list[bytes]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile
                found.append((entry / "cmdline").read_bytes())
    return found


class GitServer:
    """``git http-backend`` for the bare repositories under ``root``, over TLS on 127.0.0.1."""

    def __init__(self, root: Path, certificate: Path, key: Path) -> None:
        self.root = root
        self.authorizations: list[list[str]] = []
        self.command_lines_with_token = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.serve(self)

            def do_POST(self) -> None:
                server.serve(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        self.command_lines_with_token += sum(TOKEN.encode() in line for line in command_lines())
        sent = request.headers.get_all("Authorization") or []
        self.authorizations.append(sent)
        if sent != [EXPECTED]:
            request.send_response(401)
            request.send_header("WWW-Authenticate", 'Basic realm="git"')
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        path, _, query = request.path.partition("?")
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "x-access-token",
            "REQUEST_METHOD": request.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        }
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=True
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        headers = [line.split(": ", 1) for line in head.decode().split("\r\n") if line]
        status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
        request.send_response(status)
        for name, value in headers:
            if name.lower() != "status":
                request.send_header(name, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GitServer]:
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(certificate), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    served = tmp_path / "served"
    served.mkdir()
    plain_git(served, "init", "-q", "--bare", "r.git")
    git_server = GitServer(served, certificate, key)
    yield git_server
    git_server.close()


def checkout(tmp_path: Path, server: GitServer, extra: str = "") -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    plain_git(root, "init", "-q", "-b", "main")
    (root / "app.py").write_text("print('hi')\n")
    plain_git(root, "add", "-A")
    plain_git(root, "commit", "-qm", "init")
    plain_git(root, "remote", "add", "origin", f"https://127.0.0.1:{server.port}/r.git")
    plain_git(root, "config", "http.sslCAInfo", str(tmp_path / "cert.pem"))
    with (root / ".git" / "config").open("a") as config:
        config.write(extra)
    return root


def files_holding(folder: Path, text: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@needs_openssl
@pytest.mark.parametrize("stale_for", ["/", "/r.git"], ids=["host", "exact-url"])
def test_the_token_reaches_the_server_in_one_header_and_nowhere_else(tmp_path, server, stale_for):
    # A token that actions/checkout persisted is dropped for the push, not sent beside ours.
    stale = f'[http "https://127.0.0.1:{server.port}{stale_for}"]\n\textraheader = {STALE}\n'
    root = checkout(tmp_path, server, stale)
    token = HostToken(f"127.0.0.1:{server.port}", TOKEN)
    output = push(GitRepo.open(root), "origin", "main", timeout=60, token=token)
    assert plain_git(server.root / "r.git", "rev-parse", "main") == plain_git(root, "rev-parse", "main")
    assert server.authorizations and all(sent == [EXPECTED] for sent in server.authorizations)
    assert server.command_lines_with_token == 0
    assert TOKEN not in output and EXPECTED not in output
    assert files_holding(root, TOKEN) == [] and files_holding(server.root, TOKEN) == []
    assert files_holding(root, EXPECTED.split()[1]) == []


@needs_openssl
def test_without_the_token_the_push_is_refused(tmp_path, server):
    root = checkout(tmp_path, server)
    with pytest.raises(GitError):
        push(GitRepo.open(root), "origin", "main", timeout=60)
    with pytest.raises(GitError):  # a token for another host is not sent
        push(GitRepo.open(root), "origin", "main", timeout=60, token=HostToken("github.com", TOKEN))
    assert server.authorizations and all(sent == [] for sent in server.authorizations)


def _fallback() -> str | None:
    try:
        return choose("landlock").confinement
    except SandboxUnavailable:
        return None


@needs_openssl
@pytest.mark.skipif(_fallback() is None, reason="no Landlock here")
def test_fix_push_under_the_fallback_sends_gh_token_from_the_environment_only(
    tmp_path, server, make_repo, write_script, fix_script
):
    # The container case: no credentials in .git/config (persist-credentials: false), the
    # Landlock fallback, and GH_TOKEN for the push.
    root = make_repo()
    plain_git(root, "remote", "add", "origin", f"https://127.0.0.1:{server.port}/r.git")
    plain_git(root, "config", "http.sslCAInfo", str(tmp_path / "cert.pem"))
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")}
    env |= {"GH_TOKEN": TOKEN, "GITHUB_SERVER_URL": f"https://127.0.0.1:{server.port}"}
    env |= {"XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", "fix", "--task", "fix mean", "--push", "--json",
         "--sandbox", "landlock", "--model", f"scripted:{write_script(fix_script)}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "resolved" and result["confinement"] == _fallback()
    assert plain_git(server.root / "r.git", "rev-parse", result["branch"]).strip() == result["commit"]
    assert server.authorizations[-1] == [EXPECTED] and server.command_lines_with_token == 0
    assert TOKEN not in proc.stdout + proc.stderr
    assert files_holding(root, TOKEN) == [] and files_holding(tmp_path / "state", TOKEN) == []


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://github.com/o/r.git", True),
        ("https://GitHub.com:443/o/r", True),
        ("http://github.com/o/r.git", False),
        ("https://x-access-token:t@github.com/o/r.git", False),
        ("https://github.com@evil.example/o/r.git", False),
        ("https://github.com.evil.example/o/r.git", False),
        ("https://github.com:8443/o/r.git", False),
        ("ssh://git@github.com/o/r.git", False),
        ("git@github.com:o/r.git", False),
        ("https://git\thub.com/o/r.git", False),
    ],
)
def test_only_https_urls_of_the_tokens_host_get_it(url, sent):
    settings = token_settings(url, HostToken("github.com", TOKEN))
    assert bool(settings) == sent
    if sent:
        key = f"http.{url}.extraheader"
        assert settings == [(key, ""), (key, f"AUTHORIZATION: {EXPECTED}")]


def test_the_token_comes_from_gh_token_first_for_the_servers_host():
    assert push_token({"GITHUB_TOKEN": "b", "GH_TOKEN": "a"}) == HostToken("github.com", "a")
    assert push_token({"GITHUB_TOKEN": "b"}) == HostToken("github.com", "b")
    assert push_token({"GITHUB_TOKEN": "b", "GITHUB_SERVER_URL": "https://ghe.example:8443"}) == HostToken(
        "ghe.example:8443", "b"
    )
    assert push_token({"GITHUB_SERVER_URL": "https://ghe.example"}) is None
    assert push_token({"GH_TOKEN": "a", "GITHUB_SERVER_URL": "http://ghe.example"}) is None
    assert TOKEN not in repr(HostToken("github.com", TOKEN))
