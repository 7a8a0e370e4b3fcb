"""The `chatstats` command line.

Exit status: 0 success, 1 failure with a one-line reason on stderr, 2 bad usage. `serve`
logs JSON lines to stdout (Electron reads them); one-shot commands log to stderr so their
stdout carries only their own output.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from chatstats import __version__, config, errors, log, mcp
from chatstats.errors import ChatStatsError
from chatstats.stats import report


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="app data folder (env CHATSTATS_DATA_DIR)")


def _source_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="Messages database chat.db (env CHATSTATS_SOURCE)")
    p.add_argument(
        "--addressbook", help="AddressBook folder or .abcddb file (env CHATSTATS_ADDRESSBOOK)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatstats",
        description="Import your iMessage history, group it into conversations, and serve it.",
    )
    parser.add_argument("--version", action="version", version=f"chatstats {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the daemon: import what is new, then serve HTTP/SSE")
    _source_flags(p)
    _common(p)
    p.add_argument("--host", help="listen address (env CHATSTATS_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port; 0 picks a free one (env CHATSTATS_PORT)")

    p = sub.add_parser("import", help="import the whole history once, with progress and a summary")
    _source_flags(p)
    p.add_argument("--backup", help="an iPhone backup folder instead of a chat.db")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("demo", help="make a sample library, import it and serve it")
    _common(p)
    p.add_argument("--messages", type=int, default=5000, help="size of the sample (default 5000)")
    p.add_argument("--interval", type=float, default=4.0, help="seconds between simulated messages")
    p.add_argument("--port", type=int, help="port; 0 picks a free one")
    _tracker_parsers(sub)
    _analysis_parsers(sub)
    report.add_parsers(sub, _common)
    mcp.add_parser(sub, _common)
    return parser


def _settings(args: argparse.Namespace, **extra: Any) -> config.Settings:
    overrides = {
        k: getattr(args, k, None) for k in ("data_dir", "source", "addressbook", "host", "port")
    }
    overrides.update(extra)
    return config.load(overrides)


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # everything the daemon writes holds private data
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            settings = _settings(args)
            log.configure(settings.effective_log_level)
            return _serve(settings)
        if args.command == "import":
            settings = _settings(args)
            level = settings.effective_log_level if settings.debug else "WARNING"
            log.configure(level, stream=sys.stderr)
            return _import(settings, args)
        if args.command == "demo":
            return _demo(args)
        if args.command in _TRACKER_COMMANDS:
            return _tracker_command(args)
        if args.command in _ANALYSIS_COMMANDS:
            return _analysis_command(args)
        if args.command in report.COMMANDS:
            return report.run(args, _settings(args))
        if args.command == mcp.COMMAND:
            return mcp.run(args, _settings(args))
    except errors.REPORTED as exc:
        print(f"chatstats: {errors.public(exc).message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("chatstats: interrupted", file=sys.stderr)
        return 1
    return 2


def _serve(settings: config.Settings) -> int:
    import anyio

    from chatstats.daemon import serve

    anyio.run(serve, settings)
    return 0


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


def _demo(args: argparse.Namespace) -> int:
    from chatstats.sample.library import make_library

    base = config.load({"data_dir": args.data_dir})
    data_dir = Path(args.data_dir) if args.data_dir else Path(base.data_dir) / "demo"
    library = data_dir / "sample"
    if not (library / "chat.db").exists():
        print(
            f"making a sample library of {args.messages:,} messages in {library}", file=sys.stderr
        )
        make_library(library, messages=args.messages, seed=7)
    settings = config.load(
        {
            "data_dir": str(data_dir),
            "source": str(library / "chat.db"),
            "addressbook": str(library / "AddressBook"),
            "port": args.port,
        }
    )
    log.configure(settings.effective_log_level)
    # The simulated correspondent is its own process, as Messages.app would be: it writes
    # into chat.db in short WAL transactions and the daemon's live tail picks them up.
    import subprocess

    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chatstats.sample.correspondent",
            "--db",
            str(library / "chat.db"),
            "--interval",
            str(args.interval),
        ],
        stdout=subprocess.DEVNULL,
    )
    print(
        f"a simulated correspondent writes every {args.interval:g} s; Ctrl-C stops the demo",
        file=sys.stderr,
    )
    try:
        return _serve(settings)
    finally:
        writer.terminate()
        writer.wait(timeout=5)


# ---------------------------------------------------------------------------------------------
# Conversation tracker: tracker-status, check-sealing, force-seal (chatstats.ingest.tracker).
# They open the app database directly, so they work with or without a running daemon: SQLite
# serialises the writers, and a daemon's sealer then finds the work already done.

_TRACKER_COMMANDS = ("tracker-status", "check-sealing", "force-seal")


def _tracker_parsers(sub: Any) -> None:
    p = sub.add_parser("tracker-status", help="open conversations and their seal times")
    p.add_argument("-v", "--verbose", action="store_true", help="list each open conversation")
    _common(p)
    p = sub.add_parser("check-sealing", help="seal every conversation whose 90 minutes have passed")
    _common(p)
    p = sub.add_parser("force-seal", help="seal a chat's open conversation now")
    p.add_argument("chat_id", type=int, metavar="CHAT_ID")
    _common(p)


def _tracker_command(args: argparse.Namespace) -> int:
    import sqlite3

    from chatstats.db import connect, migrate, transaction
    from chatstats.ingest import tracker

    settings = _settings(args)
    log.configure(settings.effective_log_level if settings.debug else "WARNING", stream=sys.stderr)
    path = settings.db_path
    if not path.is_file():
        raise ChatStatsError(f"no database at {path}; run chatstats import first")
    try:
        conn = connect(path, write=True)
    except sqlite3.Error as exc:
        raise ChatStatsError(f"cannot open {path}: {exc}") from None
    try:
        migrate(conn)
        now_ns = time.time_ns()
        # A read takes no write lock, so it never waits for (or delays) a running daemon.
        with transaction(conn, write=args.command != "tracker-status"):
            if args.command == "tracker-status":
                result: Any = tracker.status(conn, now_ns)
            elif args.command == "check-sealing":
                tracker.ensure_timers(conn)
                result = tracker.seal_due(conn, now_ns)
            else:
                result = tracker.force_seal(conn, args.chat_id, now_ns)
    except sqlite3.Error as exc:
        raise ChatStatsError(f"database error: {exc}") from None
    finally:
        conn.close()

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


def _duration(seconds: float) -> str:
    s = int(abs(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {sec:02d}s"


def _format_sealed(s: Any) -> str:
    from chatstats.ingest.tracker import iso_time

    return (
        f"sealed conversation {s.conversation_id} in chat {s.chat_id}: "
        f"{s.message_count:,} message{'' if s.message_count == 1 else 's'}, "
        f"last at {iso_time(s.end_ns)}"
    )


def _format_status(items: list[Any], now_ns: int, *, verbose: bool) -> str:
    from chatstats.ingest.tracker import iso_time

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


# ---------------------------------------------------------------------------------------------
# Analysis: passes, stats, missing, backfill, backfill-all, jobs, retry (chatstats.analysis).
# They open the app database directly, so they work with or without a running daemon; a
# daemon's dispatcher picks up the jobs they queue at its next periodic refill.

_ANALYSIS_COMMANDS = ("passes", "stats", "missing", "backfill", "backfill-all", "jobs", "retry")


def _analysis_parsers(sub: Any) -> None:
    p = sub.add_parser("passes", help="list analysis passes and whether analysis can run")
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)
    p = sub.add_parser("stats", help="analysis coverage per pass")
    p.add_argument("--chat-id", type=int, help="one chat only")
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)
    p = sub.add_parser("missing", help="conversations lacking a pass")
    p.add_argument("--chat-id", type=int, help="one chat only")
    p.add_argument("--pass", dest="pass_name", metavar="PASS", help="one pass only")
    p.add_argument("--limit", type=int, default=20, help="conversations listed per pass")
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)
    p = sub.add_parser("backfill", help="queue a pass over existing conversations lacking it")
    p.add_argument("pass_name", metavar="PASS")
    p.add_argument("--dry-run", action="store_true", help="only count what would be queued")
    p.add_argument("--limit", type=int, help="at most this many conversations")
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)
    p = sub.add_parser("backfill-all", help="queue every enabled pass where it is missing")
    p.add_argument("--dry-run", action="store_true", help="only count what would be queued")
    p.add_argument("--limit", type=int, help="at most this many conversations per pass")
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)
    p = sub.add_parser("jobs", help="list analysis jobs (e.g. --state dead)")
    p.add_argument("--state", choices=("pending", "running", "done", "dead"))
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)
    p = sub.add_parser("retry", help="retry a dead analysis job (or --all-dead)")
    p.add_argument("job_id", type=int, nargs="?", metavar="JOB_ID")
    p.add_argument("--all-dead", action="store_true", help="retry every dead job")
    _common(p)


def _analysis_command(args: argparse.Namespace) -> int:
    import anyio

    settings = _settings(args)
    log.configure(settings.effective_log_level if settings.debug else "WARNING", stream=sys.stderr)
    if args.command == "retry" and (args.job_id is None) == (not args.all_dead):
        print("chatstats: give either JOB_ID or --all-dead", file=sys.stderr)
        return 2
    if getattr(args, "limit", None) is not None and args.limit < 1:
        print("chatstats: --limit must be 1 or more", file=sys.stderr)
        return 2
    code, text = anyio.run(_analysis_run, settings, args)
    if text:
        print(text)
    return code


async def _analysis_run(settings: config.Settings, args: argparse.Namespace) -> tuple[int, str]:
    import sqlite3

    from chatstats.analysis.service import AnalysisService
    from chatstats.db import Database

    path = settings.db_path
    if not path.is_file():
        if args.command == "passes":
            from chatstats.analysis import passes as passes_mod

            found = passes_mod.load()
            rows = [p.info() for p in found.all()]
            if args.json:
                return 0, msgspec.json.encode({"passes": rows}).decode()
            return 0, _format_passes(rows, None, [str(e) for e in found.errors])
        raise ChatStatsError(f"no database at {path}; run chatstats import first")
    db = Database(path, readers=1)
    try:
        await db.open()
        svc = AnalysisService(db, settings=settings)
        return await _analysis_do(svc, args)
    except sqlite3.Error as exc:
        raise ChatStatsError(f"database error: {exc}") from None
    finally:
        db.close()


async def _analysis_do(svc: Any, args: argparse.Namespace) -> tuple[int, str]:
    from chatstats.analysis.service import job_json

    def out(data: Any, text: str) -> tuple[int, str]:
        return 0, msgspec.json.encode(data).decode() if getattr(args, "json", False) else text

    cmd = args.command
    if cmd == "passes":
        status = await svc.status()
        rows = svc.list_passes()
        return out({"passes": rows, "status": status}, _format_passes(rows, status, None))
    if cmd == "stats":
        cov = await svc.coverage(args.chat_id)
        return out(cov, _format_coverage(cov))
    if cmd == "missing":
        items = await svc.missing(chat_id=args.chat_id, pass_name=args.pass_name, limit=args.limit)
        return out(items, _format_missing(items))
    if cmd in ("backfill", "backfill-all"):
        names = [args.pass_name] if cmd == "backfill" else None
        result = await svc.backfill(names, dry_run=args.dry_run, limit=args.limit)
        return out(result, _format_backfill(result))
    if cmd == "jobs":
        jobs = [job_json(j) for j in await svc.jobs(state=args.state, limit=args.limit)]
        return out(jobs, _format_jobs(jobs))
    if args.all_dead:
        ids = await svc.retry_all_dead()
        return 0, f"{len(ids):,} dead job{'' if len(ids) == 1 else 's'} queued again"
    job = job_json(await svc.retry(args.job_id))
    run = f" (run {job['run_id']})" if job["run_id"] else ""
    return 0, f"job {job['id']} ({job['pass']}, conversation {job['conversation_id']}) queued{run}"


def _format_passes(rows: list[dict[str, Any]], status: Any, errors: list[str] | None) -> str:
    lines = [
        f"{'pass':<20} {'version':>7}  {'trigger':<7} {'priority':>8}  {'enabled':<7}  category"
    ]
    for r in rows:
        lines.append(
            f"{r['name']:<20} {r['version']:>7}  {r['trigger']:<7} {r['priority']:>8}  "
            f"{'yes' if r['enabled'] else 'no':<7}  {r['category']}"
        )
    if status is not None:
        jobs = status["jobs"]
        model = status["message"] or f"model {status['model']}"
        lines.append(
            f"analysis: {model}; jobs pending {jobs['pending']:,}, running {jobs['running']:,},"
            f" done {jobs['done']:,}, dead {jobs['dead']:,}"
        )
        errors = status["pass_errors"]
    for e in errors or []:
        lines.append(f"broken pass file skipped: {e}")
    return "\n".join(lines)


def _format_coverage(cov: dict[str, Any]) -> str:
    head = "all chats" if cov["chat_id"] is None else f"chat {cov['chat_id']}"
    lines = [
        f"analysis coverage, {head}",
        f"{'pass':<20} {'convs':>8} {'analysed':>9} {'missing':>8} {'queued':>7} {'dead':>6}"
        f" {'covered':>8}",
    ]
    for r in cov["passes"]:
        lines.append(
            f"{r['pass']:<20} {r['conversations']:>8,} {r['analysed']:>9,} {r['missing']:>8,}"
            f" {r['queued']:>7,} {r['dead']:>6,} {r['percentage']:>7.1f}%"
        )
    lines.append("(sealed passes count sealed conversations; live passes count open ones)")
    return "\n".join(lines)


def _format_missing(items: list[dict[str, Any]]) -> str:
    lines = []
    for item in items:
        lines.append(f"{item['pass']} (v{item['version']}): {item['missing']:,} missing")
        for c in item["conversations"]:
            state = f"  job {c['job_state']}" if c["job_state"] else ""
            lines.append(
                f"  conversation {c['conversation_id']:>8} in chat {c['chat_id']:>6}:"
                f" {c['message_count']:,} messages{state}"
            )
    return "\n".join(lines) or "no passes"


def _format_backfill(result: dict[str, Any]) -> str:
    verb = "would queue" if result["dry_run"] else "queued"
    lines = [f"{name}: {verb} {n:,}" for name, n in result["passes"].items()]
    if result["dry_run"]:
        lines.append(f"dry run: {result['total']:,} job{'' if result['total'] == 1 else 's'}")
    elif result["run_id"]:
        lines.append(f"run {result['run_id']}: {result['total']:,} jobs queued")
    else:
        lines.append("nothing to queue")
    return "\n".join(lines)


def _format_jobs(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "no jobs"
    lines = [
        f"{'id':>8} {'state':<8} {'pass':<18} {'conversation':>12} {'attempts':>8}  last error"
    ]
    for j in jobs:
        lines.append(
            f"{j['id']:>8} {j['state']:<8} {j['pass']:<18} {j['conversation_id']:>12}"
            f" {j['attempts']:>3}/{j['max_attempts']:<4}  {j['last_error'] or ''}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
