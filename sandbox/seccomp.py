"""A seccomp filter, built by hand as classic BPF and installed with ``prctl``: the system calls
a confined command never needs.

``program(network)`` is the filter for this machine's architecture (x86-64 or AArch64, the
ones whose numbers are written out here; ``supported()`` says whether this one is):

- a call made under another architecture's convention (32-bit calls on x86-64) kills the
  process, and x32 calls (numbers from ``0x40000000``) fail, so the numbers below cannot be
  sidestepped;
- ``EPERM`` for what escapes or reaches into the kernel or other processes: ``ptrace``,
  ``process_vm_*``, ``pidfd_getfd``, mounting (old and new API), ``pivot_root``, ``chroot``,
  ``unshare``, ``setns``, the key ring, ``bpf``, ``perf_event_open``, ``userfaultfd``,
  ``io_uring`` (its operations would bypass this filter), modules, ``kexec``, ``reboot``,
  swap, accounting, clocks, host names, ``open_by_handle_at``, ``fanotify_init``, ``syslog``;
- ``clone`` with any ``CLONE_NEW*`` flag fails with ``EPERM`` (Docker's default profile does
  the same), ``clone3`` with ``ENOSYS`` (its flags are in memory, out of a filter's reach;
  libc then falls back to ``clone``);
- ``ioctl(TIOCSTI)`` and ``ioctl(TIOCLINUX)`` (typing into a terminal) fail;
- without ``network``: ``socket`` for IPv4, IPv6, packet and unix sockets fails (TCP and UDP
  alike, the host's loopback included; a unix socket that exists as a file, such as the
  docker socket a CI container is often given, would otherwise be a way to the host, since
  Landlock does not govern ``connect``); ``socketpair`` stays (pipes between a command's own
  processes: multiprocessing, asyncio).

``install(filter)`` applies it to the calling process; ``no_new_privs`` must be set first.

Limits: with ``network``, unix sockets that exist as files (a docker socket) can be connected
to; without it a command cannot serve or reach any unix socket (a test suite that binds one
fails); System V IPC is not filtered; this is a deny list, so a system
call added to a later kernel passes unless it is listed.

Standard library only: ``_launch.py`` loads this file by path in a bare interpreter.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
# BPF opcodes: ld word absolute, jump if equal / if set / if >=, return constant
LD_ABS, JEQ, JSET, JGE, RET = 0x20, 0x15, 0x45, 0x35, 0x06
OFFSET_NR, OFFSET_ARCH = 0, 4
CLONE_NEW = 0x7E020080  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME(0x80)
AF_UNIX, AF_INET, AF_INET6, AF_PACKET = 1, 2, 10, 17
TIOCSTI, TIOCLINUX = 0x5412, 0x541C

CHECKED = frozenset(
    {"clone", "clone3", "socket", "ioctl"}
)  # judged by their arguments; every other one listed fails

# (audit architecture, system call numbers) from the kernel's unistd tables
X86_64 = (
    0xC000003E,
    dict(ptrace=101, process_vm_readv=310, process_vm_writev=311, pidfd_getfd=438, mount=165, umount2=166,
         pivot_root=155, chroot=161, unshare=272, setns=308, keyctl=250, add_key=248, request_key=249,
         bpf=321, perf_event_open=298, userfaultfd=323, io_uring_setup=425, io_uring_enter=426,
         io_uring_register=427, open_tree=428, move_mount=429, fsopen=430, fsconfig=431, fsmount=432,
         fspick=433, mount_setattr=442, init_module=175, finit_module=313, delete_module=176,
         kexec_load=246, kexec_file_load=320, reboot=169, swapon=167, swapoff=168, acct=163,
         settimeofday=164, clock_settime=227, clock_adjtime=305, adjtimex=159, sethostname=170,
         setdomainname=171, open_by_handle_at=304, name_to_handle_at=303, fanotify_init=300, syslog=103,
         quotactl=179, lookup_dcookie=212, vhangup=153, iopl=172, ioperm=173, uselib=134,
         clone=56, clone3=435, socket=41, ioctl=16),
)  # fmt: skip
AARCH64 = (
    0xC00000B7,
    dict(ptrace=117, process_vm_readv=270, process_vm_writev=271, pidfd_getfd=438, mount=40, umount2=39,
         pivot_root=41, chroot=51, unshare=97, setns=268, keyctl=219, add_key=217, request_key=218,
         bpf=280, perf_event_open=241, userfaultfd=282, io_uring_setup=425, io_uring_enter=426,
         io_uring_register=427, open_tree=428, move_mount=429, fsopen=430, fsconfig=431, fsmount=432,
         fspick=433, mount_setattr=442, init_module=105, finit_module=273, delete_module=106,
         kexec_load=104, kexec_file_load=294, reboot=142, swapon=224, swapoff=225, acct=89,
         settimeofday=170, clock_settime=112, clock_adjtime=266, adjtimex=171, sethostname=161,
         setdomainname=162, open_by_handle_at=265, name_to_handle_at=264, fanotify_init=262, syslog=116,
         quotactl=60, lookup_dcookie=18, vhangup=58, clone=220, clone3=435, socket=198, ioctl=29),
)  # fmt: skip
ARCHES = {"x86_64": X86_64, "aarch64": AARCH64}


def supported() -> bool:
    return platform.system() == "Linux" and platform.machine() in ARCHES


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _arg_low(index: int) -> int:
    """Offset of the low 32 bits of argument ``index`` in ``struct seccomp_data`` (little-endian)."""
    return 16 + 8 * index


def _fail_if(nr: int, code: int) -> bytes:
    return _op(JEQ, nr, 0, 1) + _op(RET, RET_ERRNO | code)


def _argument_check(nr: int, index: int, failing: list[tuple[int, int]], *, mask: bool = False) -> bytes:
    """For system call ``nr``: EPERM when argument ``index`` equals (or, with ``mask``, shares a
    bit with) one of ``failing`` (value, errno); otherwise allowed. Other calls skip past."""
    body = _op(LD_ABS, _arg_low(index))
    for value, code in failing:
        body += _op(JSET if mask else JEQ, value, 0, 1) + _op(RET, RET_ERRNO | code)
    body += _op(RET, RET_ALLOW)
    return _op(JEQ, nr, 0, len(body) // 8) + body


def program(network: bool, machine: str | None = None) -> bytes:
    """The filter's instructions (``struct sock_filter`` each) for ``machine`` (default: this one)."""
    arch, numbers = ARCHES[machine or platform.machine()]
    code = _op(LD_ABS, OFFSET_ARCH) + _op(JEQ, arch, 1, 0) + _op(RET, RET_KILL_PROCESS)
    code += _op(LD_ABS, OFFSET_NR)
    if arch == X86_64[0]:
        code += _op(JGE, 0x40000000, 0, 1) + _op(RET, RET_ERRNO | errno.EPERM)
    for name, number in numbers.items():
        if name not in CHECKED:
            code += _fail_if(number, errno.EPERM)
    code += _fail_if(numbers["clone3"], errno.ENOSYS)
    code += _argument_check(numbers["clone"], 0, [(CLONE_NEW, errno.EPERM)], mask=True)
    code += _argument_check(numbers["ioctl"], 1, [(TIOCSTI, errno.EPERM), (TIOCLINUX, errno.EPERM)])
    if not network:
        families = [(family, errno.EPERM) for family in (AF_UNIX, AF_INET, AF_INET6, AF_PACKET)]
        code += _argument_check(numbers["socket"], 0, families)
    return code + _op(RET, RET_ALLOW)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def install(code: bytes) -> None:
    """Apply the filter to the calling process and its future children; ``OSError`` if refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(code, len(code))
    prog = SockFprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_char_p))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")
