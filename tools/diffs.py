"""Text files as the file tools see them: reading, lines, unified diffs and safe writes.

Reading: a file is text when its first 8 KiB hold no NUL byte and it decodes as UTF-8,
tolerating a few stray bytes (at most 1% of the file, e.g. one Latin-1 character in a
comment). Stray bytes are kept as lone surrogates (``surrogateescape``) so an edit writes
them back unchanged; ``printable`` turns them into U+FFFD for anything shown to the model.
Files above ``MAX_TEXT_BYTES`` are refused rather than paged from disk.

Lines keep their own endings and split only at ``\\n`` (``str.splitlines`` also splits at
form feeds and other separators, which would disagree with editors, git and ripgrep).

Writing: ``atomic_write`` writes a temporary file beside the target, fsyncs it and
``os.replace``s it over the target, keeping an existing file's mode (a new file gets the
umask's). ``refuse_protected`` keeps the file tools away from the same names the sandbox
mounts read-only (``sandbox.protect.PROTECTED``: ``.git``, CI configuration, ...): those
run code outside the sandbox later, so an edit tool must not be a way around it.
"""

from __future__ import annotations

import difflib
import os
import re
import secrets
import stat
from pathlib import Path

from codeagent.sandbox.protect import PROTECTED
from codeagent.tools.base import ToolError

PROBE_BYTES = 8192
MAX_TEXT_BYTES = 8 * 1024 * 1024
MAX_STRAY_RATIO = 0.01
_SURROGATE = re.compile("[\ud800-\udfff]")


class BinaryFile(ToolError):
    """The file is not text; the message says why."""


def split_lines(text: str) -> list[str]:
    """Lines with their endings; a final newline does not start another line."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def body(line: str) -> str:
    """A line without its ``\\n`` or ``\\r\\n``."""
    if line.endswith("\r\n"):
        return line[:-2]
    return line[:-1] if line.endswith("\n") else line


def dominant_eol(text: str) -> str:
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf * 2 >= text.count("\n") else "\n"


def printable(text: str) -> str:
    """Text safe to show: undecodable bytes (lone surrogates) become U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def stray_bytes(text: str) -> int:
    return len(_SURROGATE.findall(text))


def decode(data: bytes, rel: str) -> str:
    """UTF-8 text with stray bytes kept as surrogates, or ``BinaryFile``."""
    if b"\x00" in data[:PROBE_BYTES]:
        raise BinaryFile(f"{rel} is a binary file (NUL bytes near its start); it cannot be used as text")
    text = data.decode("utf-8", errors="surrogateescape")
    stray = stray_bytes(text)
    if stray > max(1, len(data) * MAX_STRAY_RATIO):
        raise BinaryFile(f"{rel} is not UTF-8 text ({stray} of its {len(data)} bytes are invalid)")
    return text


def read_text(path: Path, rel: str) -> str:
    """The text of a file the model named, or a ToolError saying why it cannot be had."""
    if path.is_dir():
        raise ToolError(f"{rel} is a directory; use list_files to see what is in it")
    if not path.is_file():
        raise ToolError(f"{rel} does not exist")
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise ToolError(
            f"{rel} has {size} bytes, more than the {MAX_TEXT_BYTES} the file tools handle; "
            "use search to find the lines you need"
        )
    return decode(path.read_bytes(), rel)


def unified_diff(rel_path: str, before: str | None, after: str | None) -> str:
    """A git-style diff; ``None`` on either side means the file does not exist there."""
    old = "/dev/null" if before is None else f"a/{rel_path}"
    new = "/dev/null" if after is None else f"b/{rel_path}"
    rows = difflib.unified_diff(split_lines(before or ""), split_lines(after or ""), old, new)
    out = []
    for row in rows:
        out.append(row if row.endswith("\n") else row + "\n\\ No newline at end of file\n")
    return printable("".join(out))


def refuse_protected(rel: str) -> None:
    """ToolError for a path the file tools must not create, change or delete."""
    parts = rel.casefold().split("/")
    if ".git" in parts:
        raise ToolError(f"{rel} is inside a .git folder; the file tools do not change git's own files")
    if parts[0] in PROTECTED:
        raise ToolError(f"{rel} is under {parts[0]}, which is protected from changes by the agent")


def check_creatable(path: Path, rel: str) -> None:
    """ToolError when a missing file cannot be created because an ancestor is not a folder."""
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ToolError(f"cannot create {rel}: {ancestor.name} on its path is a file, not a folder")


def file_mode(path: Path) -> int | None:
    return stat.S_IMODE(path.stat().st_mode) if path.is_file() else None


def atomic_write(path: Path, text: str, mode: int | None = None) -> None:
    """Replace ``path`` with ``text`` in one step; keep its mode, or set ``mode`` if given."""
    try:
        data = text.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError as err:
        raise ToolError(f"the text has a character that cannot be written as UTF-8 ({err.reason})") from err
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = mode if mode is not None else file_mode(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # O_EXCL with 0o666 lets the umask decide a new file's mode, as an editor's save would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
