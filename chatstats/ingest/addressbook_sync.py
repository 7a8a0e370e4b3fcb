"""Contacts kept in step with the AddressBook while the daemon runs.

Three triggers, as in the seeds: at startup, every `interval` seconds when a store's files
changed (stat of each store and its WAL, no reading otherwise), and on demand when a sender
nobody knows appears (at most once per identifier per `cooldown` seconds, so a stranger
texting all day doesn't re-read the AddressBook with every message). A re-read names
nameless contacts by merging them into the AddressBook person (every reference moves), and
the caller is told which contacts changed so it can update the UI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.to_thread

from chatstats import log
from chatstats.db import Database
from chatstats.ingest.batch import refresh_contacts
from chatstats.ingest.contacts import ContactBook

logger = log.get(__name__)

OnChange = Callable[[list[int]], Awaitable[None]]
# (path, inode, size, mtime) per store file, (path, None) for one that is not there.
StoreFingerprint = tuple[tuple[str, int, int, int] | tuple[str, None], ...]


class AddressBookSync:
    def __init__(
        self,
        db: Database,
        addressbook: Path | None,
        *,
        on_change: OnChange | None = None,
        interval: float = 60.0,
        cooldown: float = 60.0,
    ) -> None:
        self.db = db
        self.addressbook = addressbook
        self.on_change = on_change
        self.interval = interval
        self.cooldown = cooldown
        self._asked: dict[str, float] = {}
        self._wake = anyio.Event()
        self._fingerprint: StoreFingerprint = ()
        self.syncs = 0

    def _stores(self) -> list[Path]:
        if self.addressbook is None or not self.addressbook.exists():
            return []
        from chatstats.imessage.addressbook import AddressBookError, find_macos_stores

        if self.addressbook.is_file():
            return [self.addressbook]
        try:
            return find_macos_stores(self.addressbook)
        except AddressBookError as exc:
            logger.warning("addressbook_unreadable", reason=exc.reason)
            return []

    def fingerprint(self) -> StoreFingerprint:
        out: list[tuple[str, int, int, int] | tuple[str, None]] = []
        for store in self._stores():
            for p in (store, store.with_name(store.name + "-wal")):
                try:
                    st = os.stat(p)
                except OSError:
                    out.append((str(p), None))
                else:
                    out.append((str(p), st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def request(self, identifiers: list[str]) -> None:
        """An unknown sender appeared: re-read soon, unless asked about them lately."""
        now = time.monotonic()
        fresh = [i for i in identifiers if now - self._asked.get(i, -1e9) >= self.cooldown]
        for i in fresh:
            self._asked[i] = now
        if fresh:
            self._wake.set()

    async def sync(self) -> list[int]:
        """Read every store (in a thread) and apply it in one write; returns changed contacts."""
        from chatstats.ingest.importer import read_addressbook

        errors: list[str] = []
        people = await anyio.to_thread.run_sync(read_addressbook, self.addressbook, errors)
        changed = await self.db.write(_apply, people)
        self.syncs += 1
        logger.info(
            "addressbook_synced", people=len(people), changed=len(changed), errors=len(errors)
        )
        if changed and self.on_change is not None:
            await self.on_change(changed)
        return changed

    async def run(self, stop: anyio.Event) -> None:
        self._fingerprint = await anyio.to_thread.run_sync(self.fingerprint)
        await self._sync_logged()
        while not stop.is_set():
            with anyio.move_on_after(self.interval):
                async with anyio.create_task_group() as tg:

                    async def wait_stop() -> None:
                        await stop.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(wait_stop)
                    await self._wake.wait()
                    tg.cancel_scope.cancel()
            if stop.is_set():
                return
            asked = self._wake.is_set()
            self._wake = anyio.Event()
            current = await anyio.to_thread.run_sync(self.fingerprint)
            if asked or current != self._fingerprint:
                self._fingerprint = current
                await self._sync_logged()

    async def _sync_logged(self) -> None:
        try:
            await self.sync()
        except Exception as exc:  # never fatal: names are a nicety, messages are not
            logger.warning("addressbook_sync_failed", error_type=type(exc).__name__)


def _apply(conn, people) -> list[int]:  # type: ignore[no-untyped-def]
    book = ContactBook(conn)
    book.sync_people(people)
    # Handles whose contact is nameless may now match someone: re-resolve them.
    for hid, identifier, contact_id in conn.execute(
        "SELECT h.id, h.identifier, h.contact_id FROM handles h"
        " JOIN contacts c ON c.id = h.contact_id WHERE c.name IS NULL"
    ).fetchall():
        resolved = book.resolve(identifier)
        if resolved != contact_id:
            conn.execute(
                "UPDATE handles SET contact_id = :c WHERE id = :h", {"c": resolved, "h": hid}
            )
    changed = sorted({t for _s, t in book.merged} | set(book.renamed))
    if changed:
        refresh_contacts(conn, changed)
    return changed
