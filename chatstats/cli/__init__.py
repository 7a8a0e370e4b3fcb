"""The `chatstats` command line.

Exit status: 0 success, 1 failure with a one-line reason on stderr, 2 bad usage. `serve`
logs JSON lines to stdout (Electron reads them); one-shot commands log to stderr so their
stdout carries only their own output.

One module per command group (`serve`, `importing`, `sealing`, `analysis`; statistics and the
MCP server bring their own); this module builds the parser and dispatches.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Protocol

from chatstats import __version__, errors, mcp
from chatstats.cli import analysis, importing, sealing, serve
from chatstats.cli.common import common_flags, settings_from
from chatstats.stats import report


class _Group(Protocol):
    """A command module: the subcommands it owns and how it runs one."""

    @property
    def COMMANDS(self) -> tuple[str, ...]: ...

    def run(self, args: argparse.Namespace) -> int: ...


_GROUPS: tuple[_Group, ...] = (serve, importing, sealing, analysis)

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatstats",
        description="Import your iMessage history, group it into conversations, and serve it.",
    )
    parser.add_argument("--version", action="version", version=f"chatstats {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_serve_parser(sub)
    importing.add_parsers(sub)
    serve.add_demo_parser(sub)
    sealing.add_parsers(sub)
    analysis.add_parsers(sub)
    report.add_parsers(sub, common_flags)
    mcp.add_parser(sub, common_flags)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # everything the daemon writes holds private data
    args = build_parser().parse_args(argv)
    try:
        for group in _GROUPS:
            if args.command in group.COMMANDS:
                return group.run(args)
        if args.command in report.COMMANDS:
            return report.run(args, settings_from(args))
        if args.command == mcp.COMMAND:
            return mcp.run(args, settings_from(args))
    except errors.REPORTED as exc:
        print(f"chatstats: {errors.public(exc).message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("chatstats: interrupted", file=sys.stderr)
        return 1
    return 2
