"""Landlock through its three system calls (ctypes): confining a process's own file and TCP access.

Landlock needs no namespaces and no privilege, so it works where bubblewrap cannot (Docker's
default seccomp profile, Ubuntu's AppArmor restriction on user namespaces). A process builds a
ruleset, adds rules and restricts itself; the restriction holds for it and everything it
starts, for good, and cannot be undone.

- ``abi()``: the ABI the kernel offers (0: none). 1 files; 2 ``REFER`` (moving a file between
  folders, otherwise always refused); 3 ``TRUNCATE``; 4 TCP ``bind``/``connect``; 5 device
  ``ioctl``; 6 scoping: abstract unix sockets and signals to processes outside the domain; 7
  audit logging (unused here).
- ``Rule``: a path and what is allowed beneath it. Rules only ever allow: what no rule allows
  is refused, for every access right the ruleset handles (all those of the ABI here).
- ``restrict(rules, deny_tcp, scopes)``: builds and applies the ruleset to the calling
  process (which must have set ``no_new_privs``); raises ``OSError`` when the kernel refuses.

Limits (the kernel's, not ours): rules are per hierarchy, so a right given on a folder holds
for everything beneath it and nothing inside can be carved out; path lookup, ``stat``,
``chmod``, ``chown`` and ``utime`` are not controlled; UDP, raw and unix sockets are not
covered by the network rights (seccomp does that, ``seccomp.py``); a file descriptor opened
before restricting keeps its access.

Standard library only: ``_launch.py`` loads this file by path in a bare interpreter.
"""

from __future__ import annotations

import ctypes
import os
import platform
import stat
from dataclasses import dataclass

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH, RULE_NET_PORT = 1, 2

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

# The filesystem rights each ABI knows (a ruleset may handle only those).
FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
FS_LATEST = (1 << 16) - 1  # ABI 5 and later

READ = EXECUTE | READ_FILE | READ_DIR
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # the only ones a file's rule may hold
WRITE = FS_LATEST & ~(MAKE_CHAR | MAKE_BLOCK | IOCTL_DEV)  # everything but making or driving devices


class RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


@dataclass(frozen=True, slots=True)
class Rule:
    path: str
    access: int  # rights allowed beneath ``path`` (for a file: those of FILE_RIGHTS only)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def abi() -> int:
    """The Landlock ABI version the kernel offers; 0 when it has none (or it is disabled)."""
    if platform.system() != "Linux":
        return 0
    version = _libc().syscall(
        SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION)
    )
    return max(0, int(version))


def handled_fs(version: int) -> int:
    return FS_BY_ABI.get(version, FS_LATEST)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock: {what}: {os.strerror(err)}")
    return result


def _add_path(libc: ctypes.CDLL, ruleset: int, rule: Rule, handled: int) -> None:
    fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
    try:
        access = rule.access & handled
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= FILE_RIGHTS
        attr = PathBeneathAttr(access, fd)
        _check(
            libc.syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(attr), 0),
            f"rule for {rule.path}",
        )
    finally:
        os.close(fd)


def restrict(rules: list[Rule], *, deny_tcp: bool, scopes: int, version: int | None = None) -> int:
    """Confine this process (``no_new_privs`` must be set) to ``rules``; the ABI used.

    ``deny_tcp`` refuses every TCP bind and connect (ABI 4 on; ignored before); ``scopes``
    (``SCOPE_*``, ABI 6 on) cuts abstract unix sockets and signals off from outside processes."""
    version = abi() if version is None else version
    if version < 1:
        raise OSError(0, "landlock: the kernel offers no Landlock")
    libc = _libc()
    handled = handled_fs(version)
    attr = RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if deny_tcp and version >= 4 else 0)
    attr.scoped = scopes if version >= 6 else 0
    size = ctypes.sizeof(RulesetAttr) if version >= 6 else (16 if version >= 4 else 8)
    ruleset = _check(
        libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0), "create ruleset"
    )
    try:
        for rule in rules:
            _add_path(libc, ruleset, rule, handled)
        _check(libc.syscall(SYS_RESTRICT_SELF, ruleset, 0), "restrict self")
    finally:
        os.close(ruleset)
    return version
