"""``codeagent mcp`` as another agent meets it: started as a subprocess by the MCP SDK's own stdio
client on a real git repository, its tools listed and called; the files change on disk, the
sandbox runs the commands (or ``run`` is refused as the agent refuses it), and mistakes come
back as tool errors or as the command line's one error line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from codeagent.sandbox.choose import landlock_problem
from codeagent.sandbox.confine import probe
from codeagent.tools.registry import get_tool

SANDBOX_MISSING = probe()

EXPOSED = ["repo_map", "search", "edit_file", "apply_patch", "run"]
PATCH = """\
--- a/stats.py
+++ b/stats.py
@@ -1,2 +1,5 @@
 def mean(values):
     return sum(values) / len(values)
+
+def total(values):
+    return sum(values)
"""


@asynccontextmanager
async def served(repo: Path, *flags: str, path: str | None = None) -> AsyncIterator[Client]:
    env = dict(os.environ) | ({"PATH": path} if path is not None else {})
    argv = ["-m", "codeagent.tui.cli", "mcp", "--repo", str(repo), *flags]
    params = StdioServerParameters(command=sys.executable, args=argv, env=env)
    async with Client(params, read_timeout_seconds=30) as client:
        yield client


async def call(client: Client, name: str, **arguments: object) -> tuple[bool, str]:
    result = await client.call_tool(name, arguments)
    assert len(result.content) == 1 and result.content[0].type == "text"
    return bool(result.is_error), result.content[0].text


def test_tools_listed_called_and_undone(make_repo):
    repo = make_repo()

    async def session() -> None:
        async with served(repo, "--sandbox", "off") as client:
            listed = (await client.list_tools()).tools
            assert [tool.name for tool in listed] == EXPOSED
            for tool in listed:
                assert tool.input_schema == get_tool(tool.name).parameters
                assert tool.description == get_tool(tool.name).description
                assert tool.annotations.read_only_hint is not get_tool(tool.name).mutates

            failed, text = await call(client, "search", pattern=r"def \w+", glob="*.py")
            assert not failed and "stats.py:1: def mean(values):" in text and "test_single" in text
            failed, text = await call(client, "repo_map", focus="stats.py")
            assert not failed and "def mean(values):" in text

            # trailing spaces: found by the tolerant rules, not verbatim
            wrong = "    return sum(values) / (len(values) - 1)   "
            failed, text = await call(
                client,
                "edit_file",
                path="stats.py",
                old_text=wrong,
                new_text="    return sum(values) / len(values)",
            )
            assert not failed and "+    return sum(values) / len(values)" in text
            assert (repo / "stats.py").read_text().endswith("return sum(values) / len(values)\n")
            failed, text = await call(client, "apply_patch", patch=PATCH)
            assert not failed and "def total(values):" in (repo / "stats.py").read_text()

            for name, arguments in [
                ("edit_file", {"path": "../outside.py", "old_text": "", "new_text": "x"}),
                ("search", {"pattern": "root", "path": "/etc"}),
                ("apply_patch", {"patch": PATCH.replace("stats.py", "../stats.py")}),
            ]:
                failed, text = await call(client, name, **arguments)
                assert failed and "outside the repository" in text and "\n" not in text, text
            assert not (repo.parent / "outside.py").exists()
            failed, text = await call(client, "read_file", path="stats.py")
            assert failed and text.startswith("unknown tool 'read_file'; available: repo_map, search")
            failed, text = await call(client, "search", regex="x")
            assert failed and "search needs argument(s): pattern" in text

    anyio.run(session)
    undo = subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", "undo"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert undo.returncode == 0, undo.stderr
    text = (repo / "stats.py").read_text()
    assert "def total" not in text and "/ len(values)\n" in text  # the patch undone, the edit kept


@pytest.mark.skipif(SANDBOX_MISSING is not None, reason=f"no sandbox here: {SANDBOX_MISSING}")
def test_run_goes_through_the_sandbox(make_repo, tmp_path):
    repo = make_repo()
    outside = tmp_path / "outside.txt"
    command = f"echo made > made.txt; touch {outside}; echo [$SECRET_TOKEN] s3cr3t-value-abcdef; exit 3"

    async def session() -> None:
        async with served(repo, "--sandbox", "on") as client:
            failed, text = await call(client, "run", command=command)
            assert not failed, text  # a command that ran is a result, whatever its exit code
            # the variable is not passed in, and a known secret the command prints is redacted
            assert text.splitlines() == ["[] [secret:SECRET_TOKEN]", "exit code: 3"]

    os.environ["SECRET_TOKEN"] = "s3cr3t-value-abcdef"
    try:
        anyio.run(session)
    finally:
        del os.environ["SECRET_TOKEN"]
    assert (repo / "made.txt").read_text() == "made\n"
    assert not outside.exists()  # /tmp inside is the sandbox's own


def test_without_bubblewrap_run_falls_back_or_is_refused(make_repo, tmp_path):
    """No bubblewrap on PATH: ``--sandbox on`` runs commands under the Landlock fallback where the
    kernel has it; ``--sandbox bubblewrap`` insists, so ``run`` is refused in one line while the
    other tools still work."""
    repo = make_repo()
    bin_dir = tmp_path / "bin"  # git, but no bubblewrap
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    outside = tmp_path / "outside.txt"

    async def session(choice: str) -> tuple[bool, str]:
        async with served(repo, "--sandbox", choice, path=str(bin_dir)) as client:
            result = await call(client, "run", command=f"echo hi; echo x > {outside}")
            failed, text = await call(client, "search", pattern="mean")  # the other tools still work
            assert not failed and "stats.py" in text
            return result

    failed, text = anyio.run(session, "bubblewrap")
    assert failed and "\n" not in text
    assert text.startswith("the sandbox cannot run here (bubblewrap (bwrap) is not installed)")
    assert "pass --sandbox off" in text
    if landlock_problem() is not None:
        pytest.skip(f"no Landlock here: {landlock_problem()}")
    failed, text = anyio.run(session, "on")
    assert text.startswith("hi") and "Permission denied" in text  # confined: no writes outside
    assert not outside.exists()


def test_under_the_fallback_run_is_refused_where_git_config_holds_a_token(make_repo, tmp_path):
    """Landlock cannot hide .git/config as bubblewrap does: with checkout's persisted token there,
    ``run`` answers with the refusal (the token never in it) while the other tools work."""
    if landlock_problem() is not None:
        pytest.skip(f"no Landlock here: {landlock_problem()}")
    repo = make_repo()
    secret = "ghs_" + "A1b2C3d4" * 4
    with (repo / ".git" / "config").open("a") as config:
        config.write(f'[http "https://github.com/"]\n\textraheader = AUTHORIZATION: basic {secret}\n')

    async def session() -> None:
        async with served(repo, "--sandbox", "landlock") as client:
            failed, text = await call(client, "run", command="cat .git/config")
            assert failed and "holds credentials (http.extraheader)" in text and secret not in text
            failed, text = await call(client, "search", pattern="mean")
            assert not failed and "stats.py" in text

    anyio.run(session)


@pytest.mark.parametrize("where", ["not-a-repo", "missing"])
def test_a_bad_repo_is_one_error_line(tmp_path, where):
    (tmp_path / "not-a-repo").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", "mcp", "--repo", str(tmp_path / where)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codeagent: error: "), proc.stderr
