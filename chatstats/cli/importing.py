"""`chatstats import`: the whole history once, with a progress bar and a summary (from a
chat.db or an iPhone backup).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from chatstats import config, log
from chatstats.cli.common import common_flags, settings_from, source_flags
from chatstats.errors import ChatStatsError

COMMANDS = ("import",)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("import", help="import the whole history once, with progress and a summary")
    source_flags(p)
    p.add_argument("--backup", help="an iPhone backup folder instead of a chat.db")
    common_flags(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    level = settings.effective_log_level if settings.debug else "WARNING"
    log.configure(level, stream=sys.stderr)
    return _import(settings, args)


class ProgressBar:
    """A one-line bar on stderr when it is a terminal; silent otherwise (logs carry progress)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._last = 0.0
        self._phase = ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if phase == self._phase and now - self._last < 0.1 and done < total:
            return
        self._last, self._phase = now, phase
        width = 30
        frac = done / total if total else 1.0
        filled = int(width * frac)
        self.stream.write(
            f"\r{phase:<13} [{'#' * filled}{'.' * (width - filled)}] {done:>9,}/{total:<9,} "
            f"{frac:4.0%}"
        )
        if phase == "done":
            self.stream.write("\n")
        self.stream.flush()


def _import(settings: config.Settings, args: argparse.Namespace) -> int:
    from chatstats.ingest.importer import run_import

    bar = ProgressBar()
    if args.backup:
        from chatstats.imessage import backup
        from chatstats.imessage.addressbook import AddressBookError, read_store

        try:
            files = backup.locate(Path(args.backup).expanduser())
        except backup.BackupError as exc:
            raise ChatStatsError(str(exc)) from None
        people: list[Any] = []
        if files.addressbook is not None:
            try:
                people = read_store(files.addressbook)
            except AddressBookError as exc:
                print(f"chatstats: warning: contacts not read: {exc}", file=sys.stderr)
        summary = run_import(
            settings.db_path, files.sms_db, None, bar, kind="backup", people=people
        )
    else:
        summary = run_import(
            settings.db_path,
            Path(settings.source).expanduser(),
            Path(settings.addressbook).expanduser(),
            bar,
        )
    if args.json:
        print(msgspec.json.encode(summary).decode())
    else:
        print(format_summary(summary))
    return 0


def format_summary(summary: Any) -> str:
    s = summary
    lines = [
        f"Imported {s.messages_added:,} messages, {s.system_events_added:,} group events, "
        f"{s.reactions_added:,} reactions and {s.attachments_added:,} attachments "
        f"in {s.seconds:.1f} s ({s.mode}).",
        f"  chats: {s.chats:,}   handles: {s.handles:,}   AddressBook people: "
        f"{s.addressbook_people:,}   new contacts: {s.contacts_created:,}   merged: "
        f"{s.contacts_merged:,}",
        f"  conversations: {s.conversations_created:,} new, {s.conversations_removed:,} re-split",
    ]
    notes = []
    if s.bodies_corrupt:
        notes.append(f"{s.bodies_corrupt:,} undecodable message bodies (kept, text from fallback)")
    if s.orphans:
        notes.append(f"{s.orphans:,} messages without a chat (kept)")
    if s.duplicates_skipped:
        notes.append(f"{s.duplicates_skipped:,} already-imported rows skipped")
    if s.summaries_unreadable:
        notes.append(f"{s.summaries_unreadable:,} unreadable edit histories")
    if s.previous_run_interrupted:
        notes.append("the previous import was interrupted; it was redone")
    for err in s.addressbook_errors:
        notes.append(f"AddressBook store skipped: {err}")
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)
