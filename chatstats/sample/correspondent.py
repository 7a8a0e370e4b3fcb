"""A simulated correspondent: writes into a chat.db the way Messages.app does, live.

Used by `chatstats demo` (so a newcomer sees messages arrive), by the live-sync tests (a
real writer process against a real chat.db in WAL mode) and by scripts/bench_live.py.
Each step is its own short transaction, like Messages.app's; rows are inserted and then
updated in place (sent → delivered → read), with the occasional tapback, edit and unsend.

Run as a process: `python -m chatstats.sample.correspondent --db chat.db [--count N]
[--interval S]`. It prints one JSON line per write on stdout (`kind`, `guid`, `rowid`,
`committed_ns`) so a harness can measure commit→screen latency. No message text is printed.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
from pathlib import Path

import msgspec

from chatstats.sample.generate.corpus import EN_LINES
from chatstats.sample.writer import MessagesWriter

_ENCODER = msgspec.json.Encoder()


class Correspondent:
    """Plays the other side of the busiest 1:1 chat (and sometimes a group)."""

    def __init__(self, db: Path, *, seed: int = 0, out=None) -> None:  # type: ignore[no-untyped-def]
        self.writer = MessagesWriter(db, create=False)  # fresh GUIDs every run, like Messages
        self.rng = random.Random(seed)
        self.out = out if out is not None else sys.stdout
        self.chat, self.sender = self._pick_chat()
        self.mine: list[tuple[int, str]] = []
        self.theirs: list[tuple[int, str]] = []

    def _pick_chat(self) -> tuple[int, int]:
        conn = self.writer.conn
        row = conn.execute(
            "SELECT j.chat_id FROM chat_message_join j JOIN chat c ON c.ROWID = j.chat_id"
            " WHERE c.style = 45 GROUP BY j.chat_id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        chats = [c for c, info in self.writer.chats.items() if not info.is_group and info.handles]
        chat = row[0] if row and row[0] in self.writer.chats else chats[0]
        return chat, self.writer.chats[chat].handles[0]

    def _emit(self, kind: str, rowid: int, guid: str) -> None:
        line = {"kind": kind, "rowid": rowid, "guid": guid, "committed_ns": time.time_ns()}
        self.out.write(_ENCODER.encode(line).decode() + "\n")
        self.out.flush()

    def text(self) -> str:
        return self.rng.choice(EN_LINES)

    def receive(self) -> tuple[int, str]:
        rowid, guid = self.writer.message(
            self.chat, self.text(), from_me=False, sender=self.sender, date=time.time_ns()
        )
        self.theirs.append((rowid, guid))
        self._emit("message", rowid, guid)
        return rowid, guid

    def reply(self) -> tuple[int, str]:
        """As Messages sends: inserted unsent, then sent and delivered a moment later."""
        now = time.time_ns()
        rowid, guid = self.writer.message(
            self.chat, self.text(), from_me=True, date=now, sent=False
        )
        self._emit("message", rowid, guid)
        self.writer.mark_sent(rowid)
        self.writer.deliver(rowid, time.time_ns())
        self.mine.append((rowid, guid))
        return rowid, guid

    def react(self) -> None:
        if not self.mine:
            return
        _rowid, target = self.mine[-1]
        kind = self.rng.choice([2000, 2001, 2003, 2004])
        rowid, guid = self.writer.tapback(
            self.chat, target, kind, from_me=False, sender=self.sender, date=time.time_ns()
        )
        self._emit("tapback", rowid, guid)

    def edit(self) -> None:
        if not self.mine or not self.writer.has("date_edited"):
            return
        rowid, guid = self.mine[-1]
        self.writer.edit(rowid, self.text(), time.time_ns())
        self._emit("edit", rowid, guid)

    def unsend(self) -> None:
        if not self.mine or not self.writer.has("date_edited"):
            return
        rowid, guid = self.mine.pop()
        self.writer.unsend(rowid, time.time_ns())
        self._emit("unsend", rowid, guid)

    def read_theirs(self) -> None:
        if self.theirs:
            rowid, guid = self.theirs[-1]
            self.writer.read(rowid, time.time_ns())
            self._emit("read", rowid, guid)

    def step(self) -> None:
        """One turn of a plausible conversation."""
        roll = self.rng.random()
        self.receive()
        if roll < 0.5:
            self.read_theirs()
            self.reply()
        if roll < 0.15:
            self.react()
        elif roll < 0.2:
            self.edit()
        elif roll < 0.22:
            self.unsend()

    def close(self) -> None:
        self.writer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="chat.db to write into (must exist)")
    ap.add_argument("--count", type=int, default=0, help="messages to receive (0: forever)")
    ap.add_argument("--interval", type=float, default=3.0, help="seconds between turns")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plain", action="store_true", help="only incoming messages, no extras")
    args = ap.parse_args(argv)
    who = Correspondent(Path(args.db), seed=args.seed)
    n = 0
    try:
        while args.count == 0 or n < args.count:
            try:
                who.receive() if args.plain else who.step()
            except sqlite3.OperationalError as exc:  # Messages-like: retry a busy moment
                print(f"correspondent: {exc}; retrying", file=sys.stderr)
            n += 1
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    finally:
        who.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
