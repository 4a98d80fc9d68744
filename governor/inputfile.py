"""Files a user hands to governor (policies, classes, OCI configs): read
from regular files only, at most MAX_BYTES, as UTF-8. A device would be
read for ever (`--policy /dev/zero`), a FIFO would block the open or the
read; each fails as a PolicyError naming the file instead."""
from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from ._errors import PolicyError

MAX_BYTES = 1 << 20   # far more than any policy, class or config.json needs

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file but {_KINDS.get(stat.S_IFMT(mode), 'a special file')}"


def read_text(path: str | Path, source: str | None = None,
              missing: str = "no such file") -> str:
    """The file's text; PolicyError(source, None, why) if it is missing
    (reason `missing`), not a regular file, over MAX_BYTES or not UTF-8."""
    source = source or str(path)
    try:
        # stat first: opening a device may act on it (a tape rewinds);
        # O_NONBLOCK: a FIFO put in its place meanwhile does not block the
        # open, and fstat below refuses it.
        why = _not_regular(os.stat(path).st_mode)
        if why:
            raise PolicyError(source, None, why)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PolicyError(source, None, missing) from None
    except OSError as e:
        raise PolicyError(source, None, f"cannot read: {e.strerror}") from None
    try:
        why = _not_regular(os.fstat(fd).st_mode)
        if why:
            raise PolicyError(source, None, why)
        chunks, size = [], 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise PolicyError(source, None, f"cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_BYTES:
        raise PolicyError(source, None, f"larger than {MAX_BYTES} bytes (1 MiB): not a "
                                        "configuration file?")
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise PolicyError(source, None, f"not UTF-8 text (byte {data[e.start]:#04x} on line "
                                        f"{line})") from None


def read_toml(path: str | Path, source: str | None = None) -> dict[str, Any]:
    """The file's TOML document (read_text's checks, then TOML's)."""
    source = source or str(path)
    text = read_text(path, source)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(source, None, f"not valid TOML: {e}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise PolicyError(source, None, "not valid TOML: nested too deeply") from None
