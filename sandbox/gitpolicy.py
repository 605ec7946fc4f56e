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
- ``overrides(entries)`` gives, for every entry whose key is in ``EXEC_SETTINGS``, a setting
  with a neutral value, passed through ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n`` (command-line
  scope: it wins over every config file, git hands it on to the git processes it starts, and
  unlike ``-c`` it takes a driver name holding ``=``);
- ``OTHERWISE`` lists the settings an override cannot reset (git takes the first value, or
  they are lists) and what makes each harmless instead; ``FIXED_ENV`` holds those switches;
- ``FIXED`` is passed on every call whatever the config says: hooks, fsmonitor, pagers,
  editors, external diff and merge programs off, no submodule recursion (a nested
  repository's own config would otherwise be read, and it is not vetted), no transport
  (``protocol.allow=never``; ``push`` allows https and ssh only), no background maintenance.

Attributes (``.gitattributes`` in the work tree, ``.git/info/attributes``) only *select*
drivers (``filter=x``, ``diff=x``, ``merge=x``); with every driver defined in the config
neutralised and no other config read, a selected driver has no program to run.

The catalogue was built from git's documentation (``Documentation/config/*``), every entry
with what it runs, and checked against git 2.39 command by command (status, add, commit,
diff, checkout, stash, push...: which settings each reaches, which neutral value stops it);
``tests/sandbox/test_host_git.py`` repeats the ones codeagent's own commands reach (a hostile
setting runs a marker under plain git, and not under ours).
"""

from __future__ import annotations

import re

from codeagent.sandbox.gitconfig import Entry

Setting = tuple[str, str]  # (key, value): passed through GIT_CONFIG_COUNT, so a key may hold "="

# Passed on every host git call, before the per-entry overrides (which come later and win).
FIXED: tuple[Setting, ...] = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.untrackedCache", "false"),
    ("core.pager", "cat"),
    ("core.editor", ":"),
    ("sequence.editor", ":"),
    ("core.askPass", ""),
    ("core.sshCommand", "false"),
    ("core.attributesFile", "/dev/null"),
    ("core.alternateRefsCommand", ""),
    ("core.useReplaceRefs", "false"),
    ("core.sharedRepository", "umask"),
    ("credential.helper", ""),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("tag.forceSignAnnotated", "false"),
    ("push.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("format.pretty", "medium"),
    ("gpg.program", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("submodule.recurse", "false"),
    ("diff.ignoreSubmodules", "all"),
    ("diff.submodule", "short"),
    ("status.submoduleSummary", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("push.recurseSubmodules", "no"),
    ("http.proxy", ""),
    ("uploadpack.packObjectsHook", ""),
    ("safe.directory", "*"),
)
# Set on every call: no transport unless a call allows one (GIT_ALLOW_PROTOCOL beats any
# protocol.*.allow in the config), no lazy fetch of missing objects, no proxy program (core.gitProxy
# takes the first of several values, so a later -c cannot reset it), no replace refs.
FIXED_ENV: dict[str, str] = {
    "GIT_ALLOW_PROTOCOL": "",
    "GIT_NO_LAZY_FETCH": "1",
    "GIT_PROXY_COMMAND": "",
    "GIT_NO_REPLACE_OBJECTS": "1",
    "GIT_EDITOR": ":",
    "GIT_SEQUENCE_EDITOR": ":",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_PROTOCOL_FROM_USER": "0",
}
# The transports a push may use (no file://, ext::, git:// or helper transports).
PUSH_PROTOCOLS = ("https", "ssh")

# (key pattern, neutral value, what the setting runs). In a pattern ``*`` stands for one
# subsection, which may itself contain dots; section and name match case-insensitively.
EXEC_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("core.fsmonitor", "false", "hook program asked for changed files on every index refresh"),
    ("core.hookspath", "/dev/null", "folder of hooks run by commit, checkout, push, ..."),
    ("core.pager", "cat", "pager for output"),
    ("pager.*", "false", "per-command pager program"),
    ("core.editor", ":", "editor for messages"),
    ("sequence.editor", ":", "editor for rebase todo lists"),
    ("core.askpass", "", "program asked for credentials"),
    ("core.sshcommand", "false", "ssh program for ssh transports"),
    ("ssh.variant", "ssh", "how the ssh program is called"),
    ("core.alternaterefscommand", "", "program listing an alternate's refs"),
    ("core.attributesfile", "/dev/null", "attributes selecting drivers, from any file"),
    ("credential.helper", "", "credential helper programs"),
    ("credential.*.helper", "", "credential helper programs for one URL"),
    ("diff.external", "true", "external diff program (our diffs pass --no-ext-diff as well)"),
    ("diff.*.command", "true", "external diff program of a diff driver"),
    ("diff.*.textconv", "cat", "text conversion program of a diff driver (cat: the text as it is)"),
    ("merge.*.driver", "false", "merge program of a merge driver (false: an ordinary conflict)"),
    ("merge.*.recursive", "binary", "names the driver used for inner merges"),
    ("merge.verifysignatures", "false", "merges verify signatures with gpg"),
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
    ("log.showsignature", "false", "log verifies signatures with gpg"),
    ("format.pretty", "medium", "a default format with %G? makes log run gpg"),
    ("user.signingkey", "", "ssh signing: a key file handed to ssh-keygen"),
    ("remote.*.vcs", "", "remote helper program git-remote-<vcs>"),
    ("remote.*.proxy", "", "proxy for one remote"),
    ("submodule.*.update", "none", "'!command' run by submodule update"),
    ("interactive.difffilter", "", "filter program for add -p"),
    ("trailer.*.command", "", "trailer program (commit --trailer)"),
    ("trailer.*.cmd", "", "trailer program (commit --trailer)"),
    ("imap.tunnel", "", "tunnel program of imap-send"),
    ("guitool.*.cmd", "", "git gui tool program"),
    ("instaweb.httpd", "", "web server program of instaweb"),
    ("instaweb.browser", "", "browser program of instaweb"),
    ("man.viewer", "", "man viewer program"),
    ("diff.tool", "", "difftool program name"),
    ("merge.tool", "", "mergetool program name"),
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
    ("sendemail.headercmd", "false", "program adding headers"),
    ("sendemail.*.smtpserver", "", "sendmail-like program of an identity"),
    ("sendemail.*.sendmailcmd", "false", "sendmail program of an identity"),
    ("sendemail.*.tocmd", "false", "program listing recipients of an identity"),
    ("sendemail.*.cccmd", "false", "program listing recipients of an identity"),
    ("uploadpack.packobjectshook", "", "program run instead of pack-objects"),
    ("gc.auto", "0", "background git gc"),
    ("maintenance.auto", "false", "background git maintenance"),
    ("gc.recentobjectshook", "", "program run by gc and repack (newer git)"),
    ("protocol.allow", "never", "transport policy (GIT_ALLOW_PROTOCOL decides anyway)"),
    ("protocol.*.allow", "never", "per-transport policy, e.g. ext:: (GIT_ALLOW_PROTOCOL decides anyway)"),
    ("http.proxy", "", "network proxy"),
    ("http.*.proxy", "", "network proxy for a URL"),
    ("submodule.*.ignore", "all", "a submodule never ignored would be entered by status and diff"),
    ("diff.submodule", "short", "=diff runs git diff inside each submodule"),
    ("diff.ignoresubmodules", "all", "status and diff enter each submodule"),
    ("status.submodulesummary", "false", "status runs git submodule summary"),
    ("submodule.recurse", "false", "checkout recurses into submodules"),
    ("push.recursesubmodules", "no", "push runs git inside submodules"),
    ("fetch.recursesubmodules", "false", "fetch recurses into submodules"),
    ("diff.orderfile", "/dev/null", "a file read by diff"),
    ("mailmap.file", "/dev/null", "a file read by log"),
    ("core.sharedrepository", "umask", "world-writable objects and index"),
    ("core.usereplacerefs", "false", "refs/replace silently substitute objects"),
    ("alias.*", "", "alias commands, '!' runs a shell command"),
)
# Settings an override cannot reset (git takes the first of several values, or a list), made
# harmless otherwise: (key pattern, how, what the setting runs).
OTHERWISE: tuple[tuple[str, str, str], ...] = (
    ("remote.*.receivepack", "push passes --receive-pack", "program run for pushes"),
    ("remote.*.uploadpack", "GIT_NO_LAZY_FETCH; codeagent fetches from no remote", "program run for fetches"),
    ("remote.*.url", "push refuses a remote with several URLs", "list: a push goes to each"),
    ("remote.*.pushurl", "push refuses a remote with several URLs", "list: a push goes to each"),
    ("remote.*.vcs", "GIT_ALLOW_PROTOCOL (no helper transports)", "remote helper git-remote-<vcs>"),
    ("url.*.insteadof", "push refuses a repository that rewrites URLs", "rewrites URLs, local paths too"),
    ("url.*.pushinsteadof", "push refuses a repository that rewrites URLs", "rewrites push URLs"),
    ("core.gitproxy", "GIT_PROXY_COMMAND set empty; no git:// transport", "proxy program for git://"),
    ("core.worktree", "GIT_WORK_TREE always given", "a work tree elsewhere"),
    ("extensions.partialclone", "GIT_NO_LAZY_FETCH", "lazy fetches of missing objects"),
    ("remote.*.promisor", "GIT_NO_LAZY_FETCH", "lazy fetches of missing objects"),
    ("trace2.*", "read from system and global config only, which are off", "trace files and sockets"),
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


def overrides(entries: list[Entry]) -> list[Setting]:
    """Settings neutralising every code-running entry of the config, in file order."""
    found: dict[str, str] = {}
    for entry in entries:
        for regex, value in _EXEC:
            if _matches(regex, entry):
                found[entry.key] = value
                break
    return list(found.items())
