"""``codeagent fix`` under the Landlock fallback, forced (``--sandbox landlock``): the run
resolves the bug with its commands confined by Landlock, and the result JSON says which
confinement ran; an unknown choice is a usage error."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from codeagent.sandbox.choose import SandboxUnavailable, choose

try:
    FALLBACK: str | None = choose("landlock").confinement
    REASON = ""
except SandboxUnavailable as err:
    FALLBACK, REASON = None, str(err)


def codeagent(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(FALLBACK is None, reason=f"no Landlock here: {REASON}")
def test_fix_under_the_forced_fallback_resolves_and_says_so(make_repo, write_script, fix_script):
    root = make_repo()
    script = f"scripted:{write_script(fix_script)}"
    proc = codeagent(
        "fix", "--task", "fix mean", "--model", script, "--sandbox", "landlock", "--json", cwd=root
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "resolved" and result["confinement"] == FALLBACK
    assert result["tests_after"]["passed"] == 2


def test_an_unknown_sandbox_is_a_usage_error(make_repo):
    proc = codeagent("fix", "--task", "x", "--sandbox", "chroot", cwd=make_repo())
    assert proc.returncode == 2 and "invalid choice: 'chroot'" in proc.stderr


TOKEN = "ghs_persistedtoken0123456789"
HEADER = "AUTHORIZATION: basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()


@pytest.mark.skipif(FALLBACK is None, reason=f"no Landlock here: {REASON}")
@pytest.mark.parametrize("where", ["config", "included"])
def test_fix_under_the_fallback_refuses_a_repository_whose_config_holds_a_token(
    make_repo, write_script, fix_script, tmp_path, where
):
    # Landlock cannot hide .git/config as bubblewrap does: the run is refused before it starts.
    # actions/checkout v4 persists the token in .git/config, v6 in a file it includes.
    root = make_repo()
    config = root / ".git" / "config"
    entry = f'[http "https://github.com/"]\n\textraheader = {HEADER}\n'
    if where == "included":
        (tmp_path / "credentials.config").write_text(entry)
        entry = f'[includeIf "gitdir:{root}/.git/"]\n\tpath = {tmp_path / "credentials.config"}\n'
    config.write_text(config.read_text() + entry)
    script = f"scripted:{write_script(fix_script)}"
    proc = codeagent("fix", "--task", "fix mean", "--model", script, "--sandbox", "landlock", cwd=root)
    assert proc.returncode == 2
    assert (
        "holds credentials (http.extraheader)" in proc.stderr and "persist-credentials: false" in proc.stderr
    )
    assert TOKEN not in proc.stdout + proc.stderr and HEADER.split()[-1] not in proc.stdout + proc.stderr
    branches = subprocess.run(["git", "branch"], cwd=root, capture_output=True, text=True, check=True).stdout
    assert branches.split() == ["*", "main"]  # nothing was started
