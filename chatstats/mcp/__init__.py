"""`chatstats mcp`: the chatbot's read-only tools as a Model Context Protocol server on stdio.

Kept light (the SDK is imported by server.py only when the command runs), so the CLI's other
commands don't pay for it.
"""

from __future__ import annotations

import argparse
from typing import Any

COMMAND = "mcp"


def add_parser(sub: Any, common: Any) -> None:
    p = sub.add_parser(COMMAND, help="serve the read-only chatbot tools over MCP on stdio")
    common(p)


def run(args: argparse.Namespace, settings: Any) -> int:
    from chatstats.mcp.server import main

    return main(settings)
