"""Structured logging: one JSON object per line on stdout, ERROR and above also on stderr.

Electron reads the daemon's stdout line by line, so every line must be JSON. Log ids and
counts only: never message text, contact names, or LLM prompts and outputs.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


class _LineLogger:
    """structlog calls `logger.<level>(rendered_line)`; the method name carries the level."""

    def __init__(self, out: TextIO, err: TextIO | None) -> None:
        self._out = out
        self._err = err

    def _emit(self, line: str, level: int) -> None:
        self._out.write(line + "\n")
        self._out.flush()
        if self._err is not None and level >= 40 and self._err is not self._out:
            self._err.write(line + "\n")
            self._err.flush()

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


def configure(level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Configure structlog for the process. `stream` defaults to stdout; one-shot CLI
    commands pass stderr so their stdout carries only the command's own output."""
    out = stream or sys.stdout
    err = None if out is sys.stderr else sys.stderr
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
        logger_factory=lambda *_a: _LineLogger(out, err),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through stdlib logging: keep them quiet and off stdout.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for noisy in ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "LiteLLM", "litellm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get(name: str) -> Any:
    return structlog.get_logger(name)
