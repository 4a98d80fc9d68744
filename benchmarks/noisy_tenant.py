"""The hostile tenants of test_noisy.py; each runs until it is killed.

    python noisy_tenant.py threads DIR N     N threads, each appending a byte to a
                                             file of DIR (held by a 1/s disk_write)
    python noisy_tenant.py flood             writes to /dev/null, as fast as it can
    python noisy_tenant.py churn DIR         creates, writes and deletes one file of
                                             DIR in a loop (each delete makes the
                                             area's count stale: a recount)
    python noisy_tenant.py calls DIR KIND    one of churn's kinds of call alone, in a loop:
                                             unlink (of no file), pwrite (4 KiB at 0),
                                             reopen (O_CREAT of a file that is there),
                                             create (a new file, closed and deleted)
    python noisy_tenant.py full FILE         appends 4 KiB to FILE in a loop, whatever
                                             the errors (a full disk area: EDQUOT)
    python noisy_tenant.py mmap              maps and unmaps 1 MiB in a loop
    python noisy_tenant.py sigstop DIR N     N children held in a write, stopped and
                                             continued (SIGSTOP, SIGCONT) in a loop
"""
from __future__ import annotations

import mmap
import os
import signal
import sys
import threading


def held_write(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    while True:
        os.write(fd, b"x")


def threads(workdir: str, n: int) -> None:
    threading.stack_size(64 * 1024)   # 1,000 threads in little memory
    for i in range(n):
        threading.Thread(target=held_write, args=(f"{workdir}/t{i}",), daemon=True).start()
    threading.Event().wait()


def flood() -> None:
    fd = os.open("/dev/null", os.O_WRONLY)
    while True:
        os.write(fd, b"x")


def churn(workdir: str) -> None:
    path = f"{workdir}/churn"
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"x" * 4096)
        os.close(fd)
        os.unlink(path)


def calls(workdir: str, kind: str) -> None:
    path = f"{workdir}/calls"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    while kind == "pwrite":
        os.pwrite(fd, b"x" * 4096, 0)
    while kind == "reopen":
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.unlink(path)
    while kind == "create":
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.unlink(path)
    while kind == "unlink":
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    raise SystemExit(f"calls: unknown kind {kind!r}")


def full(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    while True:
        try:
            os.write(fd, b"x" * 4096)
        except OSError:
            pass


def mmap_churn() -> None:
    while True:
        m = mmap.mmap(-1, 1 << 20)
        m[0] = 1
        m.close()


def sigstop(workdir: str, n: int) -> None:
    kids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            held_write(f"{workdir}/s{i}")
        kids.append(pid)
    while True:
        for pid in kids:
            os.kill(pid, signal.SIGSTOP)
        for pid in kids:
            os.kill(pid, signal.SIGCONT)


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    {"threads": lambda: threads(args[0], int(args[1])), "flood": flood,
     "churn": lambda: churn(args[0]), "calls": lambda: calls(args[0], args[1]), "full": lambda: full(args[0]), "mmap": mmap_churn,
     "sigstop": lambda: sigstop(args[0], int(args[1]))}[what]()
