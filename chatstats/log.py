"""Structured logging: one JSON object per line on stdout, ERROR and above also on stderr.

Electron reads the daemon's stdout line by line, so every line must be JSON. Log ids and
counts only: never message text, contact names, or LLM prompts and outputs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


class _LineLogger:
    """structlog calls `logger.<level>(rendered_line)`; the method name carries the level.

    Streams are looked up when writing (`sys.stdout` may be replaced after configuration,
    e.g. by a test harness), and a stream that is closed or broken is skipped: logging must
    never be the reason a batch or a request fails.
    """

    def __init__(self, out: str, errors_too: bool) -> None:
        self._out = out  # "stdout" | "stderr"
        self._errors_too = errors_too

    def _emit(self, line: str, level: int) -> None:
        streams = [getattr(sys, self._out)]
        if _held is not None and self._out == "stdout":
            _held.append(line)
            streams = []
        if self._errors_too and level >= 40 and self._out != "stderr":
            streams.append(sys.stderr)
        for stream in streams:
            try:
                stream.write(line + "\n")
                stream.flush()
            except (ValueError, OSError):
                pass

    def debug(self, line: str) -> None:
        self._emit(line, 10)

    def info(self, line: str) -> None:
        self._emit(line, 20)

    msg = info

    def warning(self, line: str) -> None:
        self._emit(line, 30)

    def error(self, line: str) -> None:
        self._emit(line, 40)

    exception = error

    def critical(self, line: str) -> None:
        self._emit(line, 50)

    fatal = critical


# Lines logged to stdout while held: the daemon's first stdout line must be its ready line
# (a launcher may read just that one), so start-up logs wait until it has been printed.
_held: list[str] | None = None


def hold() -> None:
    global _held
    if _held is None:
        _held = []


def release() -> None:
    """Write the held lines (after the ready line) and stop holding."""
    global _held
    lines, _held = _held, None
    for line in lines or ():
        try:
            sys.stdout.write(line + "\n")
        except (ValueError, OSError):
            break
    with contextlib.suppress(ValueError, OSError):
        sys.stdout.flush()


def configure(level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Configure structlog for the process. `stream` defaults to stdout; one-shot CLI
    commands pass `sys.stderr` so their stdout carries only the command's own output."""
    out = "stderr" if stream is sys.stderr else "stdout"
    threshold = _LEVELS.get(level.lower(), 20)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=lambda *_a: _LineLogger(out, errors_too=True),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through stdlib logging: keep them quiet and off stdout.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for noisy in ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "LiteLLM", "litellm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get(name: str) -> Any:
    return structlog.get_logger(name)
