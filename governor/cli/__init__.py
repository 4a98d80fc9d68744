"""governor's command line. One module per subcommand, each with
`add_parser(sub)` and `main(args)`; only the chosen command's module imports
what it needs (the engine, pyroute2, ...), so `governor ps` stays light."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .._errors import GovernorError

# subcommand -> module of this package
COMMANDS = {"run": "run", "ps": "ps", "top": "ps", "bench": "bench",
            "capture": "capture", "apps": "apps", "groups": "groups", "classes": "groups",
            "admit": "admit", "install": "install", "uninstall": "install",
            "installed": "install", "start": "start", "stop": "start", "export": "export",
            "hosts": "export", "store": "store", "console": "console",
            "daemon": "daemon"}


_level = 30   # logging.WARNING; -v: INFO, -vv: DEBUG
_configured = False
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def configure_logging(verbose: int) -> None:
    """The level of the commands' log lines. structlog itself is set up at
    the first line that passes it (Log). With -v the library's `logging`
    records (e.g. `spawned`) go through it too, in the same format; without,
    the library's info lines are dropped unimported (governor/_log.py)."""
    global _level, _configured
    _level, _configured = 30 - 10 * verbose, False
    if verbose:
        _route_logging()


def _structlog():
    """structlog, configured: console on a tty, JSON otherwise."""
    global _configured
    import structlog

    if not _configured:
        renderer = (structlog.dev.ConsoleRenderer() if sys.stderr.isatty()
                    else structlog.processors.JSONRenderer())
        structlog.configure(
            processors=[structlog.contextvars.merge_contextvars,
                        structlog.processors.add_log_level,
                        structlog.processors.TimeStamper(fmt="iso"), renderer],
            wrapper_class=structlog.make_filtering_bound_logger(_level),
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        )
        _configured = True
    return structlog


def _route_logging() -> None:
    """The root `logging` handler renders as structlog does."""
    import logging

    structlog = _structlog()
    renderer = (structlog.dev.ConsoleRenderer() if sys.stderr.isatty()
                else structlog.processors.JSONRenderer())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars,
                           structlog.processors.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso"),
                           structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_level)


class Log:
    """A command's structlog logger, made at its first line that passes the
    level: structlog imports asyncio, about 40 ms here, more than a short
    `governor run` spends on everything else."""

    def __init__(self, name: str):
        self._name, self._context, self._logger = name, {}, None

    def bind(self, **context) -> None:
        """Context for every later line (structlog's contextvars)."""
        if self._logger is None:
            self._context.update(context)
        else:
            _structlog().contextvars.bind_contextvars(**context)

    def _line(self, level: str, event: str, **values) -> None:
        if _LEVELS[level] < _level:
            return
        if self._logger is None:
            structlog = _structlog()
            structlog.contextvars.bind_contextvars(**self._context)
            self._logger = structlog.get_logger(self._name)
        getattr(self._logger, level)(event, **values)

    def debug(self, event: str, **values) -> None:
        self._line("debug", event, **values)

    def info(self, event: str, **values) -> None:
        self._line("info", event, **values)

    def warning(self, event: str, **values) -> None:
        self._line("warning", event, **values)

    def error(self, event: str, **values) -> None:
        self._line("error", event, **values)


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; given the command about to run, only its module is
    imported (`governor bench`'s alone cost `governor run` 0.2 s)."""
    p = argparse.ArgumentParser(prog="governor",
                                description="Run programs under per-group resource limits, "
                                            "enforced by holding their system calls.")
    sub = p.add_subparsers(dest="command", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values())
    for module in modules:
        importlib.import_module(f".{module}", __name__).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(argv[0] if argv else None).parse_args(argv)
    configure_logging(getattr(args, "verbose", 0))
    try:
        return importlib.import_module(f".{COMMANDS[args.command]}", __name__).main(args)
    except GovernorError as e:
        print(f"governor: {e}", file=sys.stderr)
        return 125


def exit_now(status: int) -> None:
    """Ends the process with status without the interpreter's teardown,
    which frees every module one by one (5 ms of a short `governor run`
    here): atexit's functions run, stdout and stderr are flushed. With
    other threads still running, the ordinary exit waits for them."""
    threading = sys.modules.get("threading")
    if threading and threading.active_count() > 1:
        sys.exit(status)
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def script() -> None:
    """The console script `governor`."""
    exit_now(main())


if __name__ == "__main__":
    sys.exit(main())
