"""Stable paging: where the next page of a newest-first list starts, as an opaque cursor.

`before_id` names an item and reads its sort key *now*, so an item that moves between two
requests moves the page boundary with it: when the chat at the end of page 1 gets a new
message it jumps to the top, and page 2 starts over from there (repeats); a chat further
down that gets one jumps above the boundary and is never served (a skip). A cursor instead
carries the sort key the last item had when it was served, and, for lists sorted by last
activity (chats, contacts), a snapshot of the library as the first page saw it: the newest
message id and the newest row id then. Later pages place every item where it stood in that
snapshot and leave out items created since, so the pages of one walk hold each item of the
snapshot exactly once. What changed meanwhile reaches a client through the live streams (or
a fresh first page). Ids only grow (ingest appends at max + 1), which is what makes two ids
enough to describe a snapshot.

The cursor is base64url JSON, not signed: a forged one can only name another position in a
list the caller may read anyway. It names its list, so one list's cursor is refused by another.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

from chatstats.errors import BadRequest

MAX_ID = 2**63 - 1
MAX_CURSOR_CHARS = 400


class Snapshot(msgspec.Struct, frozen=True, array_like=True):
    """The library as a first page saw it: its newest message id and newest list row id."""

    messages: int
    rows: int


class Keyset(msgspec.Struct, frozen=True, array_like=True):
    """Continue strictly after (`ns`, `id`) in the order of `list`, as of `snapshot`.

    `ns` is the sort time the last item had when it was served (None: an item without one,
    which sorts after every dated item, by id). `snapshot` is None for lists whose sort keys
    never change (a message's time, a conversation's start).
    """

    list: str
    ns: int | None
    id: int
    snapshot: Snapshot | None = None


_decode = msgspec.json.Decoder(Keyset).decode
_encode = msgspec.json.Encoder().encode


def encode(keyset: Keyset) -> str:
    return base64.urlsafe_b64encode(_encode(keyset)).rstrip(b"=").decode("ascii")


def decode(token: str, list_name: str) -> Keyset:
    """The keyset of a cursor this list handed out, or BadRequest."""
    refused = BadRequest("cursor is not one this list handed out")
    if len(token) > MAX_CURSOR_CHARS or not token.isascii():
        raise refused
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        keyset = _decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise refused from None
    numbers = [keyset.id]
    if keyset.snapshot is not None:
        numbers += [keyset.snapshot.messages, keyset.snapshot.rows]
    if keyset.list != list_name or not all(0 <= n <= MAX_ID for n in numbers):
        raise refused
    if keyset.ns is not None and not -(2**63) <= keyset.ns <= MAX_ID:
        raise refused
    return keyset
