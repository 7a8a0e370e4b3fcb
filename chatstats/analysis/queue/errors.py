"""What a failed attempt can be besides a provider error: an answer that breaks the pass's
schema (retryable) or a job that cannot run as queued (never retried), and where it broke
(schema paths and code frames, never values: logs carry no message text).
"""

from __future__ import annotations

import re
import traceback


class InvalidAnswer(Exception):
    """The model answered, but not with what the pass's schema describes."""

    outcome = "invalid_output"
    retryable = True
    retry_after_s = None

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class Unrunnable(Exception):
    """The job cannot run as queued (its pass or conversation is gone): retrying won't help."""

    outcome = "error"
    retryable = False
    retry_after_s = None


def schema_path(exc: Exception) -> str:
    """Where the answer broke the schema (`$.commitments[0].kind`), never the values."""
    m = re.search(r"at `([^`]*)`", str(exc))
    return m.group(1) if m else "$"


def frames_of(exc: BaseException) -> list[str]:
    frames = traceback.extract_tb(exc.__traceback__)[-5:]
    return [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in frames]
