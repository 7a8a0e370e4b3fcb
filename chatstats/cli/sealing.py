"""Conversation sealing from the command line: tracker-status, check-sealing, force-seal
(chatstats.ingest.sealer).

They open the app database directly, so they work with or without a running daemon: SQLite
serialises the writers, and a daemon's sealer then finds the work already done.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from chatstats import log
from chatstats.cli.common import common_flags, settings_from
from chatstats.errors import ChatStatsError

COMMANDS = ("tracker-status", "check-sealing", "force-seal")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("tracker-status", help="open conversations and their seal times")
    p.add_argument("-v", "--verbose", action="store_true", help="list each open conversation")
    common_flags(p)
    p = sub.add_parser("check-sealing", help="seal every conversation whose 90 minutes have passed")
    common_flags(p)
    p = sub.add_parser("force-seal", help="seal a chat's open conversation now")
    p.add_argument("chat_id", type=int, metavar="CHAT_ID")
    common_flags(p)


def run(args: argparse.Namespace) -> int:
    import anyio

    settings = settings_from(args)
    log.configure(settings.effective_log_level if settings.debug else "WARNING", stream=sys.stderr)
    path = settings.db_path
    if not path.is_file():
        raise ChatStatsError(f"no database at {path}; run chatstats import first")
    now_ns = time.time_ns()
    result = anyio.run(_apply, path, args, now_ns)

    if args.command == "tracker-status":
        print(_format_status(result, now_ns, verbose=args.verbose))
        return 0
    if args.command == "check-sealing":
        for sealed in result:
            print(_format_sealed(sealed))
        print(f"sealed {len(result):,} conversation{'' if len(result) == 1 else 's'}")
        return 0
    if result is None:
        print(f"chatstats: chat {args.chat_id} has no open conversation", file=sys.stderr)
        return 1
    print(_format_sealed(result))
    return 0


async def _apply(path: Path, args: argparse.Namespace, now_ns: int) -> Any:
    """Through `Database`, as the daemon does: its writer runs each change in one transaction,
    and a read takes no write lock, so it never waits for (or delays) a running daemon."""
    import sqlite3

    from chatstats.db import Database
    from chatstats.ingest import sealer

    db = Database(path, readers=1)
    try:
        try:
            await db.open()
        except sqlite3.Error as exc:
            raise ChatStatsError(f"cannot open {path}: {exc}") from None
        if args.command == "tracker-status":
            return await db.read(sealer.status, now_ns)
        if args.command == "check-sealing":
            return await db.write(_check_sealing, now_ns)
        return await db.write(sealer.force_seal, args.chat_id, now_ns)
    except sqlite3.Error as exc:
        raise ChatStatsError(f"database error: {exc}") from None
    finally:
        db.close()


def _check_sealing(conn: Any, now_ns: int) -> Any:
    """Timers for conversations that have none yet, then every due one sealed: one unit."""
    from chatstats.ingest import sealer

    sealer.ensure_timers(conn)
    return sealer.seal_due(conn, now_ns)


def _duration(seconds: float) -> str:
    s = int(abs(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {sec:02d}s"


def _format_sealed(s: Any) -> str:
    from chatstats.ingest.sealer import iso_time

    return (
        f"sealed conversation {s.conversation_id} in chat {s.chat_id}: "
        f"{s.message_count:,} message{'' if s.message_count == 1 else 's'}, "
        f"last at {iso_time(s.end_ns)}"
    )


def _format_status(items: list[Any], now_ns: int, *, verbose: bool) -> str:
    from chatstats.ingest.sealer import iso_time

    if not items:
        return "no open conversations"
    overdue = [c for c in items if c.seconds_left < 0]
    chats = len({c.chat_id for c in items})
    lines = [
        f"{len(items):,} open conversation{'' if len(items) == 1 else 's'} in {chats:,} "
        f"chat{'' if chats == 1 else 's'}; {len(overdue):,} overdue"
    ]
    upcoming = [c for c in items if c.seconds_left >= 0]
    if upcoming:
        first = upcoming[0]
        lines.append(
            f"next seal: conversation {first.conversation_id} in chat {first.chat_id} "
            f"in {_duration(first.seconds_left)}"
        )
    if overdue:
        lines.append("overdue conversations are sealed by the daemon or `chatstats check-sealing`")
    if verbose:
        lines.append(
            f"{'chat':>8} {'conversation':>12} {'messages':>8}  {'last message':<27}  "
            f"{'seals at':<27}  in"
        )
        for c in items:
            left = _duration(c.seconds_left)
            when = f"overdue {left}" if c.seconds_left < 0 else left
            if not c.scheduled:
                when += " (no timer yet)"
            lines.append(
                f"{c.chat_id:>8} {c.conversation_id:>12} {c.message_count:>8,}  "
                f"{iso_time(c.last_message_ns):<27}  {iso_time(c.due_ns):<27}  {when}"
            )
    return "\n".join(lines)
