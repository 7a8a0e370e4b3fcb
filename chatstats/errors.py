"""The few exception classes the daemon raises on purpose.

Each carries an HTTP status and a stable `code`, so the API maps every one of them to
`{"error": {"code", "message"}}` in one place and the CLI prints the same one-line message.
Messages never contain message text, contact names or prompts.
"""


class ChatStatsError(Exception):
    code = "internal"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ChatStatsError):
    code = "bad_request"
    status = 400


class Unauthorized(ChatStatsError):
    code = "unauthorized"
    status = 401


class Forbidden(ChatStatsError):
    code = "forbidden"
    status = 403


class NotFound(ChatStatsError):
    code = "not_found"
    status = 404


class SourceError(ChatStatsError):
    """Apple's data could not be read: missing, locked, not a Messages database, encrypted."""

    code = "source_unavailable"
    status = 503


class MigrationError(ChatStatsError):
    code = "migration_failed"
    status = 500
