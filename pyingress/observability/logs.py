"""Logging as one ``key=value`` line per record, ready for any log collector."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

LEVELS = ("debug", "info", "warning", "error", "critical")


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=... logger=... <message>``; newlines escaped so a record stays one line.

    Messages are written as ``event key=value ...`` by the code that logs them; values that
    come from users are logged with ``%r`` so they cannot forge extra fields or lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (
            f"ts={stamp}.{int(record.msecs):03d}Z level={record.levelname.lower()} "
            f"logger={record.name} {record.getMessage()}"
        )
        if record.exc_info:
            line += f" exc={self.formatException(record.exc_info)!r}"
        return line.replace("\r", "\\r").replace("\n", "\\n")


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every ``pyingress`` (and uvicorn) record at ``level`` or above to ``stream``."""
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
