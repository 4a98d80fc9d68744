"""governor's command line. One module per subcommand, each with
`add_parser(sub)` and `main(args)`; only the chosen command's module imports
what it needs (the engine, pyroute2, ...), so `governor ps` stays light."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .._errors import GovernorError

# subcommand -> module of this package
COMMANDS = {"run": "run", "ps": "ps", "top": "ps", "bench": "bench",
            "capture": "capture", "apps": "apps", "groups": "groups", "classes": "groups",
            "admit": "admit", "install": "install", "uninstall": "install",
            "installed": "install", "start": "start", "stop": "start", "export": "export",
            "hosts": "export", "store": "store", "console": "console",
            "daemon": "daemon"}


def configure_logging(verbose: int) -> None:
    """The commands log through structlog, the library through `logging`
    (it imposes nothing on programs that import it): both go to stderr in
    one format, at the level -v asks for."""
    import structlog

    level = logging.WARNING - 10 * verbose
    renderer = (structlog.dev.ConsoleRenderer() if sys.stderr.isatty()
                else structlog.processors.JSONRenderer())
    shared = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
              structlog.processors.TimeStamper(fmt="iso")]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


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


if __name__ == "__main__":
    sys.exit(main())
