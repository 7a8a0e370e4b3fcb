"""`chatstats report` and `chatstats wrapped`: the statistics in a terminal, or as JSON.

Readable at a glance: a table of totals, small unicode bar charts (by year, hour of day) and,
for one chat or contact, a week-by-hour heatmap. `--json` prints the same figures the HTTP
routes return. Only ids and counts leave the database; titles are the chats' own.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from datetime import datetime
from typing import Any

from chatstats.errors import ChatStatsError
from chatstats.stats import service
from chatstats.stats.zone import resolve

COMMANDS = ("report", "wrapped")
_BARS = " ▁▂▃▄▅▆▇█"
_SHADES = " ░▒▓█"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def add_parsers(sub: Any, common: Any) -> None:
    p = sub.add_parser("report", help="the statistics of one chat or contact")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--chat-id", type=int)
    who.add_argument("--contact-id", type=int)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    common(p)
    p = sub.add_parser("wrapped", help="the year in messages")
    p.add_argument("--year", type=int, help="default: this year")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    common(p)


def run(args: argparse.Namespace, settings: Any, out: Any = None) -> int:
    from chatstats.db import connect, migrate

    out = out or sys.stdout
    zone = resolve(settings.timezone)
    path = settings.db_path
    if not path.is_file():
        raise ChatStatsError(f"no database at {path}; run chatstats import first")
    try:
        conn = connect(path, write=True)
        try:
            migrate(conn)  # a database from before the statistics gets its buckets
            today = datetime.now(zone).date()
            lo, hi = service.MIN_NS, service.MAX_NS
            if args.command == "wrapped":
                year = args.year or today.year
                if not 1971 <= year <= 2261:
                    raise ChatStatsError("--year must be from 1971 to 2261")
                fig = service.wrapped(conn, zone, year, today)
            elif args.chat_id is not None:
                fig = service.chat_stats(conn, zone, args.chat_id, lo, hi, today)
            else:
                fig = service.contact_stats(conn, zone, args.contact_id, lo, hi, today)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ChatStatsError(f"database error: {exc}") from None
    if args.json:
        out.write(json.dumps(fig, indent=2) + "\n")
    else:
        out.write((render_wrapped(fig) if args.command == "wrapped" else render_report(fig)) + "\n")
    return 0


def bar(values: list[int]) -> str:
    """One character per value, ▁ to █ scaled to the largest; blank for zero."""
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    return "".join(_BARS[0 if v <= 0 else max(1, round(v / top * 8))] for v in values)


def heatmap(grid: list[list[int]]) -> list[str]:
    top = max((v for row in grid for v in row), default=0)
    lines = ["     " + "".join(f"{h:<3}" if h % 3 == 0 else "" for h in range(24))]
    for d, row in enumerate(grid):
        cells = "".join(
            _SHADES[0 if v <= 0 or top == 0 else max(1, round(v / top * 4))] for v in row
        )
        lines.append(f"{_DAYS[d]}  {cells}")
    return lines


def _table(rows: list[tuple[str, Any]]) -> list[str]:
    width = max(len(k) for k, _ in rows)
    return [f"  {k:<{width}}  {'—' if v is None else v}" for k, v in rows]


def _seconds(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"


def render_report(f: dict[str, Any]) -> str:
    rt = f["response_times"]
    conv = f["conversations"]
    st = f["streaks"]
    lines = [f"Statistics ({f['timezone']})", ""]
    lines += _table(
        [
            ("messages", f["messages"]),
            ("sent / received", f"{f['sent']} / {f['received']}"),
            ("first message", f["first_message_time"]),
            ("last message", f["last_message_time"]),
            (
                "conversations",
                f"{conv['count']} (I started {conv['started_by_me']}, "
                f"they started {conv['started_by_them']})",
            ),
            ("median conversation", conv["median_messages"]),
            (
                "my replies",
                f"{rt['me']['n']}: median {_seconds(rt['me']['median_s'])}, "
                f"p90 {_seconds(rt['me']['p90_s'])}",
            ),
            (
                "their replies",
                f"{rt['them']['n']}: median {_seconds(rt['them']['median_s'])}, "
                f"p90 {_seconds(rt['them']['p90_s'])}",
            ),
            ("longest streak", f"{st['longest_days']} days from {st['longest_start']}"),
            ("current streak", f"{st['current_days']} days"),
            ("reactions given", _counts(f["reactions"]["given"])),
            ("reactions received", _counts(f["reactions"]["received"])),
        ]
    )
    years: dict[str, int] = {}
    for d in f["by_day"]:
        years[d["date"][:4]] = years.get(d["date"][:4], 0) + d["sent"] + d["received"]
    if years:
        lines += ["", "By year  " + " ".join(years), "         " + bar(list(years.values()))]
    hours = [sum(row[h] for row in f["hour_of_week"]) for h in range(24)]
    lines += ["", "By hour  " + bar(hours), "         0     6     12    18   23", ""]
    lines += ["Week by hour", *heatmap(f["hour_of_week"])]
    return "\n".join(lines)


def _counts(c: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])) or "—"


def render_wrapped(f: dict[str, Any]) -> str:
    prev = f["previous_year"]
    change = (
        f"{(f['messages'] - prev['messages']) / prev['messages']:+.0%}" if prev["messages"] else "—"
    )
    busiest = f["busiest_day"]
    lines = [f"{f['year']} in messages ({f['timezone']})", ""]
    lines += _table(
        [
            ("messages", f"{f['messages']} ({change} on {prev['year']})"),
            ("sent / received", f"{f['sent']} / {f['received']}"),
            ("chats / people", f"{f['chats']} / {f['contacts']}"),
            (
                "busiest day",
                None
                if busiest is None
                else f"{busiest['date']} ({busiest['sent'] + busiest['received']})",
            ),
            ("longest streak", f"{f['streaks']['longest_days']} days"),
            (
                "fastest responder",
                None
                if f["fastest_responder"] is None
                else f"contact {f['fastest_responder']['contact_id']}"
                f" ({_seconds(f['fastest_responder']['median_s'])} median)",
            ),
            (
                "most-reacted message",
                None
                if f["most_reacted_message"] is None
                else f"message {f['most_reacted_message']['message_id']}"
                f" ({f['most_reacted_message']['reactions']} reactions)",
            ),
            ("hour you text most", None if f["top_hour"] is None else f"{f['top_hour']:02d}:00"),
        ]
    )
    top = f["top_chats"]
    if top:
        width = max(len(str(t["title"] or t["chat_id"])) for t in top)
        most = top[0]["messages"]
        lines += ["", "Top chats"]
        for t in top:
            n = round(t["messages"] / most * 20)
            lines.append(
                f"  {t['title'] or t['chat_id']!s:<{width}}  {'█' * n:<20} {t['messages']}"
            )
    return "\n".join(lines)
