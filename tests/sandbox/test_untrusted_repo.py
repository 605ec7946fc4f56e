"""An untrusted checkout attacked through every entry point: ``codeagent fix``, ``codeagent undo``
and the terminal UI's tool path.

The repository's own git configuration, attributes and an included config outside it all name
programs; a scripted model (the
prompt-injected attacker) then tries to rename ``.git`` away, rewrite refs, plant CI files,
make a nested repository for the host's git to enter, and read the job's token. Nothing of it may run on the host, change anything outside the task, or
reach an output; the run still fixes the bug.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOKEN = "ghs_untrustedrepotoken0123456"
HEADER = "AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX3VudHJ1c3RlZHJlcG90b2tlbjAxMjM0NTY="
HOSTILE_COMMANDS = [
    "mv .git .git-old; mkdir -p .git/hooks; printf '#!/bin/sh\\ntouch /tmp/pwned\\n' > .git/hooks/pre-commit",
    "git update-ref refs/heads/main HEAD; git tag evil; echo 'x' >> .git/info/exclude",
    "mkdir -p .github/workflows && echo 'on: push' > .github/workflows/evil.yml",
    "cat .git/config; git config --list; env",
]


def plain(root: Path, *args: str) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(root.parent), "GIT_CONFIG_NOSYSTEM": "1"}
    env |= {
        "GIT_AUTHOR_NAME": "a",
        "GIT_AUTHOR_EMAIL": "a@a",
        "GIT_COMMITTER_NAME": "a",
        "GIT_COMMITTER_EMAIL": "a@a",
    }
    base = ["git", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-C", str(root)]
    return subprocess.run([*base, *args], check=True, capture_output=True, text=True, env=env).stdout


def poison(root: Path, tmp_path: Path) -> Path:
    """Every kind of program a checkout can name; returns the folder where markers appear."""
    markers = tmp_path / "markers"
    markers.mkdir()
    hooks = tmp_path / "evil-hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "post-commit", "post-checkout", "pre-push", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {markers}/{hook}\n")
        (hooks / hook).chmod(0o755)
    included = tmp_path / "runner-temp" / "git-credentials.config"  # where actions/checkout v6 puts it
    included.parent.mkdir()
    included.write_text(
        f'[http "https://github.com/"]\n\textraheader = {HEADER}\n'
        f'[filter "inc"]\n\tclean = "touch {markers}/included-clean; cat"\n'
    )
    (root / ".gitattributes").write_text("* filter=evil diff=evil merge=evil\n*.py filter=inc\n")
    with (root / ".git" / "config").open("a") as config:
        config.write(
            f"[core]\n\tfsmonitor = touch {markers}/fsmonitor\n\thooksPath = {hooks}\n"
            f"\tpager = touch {markers}/pager\n\tsshCommand = touch {markers}/ssh\n"
            f'[filter "evil"]\n\tclean = "touch {markers}/clean; cat"\n\tsmudge = "touch {markers}/smudge; cat"\n'
            f'[diff "evil"]\n\ttextconv = "touch {markers}/textconv; cat"\n'
            f'[merge "evil"]\n\tdriver = touch {markers}/merge\n'
            f"[diff]\n\texternal = touch {markers}/diff\n"
            f"[credential]\n\thelper = !touch {markers}/credential\n"
            f"[commit]\n\tgpgSign = true\n[gpg]\n\tprogram = {hooks}/pre-commit\n"
            f'[includeIf "gitdir:{root}/.git"]\n\tpath = {included}\n'
            f'[remote "origin"]\n\turl = https://x-access-token:{TOKEN}@github.com/o/r.git\n'
        )
    return markers


def run_codeagent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GITHUB_TOKEN=TOKEN, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args], cwd=cwd, capture_output=True, text=True, env=env
    )


@pytest.mark.attack("host-git")
def test_fix_and_undo_on_a_hostile_checkout_run_nothing_and_leak_nothing(
    make_repo, write_script, fix_script, tool_call, tmp_path
):
    root = make_repo()
    markers = poison(root, tmp_path)
    plain(root, "add", "-A")
    plain(root, "-c", "commit.gpgSign=false", "commit", "-qm", "hostile")
    for marker in markers.iterdir():
        marker.unlink()  # the set-up's own plain git ran some of them
    refs_before = plain(root, "for-each-ref")
    nested = (  # a nested repository the host's git would enter, made from inside
        "mkdir -p vendor/lib && cd vendor/lib && git init -q && echo x > x.txt"
        f" && printf '[core]\\n\\tfsmonitor = touch {markers}/nested\\n' >> .git/config"
        f" && printf '* filter=n\\n[filter \"n\"]\\n' > .gitattributes"
    )
    attacks = [tool_call("run", command=command) for command in [*HOSTILE_COMMANDS, nested]]
    script = write_script([*fix_script[:2], *attacks, *fix_script[2:]])
    proc = run_codeagent(
        "fix", "--task", "fix mean", "--model", f"scripted:{script}", "--json", "--no-repo-map", cwd=root
    )
    assert proc.stdout, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "resolved", proc.stderr
    # The repository's own fsmonitor also runs inside the sandbox, where git runs for the tests;
    # what it writes there is the workspace's business. Nothing protected or nested is committed.
    assert "stats.py" in result["files_changed"]
    assert not any(name.startswith((".git", "vendor")) for name in result["files_changed"])
    listing = run_codeagent("undo", "--list", cwd=root)
    undone = run_codeagent("undo", cwd=root)
    assert listing.returncode == 0 and undone.returncode == 0, listing.stderr + undone.stderr
    assert sorted(p.name for p in markers.iterdir()) == []
    refs_after = plain(root, "for-each-ref").splitlines()
    assert all(line in refs_after for line in refs_before.splitlines())  # main and the rest unmoved
    assert len(refs_after) == len(refs_before.splitlines()) + 1  # the task branch, no tag
    assert not (root / ".github").exists() and not (root / ".git-old").exists()
    transcript = Path(result["transcript"]).read_text()
    for output in (proc.stdout, proc.stderr, transcript, listing.stdout, undone.stdout):
        assert TOKEN not in output and HEADER not in output


@pytest.mark.attack("host-git")
@pytest.mark.parametrize(
    "arrange",
    ["include-into-work-tree", "git-file", "git-symlink"],
)
def test_fix_refuses_a_repository_it_cannot_vet_with_one_line(
    make_repo, write_script, fix_script, tmp_path, arrange
):
    root = make_repo()
    if arrange == "include-into-work-tree":
        with (root / ".git" / "config").open("a") as config:
            config.write("[include]\n\tpath = ../settings.cfg\n")
    else:
        os.rename(root / ".git", tmp_path / "moved.git")
        if arrange == "git-file":
            (root / ".git").write_text(f"gitdir: {tmp_path / 'moved.git'}\n")
        else:
            os.symlink(tmp_path / "moved.git", root / ".git")
    proc = run_codeagent("fix", "--task", "x", "--model", f"scripted:{write_script(fix_script)}", cwd=root)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("codeagent: error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
