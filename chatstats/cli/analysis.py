"""Analysis from the command line: passes, stats, missing, backfill, backfill-all, jobs, retry
(chatstats.analysis).

They open the app database directly, so they work with or without a running daemon; a
daemon's dispatcher picks up the jobs they queue at its next periodic refill.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from chatstats import config, log
from chatstats.cli.common import common_flags, settings_from
from chatstats.errors import ChatStatsError

COMMANDS = ("passes", "stats", "missing", "backfill", "backfill-all", "jobs", "retry")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("passes", help="list analysis passes and whether analysis can run")
    p.add_argument("--json", action="store_true", help="print JSON")
    common_flags(p)
    p = sub.add_parser("stats", help="analysis coverage per pass")
    p.add_argument("--chat-id", type=int, help="one chat only")
    p.add_argument("--json", action="store_true", help="print JSON")
    common_flags(p)
    p = sub.add_parser("missing", help="conversations lacking a pass")
    p.add_argument("--chat-id", type=int, help="one chat only")
    p.add_argument("--pass", dest="pass_name", metavar="PASS", help="one pass only")
    p.add_argument("--limit", type=int, default=20, help="conversations listed per pass")
    p.add_argument("--json", action="store_true", help="print JSON")
    common_flags(p)
    p = sub.add_parser("backfill", help="queue a pass over existing conversations lacking it")
    p.add_argument("pass_name", metavar="PASS")
    p.add_argument("--dry-run", action="store_true", help="only count what would be queued")
    p.add_argument("--limit", type=int, help="at most this many conversations")
    p.add_argument("--json", action="store_true", help="print JSON")
    common_flags(p)
    p = sub.add_parser("backfill-all", help="queue every enabled pass where it is missing")
    p.add_argument("--dry-run", action="store_true", help="only count what would be queued")
    p.add_argument("--limit", type=int, help="at most this many conversations per pass")
    p.add_argument("--json", action="store_true", help="print JSON")
    common_flags(p)
    p = sub.add_parser("jobs", help="list analysis jobs (e.g. --state dead)")
    p.add_argument("--state", choices=("pending", "running", "done", "dead"))
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print JSON")
    common_flags(p)
    p = sub.add_parser("retry", help="retry a dead analysis job (or --all-dead)")
    p.add_argument("job_id", type=int, nargs="?", metavar="JOB_ID")
    p.add_argument("--all-dead", action="store_true", help="retry every dead job")
    common_flags(p)


def run(args: argparse.Namespace) -> int:
    import anyio

    settings = settings_from(args)
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
