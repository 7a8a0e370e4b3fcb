"""Contacts: one per person, named from the AddressBook, whatever address they write from.

A person who writes from a phone and an email, or over SMS and iMessage, is one contact:
every normalised identifier (and its match keys, so `(415) 555-0123` meets
`+14155550123`) points at it. A sender the AddressBook does not know gets a nameless
contact; when the AddressBook later names them, the nameless contact is merged into the
named one and every reference moves (the seeds' merge).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from chatstats.db import inserted_id
from chatstats.imessage.addressbook import ABPerson
from chatstats.imessage.identifiers import match_keys, normalize


class ContactBook:
    """In-memory identifier map over the contacts tables, used inside one write transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.by_key: dict[str, int] = dict(
            conn.execute("SELECT identifier, contact_id FROM contact_identifiers").fetchall()
        )
        self.named: set[int] = {
            r[0] for r in conn.execute("SELECT id FROM contacts WHERE name IS NOT NULL")
        }
        self.by_pcid: dict[str, int] = {}
        self.created = 0
        self.unknown: list[str] = []  # identifiers that got a nameless contact just now
        self.merged: list[tuple[int, int]] = []  # (from nameless, into named)
        self.renamed: list[int] = []

    def _keys(self, identifier: str) -> list[str]:
        norm = normalize(identifier)
        if not norm:
            return [identifier.strip().lower()] if identifier.strip() else []
        return match_keys(norm)

    def _claim(self, keys: Iterable[str], contact_id: int) -> None:
        rows = []
        for key in keys:
            if key not in self.by_key:
                self.by_key[key] = contact_id
                rows.append((key, contact_id))
        if rows:
            self.conn.executemany(
                "INSERT OR REPLACE INTO contact_identifiers (identifier, contact_id) VALUES (?, ?)",
                rows,
            )

    def merge(self, source: int, target: int) -> None:
        """Move every reference of `source` to `target`, then drop `source`."""
        p = {"src": source, "dst": target}
        self.conn.execute("UPDATE handles SET contact_id = :dst WHERE contact_id = :src", p)
        self.conn.execute(
            "UPDATE contact_identifiers SET contact_id = :dst WHERE contact_id = :src", p
        )
        self.conn.execute("DELETE FROM contacts WHERE id = :src", p)
        for key, cid in self.by_key.items():
            if cid == source:
                self.by_key[key] = target
        for pcid, cid in self.by_pcid.items():
            if cid == source:
                self.by_pcid[pcid] = target
        self.merged.append((source, target))

    def sync_people(self, people: Iterable[ABPerson]) -> None:
        """Upsert AddressBook people; adopt or merge nameless contacts that are really them."""
        for person in sorted(people, key=lambda p: p.key):
            keys = [k for ident in person.identifiers for k in self._keys(ident)]
            row = self.conn.execute(
                "SELECT id, name FROM contacts WHERE ab_key = :k", {"k": person.key}
            ).fetchone()
            if row is None:
                owners = {self.by_key[k] for k in keys if k in self.by_key}
                nameless = sorted(o for o in owners if o not in self.named)
                if nameless:
                    # Adopt the oldest nameless contact: its id (and the UI's links) survive.
                    cid = nameless[0]
                    self.conn.execute(
                        "UPDATE contacts SET name = :n, ab_key = :k, is_me = :me WHERE id = :id",
                        {"n": person.name, "k": person.key, "me": int(person.is_me), "id": cid},
                    )
                    self.renamed.append(cid)
                    for other in nameless[1:]:
                        self.merge(other, cid)
                else:
                    cid = inserted_id(
                        self.conn.execute(
                            "INSERT INTO contacts (name, ab_key, is_me) VALUES (:n, :k, :me)",
                            {"n": person.name, "k": person.key, "me": int(person.is_me)},
                        )
                    )
                    self.created += 1
            else:
                cid = row[0]
                if row[1] != person.name:
                    self.conn.execute(
                        "UPDATE contacts SET name = :n WHERE id = :id",
                        {"n": person.name, "id": cid},
                    )
                    self.renamed.append(cid)
                for other in sorted({self.by_key[k] for k in keys if k in self.by_key}):
                    if other != cid and other not in self.named:
                        self.merge(other, cid)
            if person.name is not None:
                self.named.add(cid)
            self._claim(keys, cid)

    def resolve(self, identifier: str, person_centric_id: str | None = None) -> int:
        """The contact for a chat.db handle, creating a nameless one if nobody matches."""
        keys = self._keys(identifier)
        for key in keys:
            cid = self.by_key.get(key)
            if cid is not None:
                break
        else:
            cid = self.by_pcid.get(person_centric_id) if person_centric_id else None
            if cid is None:
                cid = inserted_id(self.conn.execute("INSERT INTO contacts (name) VALUES (NULL)"))
                self.created += 1
                self.unknown.append(identifier)
        if person_centric_id and person_centric_id not in self.by_pcid:
            self.by_pcid[person_centric_id] = cid
        self._claim(keys, cid)
        return cid
