"""docs/api.md documents exactly the routes the app serves: a route added, removed or renamed
without its reference fails here."""

from __future__ import annotations

import re
import time
from pathlib import Path

from starlette.routing import Route

from chatstats.api.app import create_app
from chatstats.api.state import AppState
from chatstats.config import Settings
from chatstats.db import Database

API_MD = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def _served(tmp_path: Path) -> set[tuple[str, str]]:
    db = Database(tmp_path / "app.db")
    state = AppState(
        settings=Settings(data_dir=str(tmp_path)), db=db, token="t", started_ns=time.time_ns()
    )
    app = create_app(state)
    out = set()
    for route in app.router.routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD":
                out.add((method, path))
    return out


def _documented() -> set[tuple[str, str]]:
    text = API_MD.read_text()
    return set(re.findall(r"^### `(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]*)`", text, re.M))


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path):
    served = _served(tmp_path)
    documented = _documented()
    assert served, "no routes found"
    assert sorted(served - documented) == [], "served but not in docs/api.md"
    assert sorted(documented - served) == [], "in docs/api.md but not served"
