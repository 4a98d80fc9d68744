"""A container's stdio, relayed: `governor run --rootfs` gives the command
pipes (and a pty of the container's own for what is a terminal here),
never its own stdin, stdout and stderr, so that the tenant cannot
truncate, fallocate or name the host's file behind them (`>> host.log`).

    relay = Relay.for_caller()
    proc = group.spawn(cmd, **relay.spawn_args())
    relay.started()            # child ends closed; pty master taken; terminal raw
    ... select on relay.readers() / relay.writers(); relay.handle(readable, writable)
    relay.drain(deadline)      # once the command has exited
    relay.close()              # always: the caller's terminal is restored

Each direction reads at most CHUNK bytes and reads again only when those
are written, so a slow reader here slows the tenant's writes as it would
natively. The caller's fds stay blocking (they are shared with its shell):
a reader there that stalls stalls the relay, as it would stall the command.
A write here that fails with EPIPE (`| head`) closes that pipe's read end:
the tenant's next write gets SIGPIPE, as natively.
"""
from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import struct
import termios
import time
import tty

from .._errors import GovernorError

CHUNK = 65536   # 4096 (PIPE_BUF) moved 512 MiB 10x slower: a Python loop per chunk
CONSOLE_WAIT = 10.0   # seconds for the command's pty master to arrive


class _Flow:
    """Bytes from src to dst. `owns`: the fds (ours: the container's pipes)
    this flow closes when it ends; the caller's and the pty's stay."""

    def __init__(self, src: int, dst: int, owns: tuple[int, ...] = ()):
        self.src, self.dst, self.owns = src, dst, owns
        self.buf = b""
        self.open = True

    def read(self) -> None:
        try:
            data = os.read(self.src, CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:   # EIO: a pty master once the slave is closed
                raise
            data = b""
        if data:
            self.buf = data
        else:
            self.end()

    def write(self) -> None:
        try:
            n = os.write(self.dst, self.buf)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.EIO, errno.EBADF):
                raise
            # The reader went away: closing the source makes the tenant's
            # next write fail with EPIPE (SIGPIPE), as a native pipe would.
            self.end()
            return
        self.buf = self.buf[n:]

    def end(self) -> None:
        if self.open:
            self.open, self.buf = False, b""
            for fd in self.owns:
                os.close(fd)


class Relay:
    def __init__(self, terminal: bool):
        self._flows: list[_Flow] = []
        self._owned: list[int] = []       # the pty's master, closed at the end
        self._child: list[int] = []       # the command's ends, closed once it has them
        self._saved_mode = None
        self._old_winch = None
        self._stdio: list[int | None] = [None, None, None]
        self.console_fd = -1
        self.console_stdio = 0
        self._console_sock = None
        if terminal:
            # The command makes a pty in its own /dev/pts (native/spawn.c
            # make_console) and sends the master here; each std fd that is
            # a terminal here is that pty there, the others are pipes.
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self._console_sock, self.console_fd = ours, theirs.detach()
            self._child.append(self.console_fd)
            self.console_stdio = sum(1 << fd for fd in range(3) if os.isatty(fd))
        self._make_pipes(terminal)

    @classmethod
    def for_caller(cls) -> "Relay":
        """A pty when stdin is a terminal that we may read (we are in its
        foreground: a job in the background would be stopped by SIGTTIN)."""
        try:
            foreground = os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
        except OSError:
            foreground = False
        return cls(foreground)

    def _make_pipes(self, terminal: bool) -> None:
        shared_out = _same_file(1, 2)
        for fd in range(3):
            if self.console_stdio & 1 << fd or not _is_open(fd):
                continue   # the pty there; or closed here, so closed there
            if fd == 2 and shared_out and self._stdio[1] is not None:
                self._stdio[2] = self._stdio[1]   # 2>&1: one pipe keeps the order
                continue
            r, w = os.pipe2(os.O_CLOEXEC)
            if fd == 0:
                self._stdio[0] = r
                self._child.append(r)
                if not terminal and os.isatty(0):
                    os.close(w)   # a terminal we may not read: EOF at once
                    continue
                os.set_blocking(w, False)
                self._flows.append(_Flow(0, w, owns=(w,)))
            else:
                self._stdio[fd] = w
                self._child.append(w)
                os.set_blocking(r, False)
                self._flows.append(_Flow(r, fd, owns=(r,)))

    def spawn_args(self) -> dict:
        """Group.spawn()'s stdin, stdout, stderr and console for the command
        (a std fd that is the console's pty is None: the pty replaces it)."""
        stdin, stdout, stderr = self._stdio
        return {"stdin": stdin, "stdout": stdout, "stderr": stderr,
                "console": (self.console_fd, self.console_stdio)}

    def started(self) -> None:
        """The command has its ends: ours only stay. With a console, takes
        the pty's master and puts the caller's terminal in raw mode."""
        for fd in set(self._child):
            os.close(fd)
        self._child = []
        if self._console_sock is None:
            return
        sock, self._console_sock = self._console_sock, None
        with sock:
            sock.settimeout(CONSOLE_WAIT)
            try:
                _, fds, _, _ = socket.recv_fds(sock, 64, 1)
            except OSError as e:
                raise GovernorError(f"the command's terminal did not come: {e}") from None
        if not fds:
            raise GovernorError("the command's terminal did not come")
        master = fds[0]
        self._owned.append(master)
        os.set_blocking(master, False)
        self._saved_mode = termios.tcgetattr(0)
        tty.setraw(0, termios.TCSANOW)
        self._copy_size(master)
        self._old_winch = signal.signal(signal.SIGWINCH, lambda *_: self._copy_size(master))
        # The pty's output (its echo at least) goes to the caller's terminal.
        shown = next(fd for fd in (1, 2, 0) if self.console_stdio & 1 << fd)
        self._flows.append(_Flow(0, master))
        self._flows.append(_Flow(master, shown))

    @staticmethod
    def _copy_size(master: int) -> None:
        try:
            size = fcntl.ioctl(0, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
        except OSError:
            pass

    def readers(self) -> list[int]:
        return [f.src for f in self._flows if f.open and not f.buf]

    def writers(self) -> list[int]:
        return [f.dst for f in self._flows if f.open and f.buf]

    def handle(self, readable: list, writable: list) -> None:
        for f in self._flows:
            if f.open and not f.buf and f.src in readable:
                f.read()
            elif f.open and f.buf and f.dst in writable:
                f.write()

    def drain(self, seconds: float) -> None:
        """After the command's exit: what it and the rest of its container
        wrote, until every writer is gone (they die with its namespace),
        for at most `seconds`. Nothing more is read from the caller."""
        from .._readable import ready

        for f in self._flows:
            if f.src == 0 and f.open:
                f.end()
        deadline = time.monotonic() + seconds
        while any(f.open for f in self._flows):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, w = ready(self.readers(), self.writers(), left)
            self.handle(r, w)

    def close(self) -> None:
        """Restores the caller's terminal and closes our ends. Idempotent."""
        if self._saved_mode is not None:
            try:
                termios.tcsetattr(0, termios.TCSADRAIN, self._saved_mode)
            except termios.error:
                pass   # the terminal is gone (hung up): nothing to restore
            self._saved_mode = None
        if self._old_winch is not None:
            signal.signal(signal.SIGWINCH, self._old_winch)
            self._old_winch = None
        for f in self._flows:
            if f.open:
                f.end()
        for fd in self._owned + self._child:
            os.close(fd)
        self._owned, self._child, self._flows = [], [], []
        if self._console_sock is not None:
            self._console_sock.close()
            self._console_sock = None


def _is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
        return True
    except OSError:
        return False


def _same_file(a: int, b: int) -> bool:
    try:
        return os.path.sameopenfile(a, b)
    except OSError:
        return False
