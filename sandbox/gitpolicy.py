"""Which git settings run programs, and the values that stop them: the catalogue behind ``git.py``.

codeagent's own git calls read no system or global config (``GIT_CONFIG_NOSYSTEM``,
``GIT_CONFIG_GLOBAL=/dev/null``, no ``HOME``), so the one config they read that the workspace
controls is the repository's own ``.git/config`` (an untrusted checkout brings its own). Its
entries are read as data (``gitconfig.read_config``) and:

- ``refusal(entries)`` names what codeagent will not work with: ``hook.*`` (config-defined
  hooks of newer git, which ``core.hooksPath`` does not switch off). Included files
  (``include.path``, ``includeIf.*.path``; ``actions/checkout`` v6 keeps its token in one)
  and ``config.worktree`` are read and vetted with the config by ``git.py``, which refuses
  an include of a file inside the work tree (commands can change it);
- ``overrides(entries)`` gives, for every entry whose key is in ``EXEC_SETTINGS``, a ``-c``
  setting with a neutral value; ``-c`` wins over every config file, and git hands it on to
  the git processes it starts (``GIT_CONFIG_PARAMETERS``);
- ``FIXED`` is passed on every call whatever the config says: hooks, fsmonitor, pagers,
  editors, external diff and merge programs off, no submodule recursion (a nested
  repository's own config would otherwise be read, and it is not vetted), no transport
  (``protocol.allow=never``; ``push`` allows https and ssh only), no background maintenance.

Attributes (``.gitattributes`` in the work tree, ``.git/info/attributes``) only *select*
drivers (``filter=x``, ``diff=x``, ``merge=x``); with every driver defined in the config
neutralised and no other config read, a selected driver has no program to run.

The catalogue was built from git's documentation (``Documentation/config/*``), every entry
with what it runs; ``tests/sandbox/test_host_git.py`` checks each entry against git itself
(a hostile setting runs a marker under plain git, and not under ours).
"""

from __future__ import annotations

import re

from codeagent.sandbox.gitconfig import Entry

# Passed on every host git call. Values here never name a program of the workspace's choosing.
FIXED: tuple[str, ...] = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.pager=cat",
    "core.editor=true",
    "sequence.editor=true",
    "core.askPass=",
    "core.sshCommand=false",
    "core.gitProxy=",
    "core.attributesFile=/dev/null",
    "core.alternateRefsCommand=",
    "credential.helper=",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "tag.forceSignAnnotated=false",
    "push.gpgSign=false",
    "gpg.program=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "submodule.recurse=false",
    "diff.ignoreSubmodules=all",
    "status.submoduleSummary=false",
    "fetch.recurseSubmodules=false",
    "push.recurseSubmodules=no",
    "protocol.allow=never",
    "uploadpack.packObjectsHook=",
    "safe.directory=*",
)
# For push only: the transports a push may use (no file://, ext::, or helper transports).
PUSH_PROTOCOLS: tuple[str, ...] = ("protocol.https.allow=always", "protocol.ssh.allow=always")

# (key pattern, neutral value, what the setting runs). In a pattern ``*`` stands for one
# subsection, which may itself contain dots; section and name match case-insensitively.
EXEC_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("core.fsmonitor", "false", "hook program asked for changed files on every index refresh"),
    ("core.hookspath", "/dev/null", "folder of hooks run by commit, checkout, push, ..."),
    ("core.pager", "cat", "pager for output"),
    ("pager.*", "false", "per-command pager program"),
    ("core.editor", "true", "editor for messages"),
    ("sequence.editor", "true", "editor for rebase todo lists"),
    ("core.askpass", "", "program asked for credentials"),
    ("core.sshcommand", "false", "ssh program for ssh transports"),
    ("ssh.variant", "ssh", "how the ssh program is called"),
    ("core.gitproxy", "", "proxy program for git:// transports"),
    ("core.alternaterefscommand", "", "program listing an alternate's refs"),
    ("core.attributesfile", "/dev/null", "attributes selecting drivers, from any file"),
    ("credential.helper", "", "credential helper programs"),
    ("credential.*.helper", "", "credential helper programs for one URL"),
    ("diff.external", "true", "external diff program (our diffs pass --no-ext-diff as well)"),
    ("diff.*.command", "true", "external diff program of a diff driver"),
    ("diff.*.textconv", "cat", "text conversion program of a diff driver (cat: the text as it is)"),
    ("merge.*.driver", "false", "merge program of a merge driver"),
    ("filter.*.clean", "", "clean filter program, run when a file is added"),
    ("filter.*.smudge", "", "smudge filter program, run when a file is checked out"),
    ("filter.*.process", "", "long-running filter program"),
    ("filter.*.required", "false", "a missing filter is an error"),
    ("gpg.program", "false", "signing program"),
    ("gpg.*.program", "false", "signing program of a format (openpgp, x509, ssh)"),
    ("gpg.ssh.defaultkeycommand", "", "program naming the ssh signing key"),
    ("commit.gpgsign", "false", "signing every commit"),
    ("tag.gpgsign", "false", "signing every tag"),
    ("push.gpgsign", "false", "signing pushes"),
    ("remote.*.vcs", "", "remote helper program git-remote-<vcs>"),
    ("remote.*.proxy", "", "proxy for one remote"),
    ("submodule.*.update", "none", "'!command' run by submodule update"),
    ("interactive.difffilter", "", "filter program for add -p"),
    ("tar.*.command", "false", "compressor program of git archive"),
    ("web.browser", "", "browser program"),
    ("browser.*.cmd", "false", "browser program"),
    ("browser.*.path", "false", "browser program"),
    ("man.*.cmd", "false", "man viewer program"),
    ("man.*.path", "false", "man viewer program"),
    ("help.browser", "", "browser program"),
    ("mergetool.*.cmd", "false", "merge tool program"),
    ("mergetool.*.path", "false", "merge tool program"),
    ("difftool.*.cmd", "false", "diff tool program"),
    ("difftool.*.path", "false", "diff tool program"),
    ("sendemail.smtpserver", "", "sendmail-like program"),
    ("sendemail.sendmailcmd", "false", "sendmail program"),
    ("sendemail.tocmd", "false", "program listing recipients"),
    ("sendemail.cccmd", "false", "program listing recipients"),
    ("sendemail.*.smtpserver", "", "sendmail-like program of an identity"),
    ("sendemail.*.sendmailcmd", "false", "sendmail program of an identity"),
    ("sendemail.*.tocmd", "false", "program listing recipients of an identity"),
    ("sendemail.*.cccmd", "false", "program listing recipients of an identity"),
    ("uploadpack.packobjectshook", "", "program run instead of pack-objects"),
    ("gc.auto", "0", "background git gc"),
    ("maintenance.auto", "false", "background git maintenance"),
    ("alias.*", "", "alias commands, '!' runs a shell command"),
)
# Settings a later ``-c`` cannot override (git takes the first of several values), so the command
# line does: (key pattern, how, what the setting runs).
COMMAND_LINE: tuple[tuple[str, str, str], ...] = (
    ("remote.*.receivepack", "push passes --receive-pack=git-receive-pack", "program run for pushes"),
    ("remote.*.uploadpack", "codeagent fetches from no named remote", "program run for fetches"),
)
REFUSED: tuple[tuple[str, str], ...] = (
    ("hook.*", "configures hook programs outside core.hooksPath (newer git)"),
)


def _regex(pattern: str) -> re.Pattern[str]:
    section, _, rest = pattern.partition(".")
    if rest.startswith("*."):
        body = re.escape(section) + r"\..+\." + re.escape(rest[2:])
    elif rest == "*":
        body = re.escape(section) + r"\..+"
    else:
        body = re.escape(pattern)
    return re.compile(body + r"\Z", re.IGNORECASE | re.DOTALL)


_EXEC = tuple((_regex(pattern), value) for pattern, value, _ in EXEC_SETTINGS)
_REFUSED = tuple((_regex(pattern), why) for pattern, why in REFUSED)


def _matches(regex: re.Pattern[str], entry: Entry) -> bool:
    # Section and name are lower-cased by git; a subsection keeps its case and may hold anything.
    return regex.match(entry.key) is not None


def refusal(entries: list[Entry]) -> str | None:
    """Why codeagent will not run git on a repository with this config, or None."""
    for entry in entries:
        for regex, why in _REFUSED:
            if _matches(regex, entry):
                return f"its git config sets {entry.key}, which {why}"
    return None


def overrides(entries: list[Entry]) -> list[str]:
    """``-c`` settings neutralising every code-running entry of the config, in file order."""
    found: dict[str, str] = {}
    for entry in entries:
        for regex, value in _EXEC:
            if _matches(regex, entry):
                found[entry.key] = value
                break
    return [f"{key}={value}" for key, value in found.items()]
