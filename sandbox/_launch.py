"""Confine this process, then become the command: ``python -I -S _launch.py POLICY -- ARGV...``.

The Landlock fallback's launcher (``fallback.py`` writes POLICY, a JSON object: ``rules``
as ``[path, rights]`` pairs, ``network``, ``seccomp``, ``abi``). It runs as the command's
process, below the supervisor (``_reaper.py``, which already gave it a session of its own and
its rlimits), and in order:

1. drops every capability: the bounding set (where it holds ``CAP_SETPCAP``), the ambient
   set, then effective, permitted and inheritable (``capset``), so root keeps none;
2. sets ``no_new_privs`` (no set-user-ID or file capabilities across ``execve``; with it,
   root cannot regain capabilities by executing a program either);
3. restricts itself with Landlock (``landlock.py``): the rules, TCP denied without network,
   abstract unix sockets (without network) and signals scoped to the sandbox;
4. installs the seccomp filter (``seccomp.py``) when asked;
5. asks for SIGKILL when the supervisor dies (``PR_SET_PDEATHSIG``), checks it is still
   there, and executes ARGV.

Any step failing ends it with exit status 126 and one line on stderr: a command never runs
less confined than the caller recorded. ``landlock.py`` and ``seccomp.py`` are loaded by path
(standard library only), like this file, which keeps start-up to a bare interpreter's.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import signal
import sys
from types import ModuleType

HERE = os.path.dirname(os.path.abspath(__file__))
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522
EXIT_NOT_CONFINED = 126


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"_codeagent_launch_{name}", os.path.join(HERE, f"{name}.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _prctl(libc: ctypes.CDLL, option: int, value: int, arg3: int = 0) -> int:
    return libc.prctl(
        option, ctypes.c_ulong(value), ctypes.c_ulong(arg3), ctypes.c_ulong(0), ctypes.c_ulong(0)
    )


def _fail(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def drop_privileges(libc: ctypes.CDLL) -> None:
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        last = int(handle.read())
    for cap in range(last + 1):
        _prctl(libc, PR_CAPBSET_DROP, cap)  # refused without CAP_SETPCAP: the rest still holds
    _prctl(libc, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    data = (CapData * 2)()
    if libc.capset(ctypes.byref(CapHeader(CAPABILITY_VERSION_3, 0)), data) != 0:
        _fail("capset")
    if _prctl(libc, PR_SET_NO_NEW_PRIVS, 1) != 0:
        _fail("no_new_privs")


def confine(policy: dict[str, object], libc: ctypes.CDLL) -> None:
    landlock, seccomp = _load("landlock"), _load("seccomp")
    drop_privileges(libc)
    network = bool(policy["network"])
    scopes = landlock.SCOPE_SIGNAL | (0 if network else landlock.SCOPE_ABSTRACT_UNIX_SOCKET)
    rules = [landlock.Rule(str(path), int(access)) for path, access in policy["rules"]]  # type: ignore[attr-defined]
    landlock.restrict(rules, deny_tcp=not network, scopes=scopes, version=int(policy["abi"]))  # type: ignore[call-overload]
    if policy["seccomp"]:
        seccomp.install(seccomp.program(network))


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: _launch.py POLICY -- ARGV...\n")
        return 2
    policy, argv = json.loads(args[0]), args[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    supervisor = os.getppid()
    try:
        confine(policy, libc)
        if _prctl(libc, PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            _fail("parent death signal")
    except OSError as err:
        sys.stderr.write(f"codeagent sandbox: cannot confine the command ({err}); it did not run\n")
        return EXIT_NOT_CONFINED
    if os.getppid() != supervisor:
        return 128 + signal.SIGKILL  # the supervisor died before the death signal was armed
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        sys.stderr.write(f"cannot run {argv[0]}: {err.strerror}\n")
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
