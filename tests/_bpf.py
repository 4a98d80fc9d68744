"""A classic-BPF interpreter for seccomp programs, enough for what libseccomp
emits: it runs a group's filter on a made-up call, so tests can compare the
filter with what filter.h says it does, call by call, without a kernel."""
from __future__ import annotations

import struct

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000


def seccomp_data(nr: int, arch: int, args: tuple[int, ...]) -> bytes:
    args = tuple(args) + (0,) * (6 - len(args))
    return struct.pack("<iIQ6Q", nr, arch, 0, *args)


def run(program: bytes, data: bytes, max_steps: int = 100000) -> int:
    """The program's return value for seccomp_data `data`."""
    insns = [struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)]
    a = 0
    pc = 0
    for _ in range(max_steps):
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:            # ld [k]
            a = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:          # and #k
            a &= k
        elif code == 0x05:          # ja
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):   # jeq, jgt, jge, jset #k
            taken = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if taken else jf
        elif code == 0x06:          # ret #k
            return k
        else:
            raise ValueError(f"BPF opcode {code:#x} at {pc - 1} not interpreted")
    raise ValueError("BPF program did not return")


def precedence(ret: int) -> int:
    """Lower wins, as the kernel compares actions (signed, data masked off)."""
    action = ret & 0xFFFF0000
    return action - (1 << 32) if action & 0x80000000 else action
