"""The import rules only hold if they name every module they mean: a new route module left out
of the independence contract could import another route unnoticed, so this test keeps the
contract's list equal to the modules that define routes."""

from __future__ import annotations

import configparser
import importlib
import pkgutil
from pathlib import Path

import chatstats.api

ROOT = Path(__file__).resolve().parent.parent


def _route_modules() -> set[str]:
    """Modules of chatstats.api that hand routes to the app (ROUTES, JSON_ROUTES or a handler
    the app mounts directly, like openapi_json)."""
    found = set()
    for info in pkgutil.iter_modules(chatstats.api.__path__):
        name = f"chatstats.api.{info.name}"
        module = importlib.import_module(name)
        if any(hasattr(module, attr) for attr in ("ROUTES", "JSON_ROUTES", "openapi_json")):
            found.add(name)
    return found


def test_every_route_module_is_in_the_independence_contract() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    contract = config["importlinter:contract:routes-independent"]
    assert contract["type"] == "independence"
    listed = set(contract["modules"].split())
    routes = _route_modules()
    assert "chatstats.api.imessage" in routes and "chatstats.api.common" not in routes
    assert listed == routes
