"""The few exception classes the daemon raises on purpose, and the one mapping of the pure
layers' own errors onto them.

A `ChatStatsError` carries an HTTP status and a stable `code`, so the API maps every one of
them to `{"error": {"code", "message"}}` and the CLI prints the same one-line message. The
pure layers (`imessage/`, `config.py`) know nothing of HTTP: they raise subclasses of
`DataError`, and `public()` is the one place that says which status each becomes. Messages
never contain message text, contact names or prompts.
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


class DataError(Exception):
    """Base of the errors the pure layers raise; `message` is safe to show and log."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SourceDataError(DataError):
    """Apple's data could not be read (raised by `imessage/`)."""


class SettingsError(DataError):
    """A setting has a value it cannot take (raised by `config.py`)."""


_PUBLIC: tuple[tuple[type[DataError], type[ChatStatsError]], ...] = (
    (SourceDataError, SourceError),
    (SettingsError, BadRequest),
)


def public(exc: ChatStatsError | DataError) -> ChatStatsError:
    """The error as the API and the CLI report it (status, code, message)."""
    if isinstance(exc, ChatStatsError):
        return exc
    for cls, target in _PUBLIC:
        if isinstance(exc, cls):
            return target(exc.message)
    return ChatStatsError(exc.message)


# What the daemon's boundaries catch: both kinds map through `public`.
REPORTED = (ChatStatsError, DataError)
