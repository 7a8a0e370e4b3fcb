"""Context definitions: named recipes of retrievers, seeded from a file at every start.

Why a file and a table: the file (prompts/context/definitions.toml, shipped in the wheel) is
what a contributor edits and reviews; the table is what the daemon, the CLI and the chatbot
read, whatever process seeded it. Seeding is idempotent: an unchanged entry is left alone
(same hash), a changed one replaced, one gone from the file removed, so a restart never
duplicates or resurrects a definition.

A definition is checked when the file is read: known retrievers only, known parameters, shares
in (0, 1], scopes among chat, contact and conversation. A bad file is a DefinitionsError naming
the entry; the daemon logs it and serves without new definitions (seeding never blocks start).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatstats.analysis.passes import prompts_dir
from chatstats.context import store
from chatstats.context.retrievers import SCOPES, check_params
from chatstats.errors import BadRequest, ChatStatsError

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
MAX_RETRIEVERS = 10


class DefinitionsError(ChatStatsError):
    code = "bad_definitions"
    status = 500


@dataclass(frozen=True)
class Step:
    retriever: str
    share: float | None  # None: an equal part of what is left
    params: dict[str, Any]

    def json(self) -> dict[str, Any]:
        return {"retriever": self.retriever, "share": self.share, "params": self.params}


@dataclass(frozen=True)
class Definition:
    name: str
    title: str
    description: str
    scopes: tuple[str, ...]
    steps: tuple[Step, ...]

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "scopes": list(self.scopes),
            "retrievers": [s.json() for s in self.steps],
        }


def definitions_path() -> Path:
    return prompts_dir() / "context" / "definitions.toml"


def check_step(raw: Any, where: str) -> Step:
    """One {retriever, share?, params?} (or a bare name); a BadRequest naming `where`."""
    if isinstance(raw, str):
        raw = {"retriever": raw}
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} must be a retriever name or an object")
    unknown = sorted(set(raw) - {"retriever", "share", "params"})
    if unknown:
        raise BadRequest(f"{where} has an unknown field {unknown[0][:40]!r}")
    name = raw.get("retriever")
    if not isinstance(name, str):
        raise BadRequest(f"{where}.retriever must be a retriever name")
    share = raw.get("share")
    if share is not None and (
        isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1
    ):
        raise BadRequest(f"{where}.share must be a number above 0 and at most 1")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise BadRequest(f"{where}.params must be an object")
    check_params(name, params)
    return Step(name, None if share is None else float(share), params)


def _parse(entry: Any, at: str) -> Definition:
    if not isinstance(entry, dict):
        raise DefinitionsError(f"{at} is not a table")
    try:
        name = entry["name"]
        if not isinstance(name, str) or not name or set(name) - _NAME_CHARS or len(name) > 64:
            raise DefinitionsError(f"{at}: name must be 1 to 64 of a-z, 0-9 and _")
        title, description = entry.get("title", name), entry.get("description", "")
        scopes = entry.get("scopes", [])
        if not isinstance(title, str) or not isinstance(description, str):
            raise DefinitionsError(f"{name}: title and description must be text")
        if not isinstance(scopes, list) or any(s not in SCOPES for s in scopes):
            raise DefinitionsError(f"{name}: scopes must be a list of {', '.join(SCOPES)}")
        raw_steps = entry.get("retrievers")
        if not isinstance(raw_steps, list) or not 1 <= len(raw_steps) <= MAX_RETRIEVERS:
            raise DefinitionsError(f"{name}: retrievers must list 1 to {MAX_RETRIEVERS}")
        steps = tuple(check_step(s, f"{name}.retrievers[{i}]") for i, s in enumerate(raw_steps))
    except KeyError:
        raise DefinitionsError(f"{at} has no name") from None
    except DefinitionsError:
        raise
    except ChatStatsError as exc:
        raise DefinitionsError(exc.message) from None
    return Definition(name, title, description, tuple(scopes), steps)


def load(path: Path | None = None) -> list[Definition]:
    path = path or definitions_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DefinitionsError(f"cannot read {path.name}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionsError(f"{path.name} is not valid TOML: {exc}") from None
    entries = raw.get("definition", [])
    if not isinstance(entries, list):
        raise DefinitionsError(f"{path.name}: [[definition]] must be an array of tables")
    out = [_parse(e, f"{path.name} definition {i}") for i, e in enumerate(entries)]
    names = [d.name for d in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DefinitionsError(f"{path.name}: definition {dupes[0]} appears twice")
    return out


def seed(conn: sqlite3.Connection, found: list[Definition]) -> dict[str, int]:
    """Make the table hold exactly `found` (inside the caller's write transaction)."""
    now = time.time_ns()
    hashes = store.definition_hashes(conn)
    added = changed = 0
    for position, d in enumerate(found):
        body = d.json()
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if hashes.get(d.name) == digest:
            store.set_position(conn, d.name, position)
            continue
        added += d.name not in hashes
        changed += d.name in hashes
        store.upsert_definition(
            conn,
            {
                "name": d.name,
                "title": d.title,
                "description": d.description,
                "scopes": json.dumps(list(d.scopes)),
                "retrievers": json.dumps(body["retrievers"]),
                "position": position,
                "source_hash": digest,
                "seeded_ns": now,
            },
        )
    removed = store.delete_definitions_except(conn, [d.name for d in found])
    return {"definitions": len(found), "added": added, "changed": changed, "removed": removed}


def from_row(row: sqlite3.Row) -> Definition:
    steps = tuple(
        Step(s["retriever"], s.get("share"), s.get("params") or {})
        for s in json.loads(row["retrievers"])
    )
    return Definition(
        row["name"], row["title"], row["description"], tuple(json.loads(row["scopes"])), steps
    )
