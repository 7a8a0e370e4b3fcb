"""ChatStats: a local-first daemon over your iMessage history."""

__version__ = "0.1.0"
