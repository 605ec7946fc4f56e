"""The repository's ``.git/config`` as a sandboxed command sees it: without credentials.

``actions/checkout`` keeps the job's token in ``.git/config`` (``http.<url>.extraheader``),
and clones made with a token keep it in the remote's URL. Inside the sandbox ``.git/config``
is overlaid (read-only) with ``view(config)``: the same entries, rendered by
``gitconfig.render_config``, less every entry that ``gitconfig.carries_credential`` flags,
and with the ``user:password@`` part removed from remote URLs, so ``git remote -v`` and
``git log`` still work inside and show no secret.

Views are written once per distinct config content into a private folder of this process
(``mkdtemp``, mode 0700, its name holding the pid) and reused while the config is unchanged;
the folder is removed when the process exits (``atexit``). A process killed by a signal leaves
its folder behind (a view holds no credential, so it is clutter, not a leak): the next process
to make one removes the folders of this user whose process is gone (``sweep``).

A config git cannot parse is shown as an empty file (git inside could not read it either).

The Landlock fallback cannot overlay a file, so there ``.git/config`` is readable as it is;
``credential_names(git_dir, work_tree)`` says which kinds of credential the config and the
files it includes hold, for a front end to refuse such a run (``agent.gitops``).

Limits: a credential stored under a key no rule knows stays in the view (the output scan
of ``fix`` is the next layer); other files of ``.git`` (reflog messages, ``FETCH_HEAD``)
are shown as they are.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

from codeagent.sandbox.gitconfig import (
    URL_NAMES,
    Entry,
    GitConfigError,
    carries_credential,
    read_config,
    render_config,
    strip_userinfo,
)
from codeagent.sandbox.gitlayout import config_files

_lock = threading.Lock()
_folder: Path | None = None
_views: dict[str, Path] = {}


def without_credentials(entries: list[Entry]) -> list[Entry]:
    kept = []
    for entry in entries:
        if carries_credential(entry) or entry.section in ("include", "includeif"):
            if f"{entry.section}.{entry.name}" in URL_NAMES and entry.section == "remote":
                kept.append(Entry(entry.key, strip_userinfo(entry.value or "")))
            continue
        kept.append(entry)
    return kept


def credential_names(git_dir: Path, work_tree: Path) -> list[str]:
    """``section.name`` of each kind of credential in the repository's config files (the config
    and every file it includes), e.g. ``http.extraheader``; never the value or the URL holding it."""
    _, entries = config_files(git_dir, work_tree)
    return sorted({f"{e.section}.{e.name}" for e in entries if carries_credential(e)})


PREFIX = "codeagent-gitview-"


def sweep(temp: Path | None = None) -> list[Path]:
    """Remove the view folders of this user's processes that are gone; returns them."""
    removed = []
    root = Path(temp or tempfile.gettempdir())
    for entry in os.scandir(root):
        pid = entry.name[len(PREFIX) :].split("-", 1)[0]
        if not entry.name.startswith(PREFIX) or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            os.kill(int(pid), 0)
            continue  # its process is alive (or the pid was reused: then kept, harmlessly)
        except ProcessLookupError:
            pass
        except (PermissionError, FileNotFoundError):
            continue
        if entry.is_dir(follow_symlinks=False) and info.st_uid == os.getuid():
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def view(config: Path) -> Path | None:
    """A credential-free copy of ``config`` to mount over it; None when there is no such file."""
    global _folder
    try:
        data = config.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    digest = hashlib.sha256(data).hexdigest()
    with _lock:
        if digest in _views and _views[digest].is_file():
            return _views[digest]
        if _folder is None or not _folder.is_dir():
            sweep()
            _folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
            atexit.register(shutil.rmtree, _folder, ignore_errors=True)
        path = _folder / f"{digest}.config"
        tmp = path.with_suffix(".tmp")
        try:
            text = render_config(without_credentials(read_config(config)))
        except GitConfigError:
            text = ""  # git cannot read it either; showing nothing of it shows no secret
        tmp.write_text(text)
        os.replace(tmp, path)
        _views[digest] = path
        return path
