"""What every command group shares: the common flags and settings from flags and env.

A module of its own so the command modules and the parser (`chatstats.cli`) import it
without importing each other.
"""

from __future__ import annotations

import argparse
from typing import Any

from chatstats import config


def common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="app data folder (env CHATSTATS_DATA_DIR)")


def source_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="Messages database chat.db (env CHATSTATS_SOURCE)")
    p.add_argument(
        "--addressbook", help="AddressBook folder or .abcddb file (env CHATSTATS_ADDRESSBOOK)"
    )


def settings_from(args: argparse.Namespace, **extra: Any) -> config.Settings:
    overrides = {
        k: getattr(args, k, None) for k in ("data_dir", "source", "addressbook", "host", "port")
    }
    overrides.update(extra)
    return config.load(overrides)
