"""Attacks on what a sandboxed command may change or read in and around the workspace.

Each runs a hostile command through ``run_confined`` in a real git repository and checks the
host afterwards: protected names (renamed away, replaced, created), git's refs and objects,
placeholders left or cleaned through planted links, secrets in the home folder, codeagent's
own state and ``.git/config``. The attacks run under bubblewrap and under the Landlock
fallback (the ``confinement`` fixture); the placeholder tests are bubblewrap's alone (the
fallback makes none). Skipped, with the reason, where a confinement cannot run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codeagent.agent.transcript import TRANSCRIPT
from codeagent.sandbox.confine import SandboxSpec, probe, run_confined
from codeagent.sandbox.protect import PROTECTED, Journal, ProtectedPathChanged, guard

REASON = probe()
bubblewrap_only = pytest.mark.skipif(REASON is not None, reason=f"no bubblewrap here: {REASON}")
TOKEN = "ghs_workflowtoken0123456789"
HEADER = "AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX3dvcmtmbG93dG9rZW4wMTIzNDU2Nzg5"


def sh(root: Path, *args: str) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(root.parent), "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True, env=env
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    sh(root, "init", "-q", "-b", "main")
    (root / "app.py").write_text("print('hi')\n")
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    sh(root, "add", "-A")
    sh(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    sh(root, "tag", "v1")
    sh(root, "config", "http.https://github.com/.extraheader", HEADER)
    sh(root, "remote", "add", "origin", f"https://x-access-token:{TOKEN}@github.com/o/r.git")
    return root


def run(root: Path, command: str, confinement: str, home: Path | None = None, **env: str) -> str:
    spec = SandboxSpec(root, home=home or Path.home(), confinement=confinement)
    result = run_confined(spec, command, timeout=30, max_output_chars=20_000, env={**os.environ, **env})
    return result.output


def state(root: Path) -> dict[str, str]:
    """What must not change: every ref, the config, hooks and CI files."""
    refs = sh(root, "for-each-ref", "--format=%(refname) %(objectname)")
    hooks = sorted(p.name for p in (root / ".git" / "hooks").iterdir())
    workflows = sorted(str(p.relative_to(root)) for p in (root / ".github").rglob("*"))
    return {
        "refs": refs,
        "head": (root / ".git" / "HEAD").read_text(),
        "config": (root / ".git" / "config").read_text(),
        "hooks": ",".join(hooks),
        "github": ",".join(workflows),
        "exclude": (root / ".git" / "info" / "exclude").read_text(),
    }


RENAME_ATTACKS = [
    "mv .git .git-old; mkdir -p .git/hooks; printf '#!/bin/sh\\ntouch /tmp/x\\n' > .git/hooks/pre-commit",
    "mv .github .github-old; mkdir -p .github/workflows; echo 'on: push' > .github/workflows/evil.yml",
    "mv .git/hooks .git/hooks-old; mkdir .git/hooks; echo x > .git/hooks/post-checkout",
    "rm -rf .github; mkdir -p .github/workflows; echo evil > .github/workflows/evil.yml",
    "python3 -c \"import os; os.rename('.git', '.g')\"",
    "mkdir x && mv .git x/ ; mv .github x/",
    "ln -sfn /tmp .git/hooks 2>&1; ln -sfn /tmp .github/workflows",
    "echo evil.yml >> .git/info/exclude; echo 'on: push' > .github/workflows/evil.yml",
    "cp -r .git /tmp/g && rm -rf .git; cp -r /tmp/g .git",
]


@pytest.mark.attack("protected-paths")
@pytest.mark.parametrize("command", RENAME_ATTACKS)
def test_protected_paths_cannot_be_renamed_away_or_replaced(confinement, repo, command):
    before = state(repo)
    run(repo, confinement=confinement, command=command)
    assert state(repo) == before
    assert not (repo / ".git-old").exists() and not (repo / ".github-old").exists()


@pytest.mark.attack("protected-paths")
@pytest.mark.parametrize("name", sorted(PROTECTED))
def test_missing_protected_names_cannot_be_created(confinement, tmp_path, name):
    root = tmp_path / "plain"
    root.mkdir()
    (root / "app.py").write_text("x\n")
    out = run(
        root,
        confinement=confinement,
        command=f"mkdir -p {name}/sub 2>&1; echo pwned > {name} 2>&1; echo pwned > {name}/f 2>&1; "
        f"mv {name} moved 2>&1; echo done",
    )
    assert "done" in out
    assert sorted(p.name for p in root.iterdir()) == ["app.py"]  # placeholders gone, nothing made


@pytest.mark.attack("history")
@pytest.mark.parametrize(
    "command",
    [
        "git update-ref refs/heads/main HEAD~0^{tree} 2>&1; git update-ref refs/heads/main $(git commit-tree -m x HEAD^{tree})",
        "git tag -f v1 $(git commit-tree -m evil HEAD^{tree}); git tag evil",
        "git branch -f main HEAD; git checkout -b other; git commit --allow-empty -m x",
        "echo 0000000000000000000000000000000000000000 > .git/refs/heads/main",
        "git -c user.name=x -c user.email=x@x commit --allow-empty -m evil",
        "printf 'x' > .git/objects/info/alternates; git gc",
        "git update-ref refs/remotes/origin/main HEAD; git stash",
        "git config core.fsmonitor 'touch /tmp/pwned'",
        "ln .git/config c; printf '[core]\\n\\tfsmonitor = touch /tmp/x\\n' >> c; "
        "for f in .git/objects/*/*; do ln $f obj-$(basename $f) && chmod +w obj-* && echo x >> obj-*; done",
    ],
)
def test_refs_objects_and_config_cannot_be_rewritten(confinement, repo, command):
    before = state(repo)
    objects = sorted(p.name for p in (repo / ".git" / "objects").iterdir())
    run(repo, confinement=confinement, command=command)
    assert state(repo) == before
    assert sorted(p.name for p in (repo / ".git" / "objects").iterdir()) == objects


@pytest.mark.attack("secrets")
@pytest.mark.parametrize(
    "command",
    [
        "cat .git/config",
        "git config --list --show-origin",
        "git remote -v; git remote get-url origin",
        "grep -r ghs_ .git/ 2>/dev/null; grep -ri authorization .git/ 2>/dev/null",
        "git config --get-all http.https://github.com/.extraheader",
    ],
)
def test_git_credentials_are_unreadable_inside(confinement, repo, command, request):
    if confinement != "bubblewrap":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="known limit of the Landlock fallback: .git/config is readable as it is "
                "(bubblewrap overlays a view without credentials; Landlock cannot), so fix and the "
                "terminal UI refuse such a repository under the fallback (test_fallback_fix.py)",
            )
        )
    out = run(repo, confinement=confinement, command=command)
    assert TOKEN not in out and HEADER not in out and "eC1hY2Nlc3Mt" not in out
    assert (repo / ".git" / "config").read_text().count(TOKEN) == 1  # the host's copy is untouched


def test_git_still_works_inside(confinement, repo):
    out = run(
        repo,
        confinement=confinement,
        command="git status --short; git log --oneline; git remote -v; git diff HEAD --stat; echo ok",
    )
    assert "init" in out and "github.com/o/r.git" in out and out.rstrip().endswith("ok")


@pytest.mark.attack("secrets")
def test_the_home_folder_is_empty_but_for_toolchains(confinement, tmp_path, repo):
    home = tmp_path / "home"
    (home / ".pyenv" / "bin").mkdir(parents=True)
    (home / ".pyenv" / "bin" / "tool").write_text("#!/bin/sh\necho toolchain-ok\n")
    (home / ".pyenv" / "bin" / "tool").chmod(0o755)
    (home / ".plain-file").write_text("qz7home-secret\n")
    (home / "notes").mkdir()
    (home / "notes" / "token.txt").write_text("qz7notes-secret\n")
    (home / ".local" / "share" / "keyrings").mkdir(parents=True)
    (home / ".local" / "share" / "keyrings" / "login").write_text("qz7keyring-secret\n")
    (home / ".cargo").mkdir()
    (home / ".cargo" / "credentials.toml").write_text("qz7cargo-secret\n")
    path = f"{home / '.pyenv' / 'bin'}:{os.environ['PATH']}"
    out = run(
        repo,
        confinement=confinement,
        command="tool; cat ~/.plain-file ~/notes/token.txt ~/.local/share/keyrings/login ~/.cargo/credentials.toml; "
        # the 4 GB pyenv tree is left out of the search: on a loaded machine reading it outlasted
        # the command's time limit
        "grep -rh --exclude-dir=.pyenv qz7 ~ /root /home 2>/dev/null; touch ~/.pyenv/bin/x; echo end",
        home=home,
        PATH=path,
        HOME=str(home),
    )
    assert "toolchain-ok" in out and "end" in out
    assert "-secret" not in out, out
    assert not (home / ".pyenv" / "bin" / "x").exists()


@pytest.mark.attack("secrets")
def test_codeagent_state_outside_home_is_hidden(confinement, tmp_path, repo, monkeypatch):
    state_home = tmp_path / "elsewhere" / "state"
    runs = state_home / "codeagent" / "runs" / "old-run"
    runs.mkdir(parents=True)
    (runs / TRANSCRIPT).write_text('{"secret": "canary-transcript"}\n')
    monkeypatch.setenv("XDG_STATE_HOME", str(state_home))
    out = run(
        repo,
        confinement=confinement,
        command=f"cat {runs}/{TRANSCRIPT}; ls -R {state_home}; echo end",
        XDG_STATE_HOME=str(state_home),
    )
    assert "canary-transcript" not in out and "end" in out


@pytest.mark.attack("cleanup")
def test_a_protected_link_out_is_never_cleaned_through(confinement, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").mkdir()  # an empty folder a naive cleanup would rmdir
    root = tmp_path / "ws"
    root.mkdir()
    sh(root, "init", "-q")
    os.symlink(outside, root / ".github")
    os.symlink(outside / "keep", root / ".codeagent")
    out = run(root, confinement=confinement, command="ls .github; echo end")
    assert "end" in out
    assert (outside / "keep").is_dir() and sorted(p.name for p in outside.iterdir()) == ["keep"]
    assert out == run(
        root, confinement=confinement, command="ls .github; echo end"
    )  # and later commands still run


@pytest.mark.attack("cleanup")
def test_a_protected_link_into_the_workspace_protects_its_target(confinement, tmp_path):
    root = tmp_path / "ws"
    (root / "ci" / "workflows").mkdir(parents=True)
    (root / "ci" / "workflows" / "ci.yml").write_text("on: push\n")
    sh(root, "init", "-q")
    os.symlink("ci", root / ".github")
    run(
        root,
        confinement=confinement,
        command="echo evil > ci/workflows/evil.yml; echo evil >> .github/workflows/ci.yml",
    )
    assert sorted(p.name for p in (root / "ci" / "workflows").iterdir()) == ["ci.yml"]
    assert (root / "ci" / "workflows" / "ci.yml").read_text() == "on: push\n"


@pytest.mark.attack("protected-paths")
def test_a_replaced_protected_link_is_put_back_and_stops_the_run(confinement, tmp_path):
    root = tmp_path / "ws"
    (root / "ci").mkdir(parents=True)
    sh(root, "init", "-q")
    os.symlink("ci", root / ".github")
    attack = "rm .github && mkdir -p .github/workflows && echo evil > .github/workflows/x.yml"
    if confinement == "bubblewrap":
        with pytest.raises(ProtectedPathChanged, match=r"\.github"):
            run(root, confinement=confinement, command=attack)
    else:
        run(root, confinement=confinement, command=attack)  # refused: no top-level entry is removed
    assert (root / ".github").is_symlink() and os.readlink(root / ".github") == "ci"
    assert sorted(p.name for p in (root / "ci").iterdir()) == []


@bubblewrap_only
@pytest.mark.attack("cleanup")
def test_placeholders_left_by_a_killed_process_are_removed_by_the_next_command(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    sh(root, "init", "-q")
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from codeagent.sandbox.confine import SandboxSpec, run_confined\n"
        "run_confined(SandboxSpec(Path(sys.argv[1])), 'sleep 30', timeout=30,"
        " max_output_chars=100, env=dict(os.environ))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(100):
        if (root / ".envrc").exists():
            break
        time.sleep(0.1)
    assert (root / ".envrc").exists(), "the command never started"
    proc.kill()
    proc.wait()
    assert (root / ".envrc").exists()  # left behind by the killed process
    run(root, confinement="bubblewrap", command="true")
    assert sorted(p.name for p in root.iterdir()) == [".git"]


@bubblewrap_only
@pytest.mark.attack("cleanup")
def test_commands_running_at_once_in_one_process_keep_their_own_journals(tmp_path):
    """Parallel eval tasks run confined commands from threads of one process: each command's
    placeholders are journaled apart, so one command ending never erases the record of another
    still running (a crash then would leave that one's placeholders behind for good)."""
    journal = Journal(tmp_path / "journal")
    first, second = tmp_path / "ws1", tmp_path / "ws2"
    for root in (first, second):
        root.mkdir()
        sh(root, "init", "-q")
    one, two = guard(first, None, journal), guard(second, None, journal)
    one.release()
    records = [json.loads(p.read_text()) for p in journal.folder.glob("*.json")]
    assert len(records) == 1 and {Path(path).parent for path, _ in records[0]} == {second}
    two.release()
    assert list(journal.folder.glob("*.json")) == []
    assert sorted(p.name for p in second.iterdir()) == [".git"]
