"""`chatstats serve` (the daemon) and `chatstats demo` (a sample library, imported and served
while a simulated correspondent writes into it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from chatstats import config, log
from chatstats.cli.common import common_flags, settings_from, source_flags

COMMANDS = ("serve", "demo")


def add_serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the daemon: import what is new, then serve HTTP/SSE")
    source_flags(p)
    common_flags(p)
    p.add_argument("--host", help="listen address (env CHATSTATS_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port; 0 picks a free one (env CHATSTATS_PORT)")


def add_demo_parser(sub: Any) -> None:
    """Apart from `serve`'s so `chatstats --help` keeps listing serve, import, demo."""
    p = sub.add_parser("demo", help="make a sample library, import it and serve it")
    common_flags(p)
    p.add_argument("--messages", type=int, default=5000, help="size of the sample (default 5000)")
    p.add_argument("--interval", type=float, default=4.0, help="seconds between simulated messages")
    p.add_argument("--port", type=int, help="port; 0 picks a free one")


def run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        settings = settings_from(args)
        log.configure(settings.effective_log_level)
        return _serve(settings)
    return _demo(args)


def _serve(settings: config.Settings) -> int:
    import anyio

    from chatstats.daemon import serve

    anyio.run(serve, settings)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from chatstats.sample.generate import make_library

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
