"""codeagent's own git calls against repositories whose config, attributes and layout are hostile.

Every attack is shown real first: plain git (no system or global config) runs the attacker's
marker program. Then the same operation through ``sandbox.git.GitRepo`` (or ``gitops``,
``Checkpoints``) must run nothing, or refuse the repository with the reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codeagent.agent import gitops
from codeagent.sandbox import gitpolicy
from codeagent.sandbox.checkpoint import Checkpoints
from codeagent.sandbox.git import GitRepo, UnsafeRepository
from codeagent.sandbox.gitconfig import Entry
from codeagent.sandbox.gitpush import push

NEUTRAL = {
    "",
    ":",
    "false",
    "true",
    "cat",
    "/dev/null",
    "none",
    "0",
    "ssh",
    "binary",
    "medium",
    "never",
    "all",
    "short",
    "no",
    "umask",
}


def plain_git(root: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(root.parent), "GIT_CONFIG_NOSYSTEM": "1"}
    env |= {
        "GIT_AUTHOR_NAME": "a",
        "GIT_AUTHOR_EMAIL": "a@a",
        "GIT_COMMITTER_NAME": "a",
        "GIT_COMMITTER_EMAIL": "a@a",
    }
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, env=env, check=check
    )


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    return folder


def fired(markers: Path) -> list[str]:
    return sorted(p.name for p in markers.iterdir())


def clear(markers: Path) -> None:
    for marker in markers.iterdir():
        marker.unlink()


def make(tmp_path: Path, name: str = "ws") -> Path:
    root = tmp_path / name
    root.mkdir()
    plain_git(root, "init", "-q", "-b", "main", check=True)
    (root / "a.txt").write_text("one\n")
    plain_git(root, "add", "a.txt", check=True)
    plain_git(root, "-c", "core.hooksPath=/dev/null", "commit", "-qm", "base", check=True)
    return root


def hostile(root: Path, config: str, attributes: str = "") -> None:
    with (root / ".git" / "config").open("a") as handle:
        handle.write(config)
    if attributes:
        (root / ".gitattributes").write_text(attributes)


def identity() -> dict[str, str]:
    return dict(gitops.IDENTITY)


# (name, config, attributes, what plain git runs, what codeagent runs: GitRepo -> None)
CASES = [
    ("fsmonitor", "[core]\n\tfsmonitor = touch {m}/fsmonitor\n", "", ["status"], lambda r: r.run(["status"])),
    (
        "filter-clean",
        '[filter "x"]\n\tclean = "touch {m}/clean; cat"\n',
        "* filter=x\n",
        ["add", "-A"],
        lambda r: r.run(["add", "-A"]),
    ),
    (
        "filter-process",
        '[filter "x"]\n\tprocess = touch {m}/process\n\trequired\n',
        "* filter=x\n",
        ["add", "-A"],
        lambda r: r.run(["add", "-A"], check=False),
    ),
    (
        "filter-smudge",
        '[filter "x"]\n\tsmudge = "touch {m}/smudge; cat"\n',
        "* filter=x\n",
        ["checkout", "-q", "HEAD", "--", "a.txt"],
        lambda r: r.run(["checkout", "-q", "HEAD", "--", "a.txt"]),
    ),
    (
        "diff-textconv",
        '[diff "x"]\n\ttextconv = "touch {m}/textconv; cat"\n',
        "* diff=x\n",
        ["diff", "HEAD"],
        lambda r: r.run(["diff", "HEAD"]),
    ),
    (
        "diff-command",
        '[diff "x"]\n\tcommand = touch {m}/diffcommand\n',
        "* diff=x\n",
        ["diff", "HEAD"],
        lambda r: r.run(["diff", "HEAD"]),
    ),
    (
        "diff-external",
        "[diff]\n\texternal = touch {m}/external\n",
        "",
        ["diff", "HEAD"],
        lambda r: r.run(["diff", "HEAD"]),
    ),
    (
        "hooks-path",
        "[core]\n\thooksPath = {m}/../hooks\n",
        "",
        ["commit", "-qam", "x"],
        lambda r: r.run(["commit", "-qam", "x"], env=identity()),
    ),
    (
        "gpg-program",
        "[commit]\n\tgpgSign = true\n[gpg]\n\tprogram = {m}/../gpg.sh\n",
        "",
        ["commit", "-qam", "x"],
        lambda r: r.run(["commit", "-qam", "x"], env=identity(), check=False),
    ),
    (
        "ssh-command",
        '[core]\n\tsshCommand = touch {m}/ssh\n[remote "origin"]\n\turl = ssh://git@example.invalid/o/r.git\n',
        "",
        ["push", "origin", "main"],
        lambda r: _push(r),
    ),
]


def _push(repo: GitRepo) -> None:
    # No network: the push fails, and what matters is what ran on the way.
    with contextlib.suppress(gitops.GitError):
        push(repo, "origin", "main", timeout=30)


@pytest.mark.attack("host-git")
@pytest.mark.parametrize(("name", "config", "attributes", "plain", "ours"), CASES, ids=[c[0] for c in CASES])
def test_a_hostile_config_runs_under_plain_git_and_not_under_ours(
    tmp_path, markers, name, config, attributes, plain, ours
):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "post-commit", "post-checkout", "pre-push"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {markers}/{hook}\n")
        (hooks / hook).chmod(0o755)
    (tmp_path / "gpg.sh").write_text(f"#!/bin/sh\ntouch {markers}/gpg\nexit 1\n")
    (tmp_path / "gpg.sh").chmod(0o755)
    control, root = make(tmp_path, "plain"), make(tmp_path, "ours")
    for repo in (control, root):
        hostile(repo, config.format(m=markers), attributes)
        (repo / "a.txt").write_text("two\n")
    plain_git(control, *plain)
    assert fired(markers), f"plain git ran nothing for {name}: the attack is not real here"
    clear(markers)
    ours(GitRepo.open(root))
    assert fired(markers) == []


@pytest.mark.attack("host-git")
def test_a_credential_helper_and_askpass_never_run_on_push(tmp_path, markers):
    class Unauthorized(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="x"')
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        root = make(tmp_path)
        url = f"http://127.0.0.1:{server.server_address[1]}/o/r.git"
        hostile(
            root,
            f"[credential]\n\thelper = !touch {markers}/helper\n[core]\n\taskPass = touch {markers}/askpass\n"
            f'[remote "origin"]\n\turl = {url}\n',
        )
        plain_git(root, "-c", "protocol.http.allow=always", "push", "origin", "main")
        assert fired(markers), "plain git asked no helper: the attack is not real here"
        clear(markers)
        with pytest.raises(gitops.GitError):
            push(GitRepo.open(root), "origin", "main", timeout=30)  # http is not a push transport of ours
        assert fired(markers) == []
    finally:
        server.shutdown()


@pytest.mark.attack("host-git")
def test_a_receive_pack_program_of_a_local_remote_never_runs(tmp_path, markers):
    root = make(tmp_path)
    remote = tmp_path / "origin.git"
    plain_git(tmp_path, "init", "-q", "--bare", str(remote), check=True)
    hostile(
        root,
        f'[remote "origin"]\n\turl = {remote}\n\treceivepack = touch {markers}/receivepack; git-receive-pack\n',
    )
    plain_git(root, "push", "origin", "main")
    assert fired(markers) == ["receivepack"]
    clear(markers)
    push(GitRepo.open(root), "origin", "main", timeout=30)
    assert fired(markers) == []
    assert "main" in plain_git(remote, "branch").stdout  # and the push itself worked


@pytest.mark.attack("host-git")
def test_an_included_config_outside_the_work_tree_is_vetted_too(tmp_path, markers):
    """actions/checkout v6 keeps its token in an includeIf'd file: includes work, and are vetted."""
    root = make(tmp_path)
    included = tmp_path / "runner-temp" / "credentials.config"
    included.parent.mkdir()
    included.write_text(f'[filter "x"]\n\tclean = "touch {markers}/included-clean; cat"\n')
    hostile(root, f'[includeIf "gitdir:{root}/.git"]\n\tpath = {included}\n', "* filter=x\n")
    (root / "a.txt").write_text("two\n")
    plain_git(root, "add", "-A")
    assert fired(markers) == ["included-clean"]
    clear(markers)
    repo = GitRepo.open(root)
    repo.run(["add", "-A"])
    assert fired(markers) == []
    included.write_text(
        f'[diff "x"]\n\ttextconv = "touch {markers}/changed-later; cat"\n'
    )  # changes are re-vetted
    (root / ".gitattributes").write_text("* diff=x\n")
    repo.run(["diff", "HEAD"])
    assert fired(markers) == []


@pytest.mark.attack("host-git")
@pytest.mark.parametrize(
    "arrange",
    [
        "include-in-work-tree",
        "includeif-in-work-tree",
        "git-file",
        "git-symlink",
        "commondir",
        "config-symlink",
        "config-hook",
    ],
)
def test_repositories_codeagent_refuses_say_why(tmp_path, arrange):
    root = make(tmp_path)
    outside = make(tmp_path, "other")
    git_dir = root / ".git"
    if arrange == "include-in-work-tree":
        hostile(root, "[include]\n\tpath = ../evil.cfg\n")
    elif arrange == "includeif-in-work-tree":
        hostile(root, f'[includeIf "onbranch:main"]\n\tpath = {root}/sub/evil.cfg\n')
    elif arrange == "git-file":
        os.rename(git_dir, tmp_path / "moved.git")
        (root / ".git").write_text(f"gitdir: {tmp_path / 'moved.git'}\n")
    elif arrange == "git-symlink":
        os.rename(git_dir, tmp_path / "moved.git")
        os.symlink(tmp_path / "moved.git", root / ".git")
    elif arrange == "commondir":
        (git_dir / "commondir").write_text(str(outside / ".git"))
    elif arrange == "config-symlink":
        (git_dir / "config").unlink()
        os.symlink(outside / ".git" / "config", git_dir / "config")
    elif arrange == "config-hook":
        hostile(root, '[hook "x"]\n\tcommand = touch /tmp/x\n\tevent = pre-commit\n')
    with pytest.raises(UnsafeRepository) as refused:
        GitRepo.open(root).run(["status"])
    assert str(refused.value) and "Traceback" not in str(refused.value)
    with pytest.raises(gitops.WorkflowError):
        gitops.open_repo(root)


@pytest.mark.attack("host-git")
def test_a_replaced_git_folder_is_noticed(tmp_path):
    root = make(tmp_path)
    repo = GitRepo.open(root)
    os.rename(root / ".git", tmp_path / "old.git")
    plain_git(root, "init", "-q")
    with pytest.raises(UnsafeRepository, match="replaced"):
        repo.run(["status"])


@pytest.mark.attack("host-git")
def test_core_worktree_elsewhere_is_ignored(tmp_path):
    root = make(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    hostile(root, f"[core]\n\tworktree = {elsewhere}\n")
    repo = GitRepo.open(root)
    (root / "a.txt").write_text("changed\n")
    repo.run(["checkout", "-q", "HEAD", "--", "a.txt"])
    assert (root / "a.txt").read_text() == "one\n" and list(elsewhere.iterdir()) == []


def nested(root: Path, markers: Path, tracked: bool) -> None:
    """A nested repository with its own hostile config, untracked or registered as a gitlink."""
    sub = root / "sub"
    sub.mkdir()
    plain_git(sub, "init", "-q", check=True)
    (sub / "s.txt").write_text("s\n")
    (sub / ".gitattributes").write_text("* filter=x diff=x\n")
    with (sub / ".git" / "config").open("a") as handle:
        handle.write(
            f"[core]\n\tfsmonitor = touch {markers}/nested-fsmonitor\n"
            f'[filter "x"]\n\tclean = "touch {markers}/nested-clean; cat"\n'
            f'[diff "x"]\n\ttextconv = "touch {markers}/nested-textconv; cat"\n'
        )
    plain_git(sub, "-c", "core.fsmonitor=false", "-c", "filter.x.clean=cat", "add", "-A", check=True)
    plain_git(sub, "-c", "core.fsmonitor=false", "commit", "-qm", "s", check=True)
    (sub / "s.txt").write_text("dirty\n")
    if tracked:
        head = plain_git(sub, "-c", "core.fsmonitor=false", "rev-parse", "HEAD", check=True).stdout.strip()
        plain_git(root, "update-index", "--add", "--cacheinfo", f"160000,{head},sub", check=True)


@pytest.mark.attack("host-git")
@pytest.mark.parametrize("tracked", [False, True], ids=["untracked", "gitlink"])
def test_nested_repositories_are_never_entered(tmp_path, markers, tracked):
    root = make(tmp_path)
    nested(root, markers, tracked)
    clear(markers)  # making the nested repository ran its own filter already
    if tracked:
        plain_git(root, "status")
        assert fired(markers), "plain git did not enter the nested repository: the attack is not real here"
        clear(markers)
    repo = gitops.open_repo(root)
    gitops.status_entries(repo)
    assert "sub/" not in gitops.changed_paths(repo, set())
    repo.run(["diff", "HEAD"])
    checkpoints = Checkpoints(root, tmp_path / "store")
    first = checkpoints.snapshot("one")
    (root / "b.txt").write_text("b\n")
    checkpoints.snapshot("two")
    checkpoints.diff(first)
    checkpoints.undo()
    (root / "a.txt").write_text("the user's own change\n")
    stash = gitops.stash_all(repo)
    gitops.restore_stash(repo, stash)
    assert fired(markers) == []


def test_the_catalogue_neutralises_every_listed_setting():
    """Each code-running setting of the catalogue, as an entry of a config, gets a neutral override;
    the ones an override cannot reset say what makes them harmless instead."""
    for pattern, value, what in gitpolicy.EXEC_SETTINGS:
        assert value in NEUTRAL, f"{pattern} ({what}) is overridden with {value!r}, which names a program"
        key = pattern.replace("*", "Some.Sub=name")
        assert gitpolicy.overrides([Entry(key, "touch /tmp/x")]) == [(key, value)], pattern
    assert all(value in NEUTRAL | {"never", "*", "no", "all"} for _, value in gitpolicy.FIXED)
    assert gitpolicy.overrides([Entry("user.name", "x"), Entry("remote.origin.url", "https://h/r")]) == []
    covered = {pattern for pattern, _, _ in gitpolicy.EXEC_SETTINGS} | {p for p, _, _ in gitpolicy.OTHERWISE}
    for known in (
        "remote.*.receivepack",
        "remote.*.uploadpack",
        "url.*.insteadof",
        "core.gitproxy",
        "core.worktree",
    ):
        assert known in covered
    assert gitpolicy.FIXED_ENV["GIT_ALLOW_PROTOCOL"] == "" and gitpolicy.FIXED_ENV["GIT_NO_LAZY_FETCH"] == "1"


@pytest.mark.attack("host-git")
def test_a_driver_name_holding_an_equals_sign_is_neutralised(tmp_path, markers):
    control, root = make(tmp_path, "plain"), make(tmp_path, "ours")
    for repo in (control, root):
        hostile(repo, f'[filter "a=b"]\n\tclean = "touch {markers}/equals; cat"\n', "* filter=a=b\n")
        (repo / "a.txt").write_text("two\n")
    plain_git(control, "add", "-A")
    assert fired(markers) == ["equals"]
    clear(markers)
    GitRepo.open(root).run(["add", "-A"])
    assert fired(markers) == []


@pytest.mark.attack("host-git")
def test_a_link_inside_the_git_folder_is_refused(tmp_path):
    """Git writes through links: a reflog linked to a shell's rc file would get a line a commit
    message controls, run at the next login."""
    root = make(tmp_path)
    rc = tmp_path / "bashrc"
    rc.write_text("# the user's shell settings\n")
    (root / ".git" / "logs" / "HEAD").unlink()
    os.symlink(rc, root / ".git" / "logs" / "HEAD")
    with pytest.raises(UnsafeRepository, match="symbolic link"):
        GitRepo.open(root)
    assert rc.read_text() == "# the user's shell settings\n"


@pytest.mark.attack("host-git")
def test_a_local_remotes_hooks_never_run_on_push(tmp_path, markers):
    root = make(tmp_path)
    remote = tmp_path / "origin.git"
    plain_git(tmp_path, "init", "-q", "--bare", str(remote), check=True)
    for hook in ("pre-receive", "update", "post-receive", "post-update", "reference-transaction"):
        (remote / "hooks" / hook).write_text(f"#!/bin/sh\ntouch {markers}/{hook}\n")
        (remote / "hooks" / hook).chmod(0o755)
    plain_git(root, "remote", "add", "origin", str(remote), check=True)
    push(GitRepo.open(root), "origin", "main", timeout=30)
    assert fired(markers) == []
    assert "main" in plain_git(remote, "branch").stdout


@pytest.mark.attack("host-git")
@pytest.mark.parametrize(
    "config",
    [
        '[remote "origin"]\n\turl = https://github.com/o/r.git\n\turl = https://evil.example/r.git\n',
        '[remote "origin"]\n\turl = https://github.com/o/r.git\n[url "ext::sh -c touch% {m}/ext"]\n'
        '\tpushInsteadOf = https://github.com/\n[protocol "ext"]\n\tallow = always\n',
        '[remote "origin"]\n\turl = ext::sh -c touch% {m}/ext2\n[protocol "ext"]\n\tallow = always\n',
        '[remote "origin"]\n\turl = ./inside.git\n',
        '[remote "origin"]\n\turl = evilhelper::foo\n',
    ],
    ids=["two-urls", "push-instead-of-ext", "ext-url", "inside-the-work-tree", "helper-transport"],
)
def test_pushes_codeagent_will_not_make(tmp_path, markers, config):
    root = make(tmp_path)
    hostile(root, config.format(m=markers))
    with pytest.raises(gitops.GitError):
        push(GitRepo.open(root), "origin", "main", timeout=30)
    assert fired(markers) == []


@pytest.mark.attack("host-git")
def test_a_submodule_whose_git_folder_is_elsewhere_is_refused(tmp_path):
    """A checked-out gitlink whose .git file points at another repository of the machine: git
    would refresh (write) that repository's index when it asks the submodule for changes."""
    root = make(tmp_path)
    victim = make(tmp_path, "victim")
    (root / "sub").mkdir()
    head = plain_git(victim, "rev-parse", "HEAD", check=True).stdout.strip()
    plain_git(root, "update-index", "--add", "--cacheinfo", f"160000,{head},sub", check=True)
    (root / "sub" / ".git").write_text(f"gitdir: {victim / '.git'}\n")
    index = (victim / ".git" / "index").read_bytes()
    with pytest.raises(UnsafeRepository, match="elsewhere"):
        GitRepo.open(root).run(["status"])
    assert (victim / ".git" / "index").read_bytes() == index
