"""What a faithful importer must produce from a generated sample library.

The generator records this while it writes chat.db, from its own intent rather than by
reading the file back, so a test that compares an importer's output with it checks the
importer against Apple's semantics, not against another reader's bugs.

Conventions (the contract tests rely on):

* `TruthMessage.text` is the body Apple shows: the decoded attributedBody, or the `text`
  column when the blob is missing or undecodable, with U+FFFC (attachment) and U+FFFD (app
  balloon) characters removed; `""` for no body, unsent messages and bodies nothing can
  decode (`body_corrupt`). Edited messages carry their latest version.
* `body_corrupt` is True only when the row has an attributedBody that cannot be decoded
  *and* no `text` column to fall back on; a damaged blob next to a usable `text` column is
  not an error for the reader, so it is not flagged.
* `date_ns` is Unix epoch nanoseconds, exactly what Apple's value converts to (rows that
  store seconds convert to whole seconds).
* Tapback rows (associated_message_type 2000–3007) never appear in `messages`; `reactions`
  holds only the tapbacks still active after replaying adds and removals per
  (target_guid, part, sender): a newer add replaces the older one, a removal of type T
  drops that sender's active T.
* `contacts` holds one entry per person: AddressBook people (duplicates across Sources
  merged, the owner's "me" card left out) with the chat.db handle ids that reach them, and
  one nameless entry per handle no card matches.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from msgspec import Struct

from chatstats.sample.facts import TruthFact

__all__ = [
    "Truth",
    "TruthAttachment",
    "TruthChat",
    "TruthContact",
    "TruthMessage",
    "TruthReaction",
    "dump_truth",
    "load_truth",
]


class TruthChat(Struct):
    guid: str
    is_group: bool
    display_name: str | None  # None for NULL and '' (Apple uses both for "no name")
    service: str  # chat.service_name
    participants: list[str]  # sorted handle ids (handle.id as in chat.db), final membership


class TruthAttachment(Struct):
    guid: str
    transfer_name: str | None
    mime_type: str | None
    total_bytes: int


class TruthMessage(Struct):
    guid: str
    chat_guid: str | None  # None = orphan (no chat_message_join row)
    # message | participant_added | participant_removed | renamed | participant_left |
    # photo_changed | photo_removed | group_event
    kind: str
    text: str
    is_from_me: bool
    sender: str | None  # handle id of the sender (or of who acted); None when from me
    date_ns: int
    reply_to_guid: str | None  # thread_originator_guid, never the unreliable reply_to_guid
    edited: bool
    unsent: bool
    body_corrupt: bool
    group_title: str | None
    other: str | None  # handle id added/removed by a membership event
    attachments: list[TruthAttachment]  # in body order
    service: str


class TruthReaction(Struct):
    guid: str  # the tapback row that is still in effect
    target_guid: str
    part: int
    type: str  # loved liked disliked laughed emphasized questioned emoji sticker
    emoji: str | None
    is_from_me: bool
    sender: str | None


class TruthContact(Struct):
    name: str | None  # "First Last" (organization without a person name); None = unknown
    identifiers: list[str]  # sorted chat.db handle ids of this person (may be empty)


class Truth(Struct):
    profile: str
    chats: list[TruthChat]
    messages: list[TruthMessage]
    reactions: list[TruthReaction]
    contacts: list[TruthContact]
    counts: dict[str, int]
    # Planted facts with the questions that ask for them (chatstats.sample.facts).
    facts: list[TruthFact] = []


_ENCODER = msgspec.json.Encoder()


def dump_truth(truth: Truth, path: Path | str) -> None:
    Path(path).write_bytes(_ENCODER.encode(truth))


def load_truth(path: Path | str) -> Truth:
    return msgspec.json.decode(Path(path).read_bytes(), type=Truth)
