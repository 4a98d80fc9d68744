"""The library's loggers: logging.getLogger(name), which the application
configures, with `logging` imported at the first record that can be seen
(its import costs a short `governor run` 5 ms).

Until something imports logging nothing can have configured it, and then
logging's defaults show warnings and above only (its last-resort handler):
so a debug or info record is dropped while logging is not imported, and
anything else imports it and goes through as usual."""
from __future__ import annotations

import sys


class Logger:
    def __init__(self, name: str):
        self.name = name

    def _logger(self):
        import logging

        return logging.getLogger(self.name)

    def debug(self, *args, **kwargs) -> None:
        if "logging" in sys.modules:
            self._logger().debug(*args, **kwargs)

    def info(self, *args, **kwargs) -> None:
        if "logging" in sys.modules:
            self._logger().info(*args, **kwargs)

    def warning(self, *args, **kwargs) -> None:
        self._logger().warning(*args, **kwargs)

    def error(self, *args, **kwargs) -> None:
        self._logger().error(*args, **kwargs)


def getLogger(name: str) -> Logger:
    return Logger(name)
