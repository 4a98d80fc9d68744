"""Shared helpers for test_caps.py and test_hostile.py: a C tenant program
(compiled once per session into a temporary directory) and small utilities.
Not a conftest: imported explicitly by the test files that need it."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

TENANT_C = r'''
/* Tenant programs for governor's tests. Results go to a file (argv[2]). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static char *self;
static int release_r = -1, release_w = -1;

static void logf_(const char *path, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, buf, n);
        (void)w;
        close(fd);
    }
}

static void block_until_released(void)
{
    char c;
    if (release_w >= 0)
        close(release_w);
    while (read(release_r, &c, 1) != 0 && errno == EINTR)
        ;
}

static void *thread_main(void *arg)
{
    char c;
    while (read(release_r, &c, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

/* spawn KIND MAX OUT: create up to MAX tasks that all stay alive. */
static int do_spawn(const char *kind, int max, const char *out)
{
    int p[2];
    if (pipe(p) < 0)
        return 2;
    release_r = p[0];
    release_w = p[1];
    fcntl(release_w, F_SETFD, FD_CLOEXEC);
    pthread_t th[256];
    int ok = 0, err = 0;
    char fdarg[16];
    snprintf(fdarg, sizeof fdarg, "%d", release_r);
    char *wargv[] = {self, "wait", fdarg, NULL};
    for (int i = 0; i < max && i < 256; i++) {
        int rc = 0;
        if (!strcmp(kind, "fork")) {
            pid_t pid = fork();
            if (pid == 0) {
                block_until_released();
                _exit(0);
            }
            rc = pid < 0 ? errno : 0;
        } else if (!strcmp(kind, "vfork")) {
            pid_t pid = vfork();
            if (pid == 0) {
                execve(self, wargv, environ);
                _exit(127);
            }
            rc = pid < 0 ? errno : 0;
        } else if (!strcmp(kind, "clone3")) {
            struct clone_args ca;
            memset(&ca, 0, sizeof ca);
            ca.exit_signal = SIGCHLD;
            long pid = syscall(SYS_clone3, &ca, sizeof ca);
            if (pid == 0) {
                block_until_released();
                syscall(SYS_exit, 0);
            }
            rc = pid < 0 ? errno : 0;
        } else if (!strcmp(kind, "thread")) {
            rc = pthread_create(&th[ok], NULL, thread_main, NULL);
        } else if (!strcmp(kind, "posix_spawn")) {
            pid_t pid;
            rc = posix_spawn(&pid, self, NULL, NULL, wargv, environ);
        } else {
            return 3;
        }
        if (rc) {
            err = rc;
            break;
        }
        ok++;
    }
    logf_(out, "ok=%d errno=%d\n", ok, err);
    close(release_w);
    if (!strcmp(kind, "thread"))
        for (int i = 0; i < ok; i++)
            pthread_join(th[i], NULL);
    else
        while (wait(NULL) > 0 || errno == EINTR)
            ;
    return 0;
}

/* bomb: every process forks forever; non-root ones exit after 3 forks. */
static int do_bomb(void)
{
    signal(SIGCHLD, SIG_IGN);
    int root = 1, forks = 0;
    for (;;) {
        pid_t pid = fork();
        if (pid == 0) {
            root = 0;
            forks = 0;
            continue;
        }
        if (pid > 0 && !root && ++forks >= 3)
            _exit(0);
    }
}

static const char *sig_log;

static void on_usr1(int sig)
{
    logf_(sig_log, "handled\n");
}

/* hold FIFO LOG [sig]: children A and A2 fill the cap; B waits for A to
 * exit. With "sig", a SIGUSR1 handler (no SA_RESTART) logs "handled". */
static int do_hold(const char *fifo, const char *log, int sig)
{
    signal(SIGCHLD, SIG_IGN);
    if (sig) {
        struct sigaction sa = {.sa_handler = on_usr1};
        sig_log = log;
        sigaction(SIGUSR1, &sa, NULL);
    }
    int p[2];
    if (pipe(p) < 0)
        return 2;
    release_r = p[0];
    release_w = p[1];
    pid_t a = fork();
    if (a == 0) {
        logf_(log, "A ready\n");
        int fd = open(fifo, O_RDONLY);
        char c;
        while (fd >= 0 && read(fd, &c, 1) > 0)
            ;
        logf_(log, "A exit\n");
        _exit(0);
    }
    if (a < 0)
        return 4;
    pid_t a2 = fork();
    if (a2 == 0) {
        block_until_released();
        _exit(0);
    }
    if (a2 < 0)
        return 5;
    logf_(log, "forking B\n");
    pid_t b = fork();
    if (b == 0) {
        logf_(log, "B start\n");
        _exit(0);
    }
    if (b < 0) {
        logf_(log, "B failed errno=%d\n", errno);
        return 6;
    }
    logf_(log, "B forked\n");
    close(release_w);
    while (wait(NULL) > 0 || errno == EINTR)
        ;
    return 0;
}

#define MiB (1024L * 1024L)

static int do_mem(const char *mode, const char *out)
{
    if (!strcmp(mode, "malloc200")) {
        char *p = malloc(200 * MiB);
        if (!p) {
            logf_(out, "fail errno=%d\n", errno);
            return 10;
        }
        memset(p, 1, 200 * MiB);
        logf_(out, "ok\n");
        return 0;
    }
    if (!strcmp(mode, "mmap200")) {
        char *p = mmap(NULL, 200 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            logf_(out, "fail errno=%d\n", errno);
            return 10;
        }
        memset(p, 1, 200 * MiB);
        logf_(out, "ok\n");
        return 0;
    }
    if (!strcmp(mode, "sbrk200")) {
        void *p = sbrk(200 * MiB);
        if (p == (void *)-1) {
            logf_(out, "fail errno=%d\n", errno);
            return 10;
        }
        memset(p, 1, 200 * MiB);
        logf_(out, "ok\n");
        return 0;
    }
    if (!strcmp(mode, "chunks")) {
        /* 1 MiB touched chunks until one fails, at most 200. */
        int n = 0;
        for (; n < 200; n++) {
            char *p = malloc(MiB);
            if (!p)
                break;
            memset(p, 1, MiB);
        }
        logf_(out, "chunks=%d errno=%d\n", n, n < 200 ? errno : 0);
        return n < 200 ? 10 : 0;
    }
    if (!strcmp(mode, "reserve")) {
        char *p = mmap(NULL, 1024 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            logf_(out, "reserve errno=%d\n", errno);
            return 11;
        }
        if (mprotect(p, 16 * MiB, PROT_READ | PROT_WRITE) < 0) {
            logf_(out, "commit16 errno=%d\n", errno);
            return 12;
        }
        memset(p, 1, 16 * MiB);
        int rc = mprotect(p + 16 * MiB, 200 * MiB, PROT_READ | PROT_WRITE);
        logf_(out, "reserve=ok commit16=ok commit200=%d errno=%d\n", rc, rc ? errno : 0);
        return 0;
    }
    return 3;
}

/* compat OUT FILE: the same write through int $0x80, the x32 entry, and natively. */
static int do_compat(const char *out, const char *file)
{
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return 2;
    char *buf = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (buf == MAP_FAILED)
        return 3;
    memcpy(buf, "hello", 5);
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(4L), "b"((long)fd), "c"((long)(uintptr_t)buf), "d"(5L)
                     : "memory", "r8", "r9", "r10", "r11");
    struct stat st;
    fstat(fd, &st);
    long after_i386 = st.st_size;
    errno = 0;
    long x = syscall(0x40000000L | 1, fd, buf, 5L);
    int xerr = errno;
    fstat(fd, &st);
    long after_x32 = st.st_size;
    long n = write(fd, buf, 5);
    fstat(fd, &st);
    logf_(out, "i386=%ld size1=%ld x32=%ld x32errno=%d size2=%ld native=%ld size3=%ld\n",
          ret, after_i386, x, xerr, after_x32, n, (long)st.st_size);
    return 0;
}

static int do_iouring(const char *out)
{
    char params[120];
    memset(params, 0, sizeof params);
    errno = 0;
    long r = syscall(SYS_io_uring_setup, 8, params);
    logf_(out, "ret=%ld errno=%d\n", r, r < 0 ? errno : 0);
    return 0;
}

static void wait_usr1(void)
{
    sigset_t set;
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigwait(&set, &sig);
}

/* pend LOG: R, A, P, Q (with their pids in the group's namespace); each
 * step waits for SIGUSR1 from the test. */
static int do_pend(const char *log)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGCHLD, SIG_IGN);
    logf_(log, "R %d\n", getpid());
    if (fork() == 0) {
        logf_(log, "A %d\n", getpid());
        wait_usr1();
        _exit(0);
    }
    if (fork() == 0) {
        logf_(log, "P %d\n", getpid());
        wait_usr1();
        if (fork() == 0) {
            logf_(log, "P1 %d\n", getpid());
            wait_usr1();
            _exit(0);
        }
        logf_(log, "P forked\n");
        if (fork() == 0) {
            logf_(log, "P2 %d\n", getpid());
            _exit(0);
        }
        for (;;)
            wait_usr1();
    }
    if (fork() == 0) {
        logf_(log, "Q %d\n", getpid());
        wait_usr1();
        if (fork() == 0) {
            logf_(log, "Q1 %d\n", getpid());
            _exit(0);
        }
        for (;;)
            wait_usr1();
    }
    for (;;)
        wait_usr1();
}

int main(int argc, char **argv)
{
    self = argv[0];
    if (argc < 2)
        return 64;
    if (!strcmp(argv[1], "wait") && argc == 3) {
        release_r = atoi(argv[2]);
        block_until_released();
        return 0;
    }
    if (!strcmp(argv[1], "spawn") && argc == 5)
        return do_spawn(argv[2], atoi(argv[3]), argv[4]);
    if (!strcmp(argv[1], "pend") && argc == 3)
        return do_pend(argv[2]);
    if (!strcmp(argv[1], "bomb"))
        return do_bomb();
    if (!strcmp(argv[1], "hold") && (argc == 4 || argc == 5))
        return do_hold(argv[2], argv[3], argc == 5);
    if (!strcmp(argv[1], "mem") && argc == 4)
        return do_mem(argv[2], argv[3]);
    if (!strcmp(argv[1], "compat") && argc == 4)
        return do_compat(argv[2], argv[3]);
    if (!strcmp(argv[1], "iouring") && argc == 3)
        return do_iouring(argv[2]);
    return 64;
}
'''

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="spawning a group needs root")


def compile_c(src: Path, directory: Path, flags: tuple[str, ...] = ()) -> Path:
    """Builds one C file of the tests into directory; returns the program."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    exe = directory / src.stem
    subprocess.run([gcc, "-O1", "-Wall", *flags, "-o", str(exe), str(src), "-lpthread"], check=True,
                   capture_output=True, timeout=60)
    return exe


def python_tenant(directory: Path, name: str, source: str) -> str:
    """Writes a Python tenant program into directory; returns its path."""
    path = directory / name
    path.write_text(source)
    return str(path)


def compile_tenant(directory: Path) -> Path:
    src = directory / "tenant.c"
    src.write_text(TENANT_C)
    return compile_c(src, directory)


def open_fds() -> dict[str, str]:
    """This process's fds: fd -> what it links to."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # closed meanwhile (the listing's own fd, a sampler's read)
    return out


def under_tsan() -> bool:
    """Whether the engine loaded is make sanitize's TSan build. TSan runs a
    signal handler only when its thread next enters a function TSan knows:
    the tracer's wake-up (native/trace.c), a handler that jumps out of a raw
    waitid or pause, is then lost, and a group with a tracer hangs. Tests
    leave the tracer out under TSan."""
    from governor import _native

    return Path(_native.__file__).parent.parent.name == "sanitize-thread"


def socket_answers(path) -> bool:
    """Whether a SOCK_SEQPACKET unix socket at path accepts a connection
    (a daemon's socket is up)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def read_line(fd: int, timeout: float) -> bytes:
    """The next line on fd, with its newline, read a byte at a time (what
    follows stays in the pipe); AssertionError if none comes within timeout
    or fd reaches its end first."""
    import selectors
    buf, deadline = b"", time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no line within {timeout:.0f} s (got {buf!r})")
            data = os.read(fd, 1)
            if not data:
                raise AssertionError(f"end of output after {buf!r}")
            buf += data
    return buf


def wait_for(condition, timeout: float, what: str, interval: float = 0.01):
    """Polls an observable condition until it holds; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def host_pid(pids, pid: int) -> int | None:
    """Of the host pids `pids`, the one whose pid in its group's namespace
    is `pid` (the last field of NSpid): a tenant sees only that one."""
    for host in pids:
        try:
            status = Path(f"/proc/{host}/status").read_text()
        except OSError:
            continue
        nspid = [line.split()[-1] for line in status.splitlines() if line.startswith("NSpid:")]
        if nspid == [str(pid)]:
            return host
    return None


def read_kv(path: Path) -> dict[str, str]:
    """'a=1 b=2' on the file's last line -> {'a': '1', 'b': '2'}."""
    line = path.read_text().strip().splitlines()[-1]
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def group_tasks(init_pid: int) -> dict[int, int]:
    """Every process below a group's init (the init excluded), read from /proc
    through /proc/PID/task/TID/children, with its live threads: 0 for a
    zombie, and its leader not counted once it has exited."""
    out, stack = {}, [init_pid]
    while stack:
        pid = stack.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        live = 0
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    stack += [int(c) for c in f.read().split()]
            except OSError:
                continue
            live += not (int(tid) == pid and state in "ZX")
        if pid != init_pid:
            out[pid] = live
    return out


def live_tasks(init_pid: int) -> int:
    """The group's live tasks as /proc shows them (zombies excluded)."""
    return sum(group_tasks(init_pid).values())


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time), or None if pid is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(data.rsplit(")", 1)[1].split()[19])


# A version manager's shim, as pyenv's: a bash script that works out the
# version with nested substitutions, then execs the real program.
SHIM = r'''#!/bin/bash
set -e
program="${0##*/}"
root="$(cd "$(dirname "$0")" && pwd)"
version="$(cat "$root/version" 2>/dev/null | head -n 1 | tr -d '[:space:]')"
real="$(PATH="${PATH#"$root":}" command -v "$version")"
prefix="$(dirname "$(dirname "$real")")"
[ -n "$(printf '%s' "$prefix" | sed -e 's/x/y/')" ]
exec "$real" "$@"
'''

APPLETS = ("sh", "cat", "echo", "hostname", "id", "ls", "touch", "sleep", "stat", "test",
           "seq", "grep", "mount", "dd", "rm", "wc", "du", "nc", "true")


def make_rootfs(path: Path) -> Path:
    """A busybox-static root file system, as a user would make one."""
    (path / "bin").mkdir(parents=True)
    (path / "etc").mkdir()
    shutil.copy("/bin/busybox", path / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", path / "bin" / applet)
    (path / "bin" / "httpd").symlink_to("/bin/busybox")  # absolute: resolved inside
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    return path
