"""What one batch did: the counters the import reports and the outcome live sync publishes.

Apart from the writer so callers that only read a result (the sync loop, the CLI's report)
need not import the row machinery.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec


class Counters(msgspec.Struct, kw_only=True):
    messages_added: int = 0
    system_events_added: int = 0
    reactions_added: int = 0
    attachments_added: int = 0
    messages_changed: int = 0
    contacts_created: int = 0
    contacts_merged: int = 0
    conversations_created: int = 0
    conversations_removed: int = 0
    conversations_reopened: int = 0
    bodies_corrupt: int = 0
    bodies_empty: int = 0
    summaries_unreadable: int = 0
    orphans: int = 0
    duplicates_skipped: int = 0


class Outcome(NamedTuple):
    """What changed, so the caller can publish it after commit (ids only)."""

    new_message_ids: list[int]
    changed_message_ids: list[int]
    reaction_target_guids: list[str]
    chat_ids: list[int]
    contact_ids: list[int]
    sealed_timers_changed: bool
    # Senders no contact knew (worth asking the AddressBook about), and older messages
    # whose reactions this batch changed (their reaction lists must be republished).
    unknown_identifiers: tuple[str, ...] = ()
    reacted_message_ids: tuple[int, ...] = ()
