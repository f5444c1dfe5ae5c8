"""The seccomp program itself, run by a small classic-BPF interpreter on both architectures.

The kernel is the real judge (``tests/test_syscall_filter.py`` tries the calls from inside
functions); this runs the same program for every system call number on x86_64 and aarch64,
including the architecture this machine is not, and checks the numbers against the kernel
headers where they are installed.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from lambdad.runtime.bootstraps.python import syscall_filter as sf

ALLOW = sf.RET_ALLOW
EPERM = sf.RET_ERRNO | 1
ENOSYS = sf.RET_ERRNO | 38
AUDIT = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
I386 = 0x40000003
COLUMN = {"x86_64": 0, "aarch64": 1}


def run(code: bytes, arch: int, nr: int, *args: int) -> int:
    """What the program returns for the call: classic BPF as seccomp runs it."""
    padded = [*args, *([0] * (6 - len(args)))]
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(a & (1 << 64) - 1 for a in padded))
    records = [struct.unpack("<HBBI", code[i : i + 8]) for i in range(0, len(code), 8)]
    pc, acc = 0, 0
    while True:
        op, jt, jf, k = records[pc]
        pc += 1
        if op == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
        elif op == 0x06:
            return k
        else:
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[op]
            pc += jt if taken else jf


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_each_blocked_call_answers_eperm_and_every_other_call_is_allowed(machine: str) -> None:
    """Every listed call answers EPERM; every other number up to 600 is allowed (clone,
    clone3 and personality aside, which depend on what they ask)."""
    code = sf.program(machine)
    column = COLUMN[machine]
    blocked = {pair[column] for pair in sf.BLOCKED.values()} - {None}
    special = {sf.CLONE[column], sf.CLONE3[column], sf.PERSONALITY[column]}
    for nr in range(600):
        verdict = run(code, AUDIT[machine], nr)
        if nr in blocked:
            assert verdict == EPERM, nr
        elif nr not in special:
            assert verdict == ALLOW, nr


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_clone_personality_and_other_abis(machine: str) -> None:
    """clone into a namespace is EPERM, a thread or fork is not; clone3 is ENOSYS; only the
    personas Docker allows pass; another ABI's calls are ENOSYS."""
    code = sf.program(machine)
    arch, column = AUDIT[machine], COLUMN[machine]
    clone, personality = sf.CLONE[column], sf.PERSONALITY[column]
    thread = 0x3D0F00  # CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | ...
    assert run(code, arch, clone, thread) == ALLOW
    assert run(code, arch, clone, 17) == ALLOW  # fork: SIGCHLD
    for flag in (0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000):
        assert run(code, arch, clone, 17 | flag) == EPERM, hex(flag)
    assert run(code, arch, sf.CLONE3[column], 0, 88) == ENOSYS
    for persona in sf.PERSONAS:
        assert run(code, arch, personality, persona) == ALLOW
    assert run(code, arch, personality, 0x0040000) == EPERM  # ADDR_NO_RANDOMIZE
    assert run(code, I386, 26) == ENOSYS  # i386 ptrace through int 0x80
    if machine == "x86_64":
        assert run(code, arch, 0x40000000 | 101) == ENOSYS  # x32 ptrace


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_template_filter_lets_through_only_a_forks_private_tmp(machine: str) -> None:
    """A template's filter allows exactly unshare(CLONE_NEWUSER|CLONE_NEWNS) and a mount with
    MS_NOSUID|MS_NODEV; any other flags, and everything else blocked, stay EPERM."""
    code = sf.program(machine, template=True)
    arch, column = AUDIT[machine], COLUMN[machine]
    unshare, mount = sf.BLOCKED["unshare"][column], sf.BLOCKED["mount"][column]
    assert run(code, arch, unshare, 0x10020000) == ALLOW
    for flags in (0x10000000, 0x50020000, 0x10020000 | 1 << 32, 0x20000):
        assert run(code, arch, unshare, flags) == EPERM, hex(flags)
    assert run(code, arch, mount, 0, 0, 0, 6) == ALLOW
    for flags in (4096, 4096 | 6, 7, 6 | 1 << 40):
        assert run(code, arch, mount, 0, 0, 0, flags) == EPERM, hex(flags)
    assert run(code, arch, sf.BLOCKED["ptrace"][column]) == EPERM
    assert run(sf.program(machine), arch, mount, 0, 0, 0, 6) == EPERM


HEADERS = {
    0: Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    1: Path("/usr/include/asm-generic/unistd.h"),
}


@pytest.mark.parametrize("column", [0, 1], ids=["x86_64", "aarch64"])
def test_numbers_match_the_kernel_headers(column: int) -> None:
    """Each call's number is the one the kernel's own table gives (where it is installed)."""
    header = HEADERS[column]
    if not header.exists():
        pytest.skip(f"{header} is not installed")
    table = {
        name: int(number)
        for name, number in re.findall(r"#define __NR_(\w+)\s+(\d+)", header.read_text())
    }
    calls = {**sf.BLOCKED, "clone": sf.CLONE, "clone3": sf.CLONE3}
    calls.update({"personality": sf.PERSONALITY, "seccomp": sf.SECCOMP})
    for name, pair in calls.items():
        assert pair[column] == table.get(name), name
