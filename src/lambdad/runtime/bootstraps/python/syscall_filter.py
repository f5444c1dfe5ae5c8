"""The seccomp filter every process of a function runs under (standard library only).

A classic BPF program, built here once per process that installs it, checked by the kernel on
every system call of the filtered process and of everything it starts (filters are inherited
across fork, clone and exec, and can never be removed). It blocks the calls Lambda's
environment forbids or that would let a function leave its cell; each answers ``EPERM``, as
Lambda does, and the process lives on. Everything else is allowed. The list, call by call, and
why, is in ``docs/sandbox.md``.

- ``clone`` is allowed unless it asks for a new namespace; ``clone3`` answers ``ENOSYS``: its
  flags are behind a pointer a filter cannot read, and ``ENOSYS`` makes glibc and musl fall
  back to ``clone`` (Docker's default profile does the same).
- ``personality`` is allowed for the personas Docker's profile allows (Linux, 32-bit Linux,
  ``UNAME26``, and the query), not for e.g. turning address randomisation off.
- System calls of another ABI (32-bit x86 through ``int 0x80``, x32) answer ``ENOSYS``, as on
  a kernel built without them.

The *template* variant is for a SnapStart template: its forks each make a private ``/tmp``
(``snapstart.py``: a user and mount namespace, a tmpfs), so it also lets through exactly that
``unshare`` (``CLONE_NEWUSER | CLONE_NEWNS``) and ``mount`` with exactly the flags used there
(``MS_NOSUID | MS_NODEV``). Each fork installs the full filter once its ``/tmp`` is made.

Used by the cell init (``sandbox/cellinit.py``, before it execs or forks a runtime or an
extension), by the plain-process sandbox (before exec) and by SnapStart forks. Runs on every
Python lambdad supports in a cell (3.9 and later).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

#: Each blocked call's number on (x86_64, aarch64); None where the architecture has no such call.
BLOCKED = {
    # Reading or steering another process.
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "kcmp": (312, 272),
    "pidfd_getfd": (438, 438),
    # Mounts and the root file system.
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "move_mount": (429, 429),
    "open_tree": (428, 428),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    # Namespaces.
    "unshare": (272, 97),
    "setns": (308, 268),
    # Kernel modules.
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "create_module": (174, None),
    "get_kernel_syms": (177, None),
    "query_module": (178, None),
    # Kernel keyrings.
    "add_key": (248, 217),
    "request_key": (249, 218),
    "keyctl": (250, 219),
    # Kernel interfaces with a record of privilege escalations.
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    # The machine itself.
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "reboot": (169, 142),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "acct": (163, 89),
    "quotactl": (179, 60),
    "quotactl_fd": (443, 443),
    "syslog": (103, 116),
    "vhangup": (153, 58),
    "iopl": (172, None),
    "ioperm": (173, None),
    # The clock.
    "settimeofday": (164, 170),
    "clock_settime": (227, 112),
    "adjtimex": (159, 171),
    "clock_adjtime": (305, 266),
    # Files by handle (a handle reaches files outside the cell's root).
    "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264),
    "lookup_dcookie": (212, 18),
    # Obsolete calls (most answer ENOSYS anyway on current kernels).
    "uselib": (134, None),
    "ustat": (136, None),
    "sysfs": (139, None),
    "_sysctl": (156, None),
    "nfsservctl": (180, 42),
}
#: Calls whose arguments decide: (x86_64, aarch64).
CLONE = (56, 220)
CLONE3 = (435, 435)
PERSONALITY = (135, 92)
SECCOMP = (317, 277)
#: The namespace flags ``clone`` may not carry (NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
#: NEWPID, NEWNET; NEWTIME is not a ``clone`` flag).
CLONE_NAMESPACES = 0x7E020000
#: The personas allowed (Docker's default profile): PER_LINUX, PER_LINUX32, UNAME26, both,
#: and 0xffffffff (which only asks for the current one).
PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
#: What a SnapStart fork does for its private /tmp (``snapstart.py``).
TEMPLATE_UNSHARE = 0x10000000 | 0x00020000  # CLONE_NEWUSER | CLONE_NEWNS
TEMPLATE_MOUNT_FLAGS = 2 | 4  # MS_NOSUID | MS_NODEV

#: ``AUDIT_ARCH_*`` of the architectures the filter knows, by ``uname -m``; index into the
#: number pairs above.
ARCHES = {"x86_64": (0xC000003E, 0), "aarch64": (0xC00000B7, 1), "arm64": (0xC00000B7, 1)}
X32_BIT = 0x40000000

_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
_NR, _ARCH = 0, 4


def _arg(index: int, high: bool = False) -> int:
    """Offset of argument ``index``'s low (or high) 32 bits in ``seccomp_data`` (little
    endian, as both architectures run here)."""
    return 16 + 8 * index + (4 if high else 0)


class _Program:
    """Instructions with forward jumps to labels, resolved when assembled."""

    def __init__(self) -> None:
        self.code: List[Tuple[int, object, object, int]] = []
        self.labels: Dict[str, int] = {}

    def op(self, code: int, k: int, jt: object = 0, jf: object = 0) -> None:
        self.code.append((code, jt, jf, k))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        out = []
        for index, (code, jt, jf, k) in enumerate(self.code):
            offsets = [self._offset(index, target) for target in (jt, jf)]
            out.append(struct.pack("<HBBI", code, offsets[0], offsets[1], k & 0xFFFFFFFF))
        return b"".join(out)

    def _offset(self, index: int, target: object) -> int:
        if isinstance(target, int):
            return target
        offset = self.labels[str(target)] - index - 1
        if not 0 <= offset <= 255:
            raise ValueError("jump out of range: %s" % target)
        return offset


def program(machine: Optional[str] = None, template: bool = False) -> bytes:
    """The filter as ``struct sock_filter`` records, for ``machine`` (``uname -m``).

    ``KeyError`` on an architecture the filter does not know.
    """
    audit_arch, column = ARCHES[machine or os.uname().machine]

    def number(pair: Tuple[Optional[int], Optional[int]]) -> Optional[int]:
        return pair[column]

    p = _Program()
    p.op(_LD_ABS, _ARCH)
    p.op(_JEQ, audit_arch, 0, "enosys")
    p.op(_LD_ABS, _NR)
    if column == 0:
        p.op(_JGE, X32_BIT, "enosys", 0)
    special = {nr: "eperm" for nr in map(number, BLOCKED.values()) if nr is not None}
    special.update({CLONE[column]: "clone", CLONE3[column]: "enosys"})
    special[PERSONALITY[column]] = "personality"
    if template:
        special[BLOCKED["unshare"][column]] = "unshare"
        special[BLOCKED["mount"][column]] = "mount"
    _search(p, sorted(special.items()))
    p.label("clone")
    p.op(_LD_ABS, _arg(0))  # the kernel reads only clone's low 32 flag bits
    p.op(_JSET, CLONE_NAMESPACES, "eperm", "allow")
    p.label("personality")
    p.op(_LD_ABS, _arg(0))  # an unsigned int
    for index, persona in enumerate(PERSONAS):
        last = index == len(PERSONAS) - 1
        p.op(_JEQ, persona, "allow", "eperm" if last else 0)
    if template:
        for name, argument, value in (
            ("unshare", 0, TEMPLATE_UNSHARE),
            ("mount", 3, TEMPLATE_MOUNT_FLAGS),
        ):
            p.label(name)
            p.op(_LD_ABS, _arg(argument, high=True))
            p.op(_JEQ, 0, 0, "eperm")
            p.op(_LD_ABS, _arg(argument))
            p.op(_JEQ, value, "allow", "eperm")
    p.label("allow")
    p.op(_RET, RET_ALLOW)
    p.label("eperm")
    p.op(_RET, RET_ERRNO | errno.EPERM)
    p.label("enosys")
    p.op(_RET, RET_ERRNO | errno.ENOSYS)
    return p.assemble()


def _search(p: _Program, cases: List[Tuple[int, str]]) -> None:
    """Jump to the label of the call's number among ``cases`` (sorted), else allow: a binary
    search, so that a call passes some seven comparisons rather than one per blocked call
    (which also keeps the kernel's work small when it installs the filter)."""
    if len(cases) <= 4:
        for nr, target in cases:
            p.op(_JEQ, nr, target, 0)
        p.op(_RET, RET_ALLOW)
        return
    middle = len(cases) // 2
    upper = "above-%d" % cases[middle][0]
    p.op(_JGE, cases[middle][0], upper, 0)
    _search(p, cases[:middle])
    p.label(upper)
    _search(p, cases[middle:])


def blocked_names(machine: Optional[str] = None) -> List[str]:
    """The calls that answer EPERM on ``machine`` whatever their arguments."""
    _, column = ARCHES[machine or os.uname().machine]
    return [name for name, pair in BLOCKED.items() if pair[column] is not None]


def describe(machine: Optional[str] = None) -> str:
    """One line for ``lambdad doctor``."""
    try:
        count = len(blocked_names(machine))
    except KeyError:
        return "no filter for this architecture"
    return (
        "seccomp: %d calls answer EPERM (ptrace, mount, unshare, setns, bpf, keyctl, "
        "perf_event_open, ...), clone into new namespaces EPERM, clone3 ENOSYS; "
        "docs/sandbox.md lists them" % count
    )


# --------------------------------------------------------------------------- installing

_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_SECCOMP = 21
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_GET_ACTION_AVAIL = 2
_SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Filter:
    """A program made ready to install: the ctypes structures are built here, ahead, so that
    installing (in a freshly forked child) is two system calls and no allocation."""

    def __init__(self, code: bytes, machine: Optional[str] = None) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._buffer = ctypes.create_string_buffer(code, len(code))
        self._fprog = _SockFprog(len(code) // 8, ctypes.addressof(self._buffer))
        # Looked up and made here, not on first use in the child: each lookup makes and
        # stores an object, and every page a forked child writes becomes its own copy.
        self._prctl = libc.prctl
        self._syscall = libc.syscall
        self._pointer = ctypes.byref(self._fprog)
        self._seccomp = SECCOMP[ARCHES[machine or os.uname().machine][1]]

    def install(self) -> None:
        """Set ``no_new_privs`` (required) and install the filter on this thread (the caller
        is single-threaded: a fork's child, before exec). ``OSError`` if the kernel refuses.

        ``SECCOMP_FILTER_FLAG_SPEC_ALLOW`` keeps the kernel from also turning on its
        speculative-store-bypass mitigation for the process (older kernels tie it to seccomp by
        default, at a cost to every function); the filter is not a Spectre mitigation.
        """
        if self._prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _error("no_new_privs")
        pointer = self._pointer
        flags = _SECCOMP_FILTER_FLAG_SPEC_ALLOW
        if self._syscall(self._seccomp, _SECCOMP_SET_MODE_FILTER, flags, pointer) == 0:
            return
        if ctypes.get_errno() not in (errno.EINVAL, errno.ENOSYS):
            raise _error("seccomp")
        if self._prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, pointer, 0, 0) != 0:
            raise _error("seccomp")


def _error(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, "%s: %s" % (what, os.strerror(err)))


def unavailable_reason(machine: Optional[str] = None) -> Optional[str]:
    """Why this kernel or machine cannot run the filter, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "seccomp is Linux's"
    machine = machine or os.uname().machine
    if machine not in ARCHES:
        return "no filter for %s (x86_64 and aarch64 only)" % machine
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0) < 0:
        return "the kernel has no seccomp"
    action = ctypes.c_uint32(RET_ERRNO)
    number = SECCOMP[ARCHES[machine][1]]
    if libc.syscall(number, _SECCOMP_GET_ACTION_AVAIL, 0, ctypes.byref(action)) != 0:
        return "the kernel's seccomp cannot answer with an errno (%s)" % os.strerror(
            ctypes.get_errno()
        )
    return None


def active() -> bool:
    """Whether this process already runs under a seccomp filter."""
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0) == _SECCOMP_MODE_FILTER)
