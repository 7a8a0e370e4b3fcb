"""docs/api.md documents exactly the routes the app serves: a route added, removed or renamed
without its reference fails here."""

from __future__ import annotations

import ast
import importlib
import re
import time
from pathlib import Path

import pytest
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


# ---------------------------------------------------------------------------------------------
# Event types: what the code appends to the event log, and what the streams send, is in the
# reference. Read from the source (not from a run) so an event only a rare path appends (a
# reopen, a dead job, a release at shutdown) cannot slip past.

SOURCE = API_MD.parent.parent / "chatstats"


class _Unresolved(Exception):
    """An event type the scanner cannot pin to a string: teach the scanner, don't skip it."""


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _enclosing_function(
    node: ast.AST, parents: dict[ast.AST, ast.AST]
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return node
    return None


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Positional parameters as a caller counts them (a method's `self` left out)."""
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    return names[1:] if names[:1] == ["self"] else names


def _resolve(expr: ast.expr, module: str, where: str) -> str:
    """A literal, or a module-level name (`SEALED`, `sealer.READY`) read from the module."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, ast.Name | ast.Attribute):
        try:
            value = eval(ast.unparse(expr), vars(importlib.import_module(module)))
        except (NameError, AttributeError):
            value = None
        if isinstance(value, str):
            return value
    raise _Unresolved(f"{where}: event type {ast.unparse(expr)!r}")


def _modules() -> list[tuple[str, str, ast.Module]]:
    out = []
    for path in sorted(SOURCE.rglob("*.py")):
        rel = path.relative_to(SOURCE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        out.append((module, str(rel), ast.parse(path.read_text(), str(path))))
    return out


def _is_append(call: ast.Call) -> bool:
    """`append(...)`, `bus.append(...)`, `events.append(...)`, `functools.partial(append, ...)`
    (not `Event(scope=..., type=...)`, which reads one back)."""
    name = ast.unparse(call.func).rsplit(".", 1)[-1]
    if name == "partial" and call.args:
        name = ast.unparse(call.args[0]).rsplit(".", 1)[-1]
    return name == "append"


def emitted_log_types() -> set[str]:
    """Every type passed to an event-log append.

    An append is a call of `append` with keywords `scope=` and `type=` (`bus.append`,
    `events.append`, the `functools.partial` in `EventBus.publish`). Its type is a literal, a module constant,
    or a parameter of the enclosing function: that function forwards a type (`task_event`,
    `publish`), and its callers' argument in that position (or `type=`) is the type instead.
    """
    found: set[str] = set()
    forwarders: dict[str, int] = {}  # function name -> position of its type parameter
    modules = _modules()
    for module, rel, tree in modules:
        parents = _parents(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            kw = {k.arg: k.value for k in node.keywords}
            if "scope" not in kw or "type" not in kw or not _is_append(node):
                continue
            value = kw["type"]
            fn = _enclosing_function(node, parents)
            if isinstance(value, ast.Name) and fn is not None:
                params = _params(fn)
                if value.id in params + [a.arg for a in fn.args.kwonlyargs]:
                    forwarders[fn.name] = params.index(value.id) if value.id in params else -1
                    continue
            found.add(_resolve(value, module, f"{rel}:{node.lineno}"))
    assert {"publish"} <= set(forwarders), "the known forwarders moved"
    found |= _catalogued_in_use(modules)
    for module, rel, tree in modules:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name not in forwarders:
                continue
            kw = {k.arg: k.value for k in node.keywords}
            position = forwarders[name]
            if "type" in kw:
                value = kw["type"]
            elif 0 <= position < len(node.args):
                value = node.args[position]
            else:
                continue  # not given the type, so not a call of the forwarder (a namesake)
            if isinstance(value, ast.Call):
                continue  # a catalogued payload: `_catalogued_in_use` counts it
            found.add(_resolve(value, module, f"{rel}:{node.lineno}"))
    return found


def _catalogued_in_use(modules: list[tuple[str, str, ast.Module]]) -> set[str]:
    """The types of catalogued payloads the code builds or hands on (`catalogue.X(...)`,
    `runs.task_event(conn, job, catalogue.TaskStatus, ...)`), read from the source so a
    catalogued type nothing emits counts as not emitted."""
    from chatstats.events import catalogue

    by_name = {cls.__name__: tag for tag, cls in catalogue.CATALOGUE.items()}
    found = set()
    for module, _rel, tree in modules:
        if module == "chatstats.events.catalogue":
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and ast.unparse(node.value) == "catalogue"
                and node.attr in by_name
            ):
                found.add(by_name[node.attr])
    return found


def sse_event_names() -> set[str]:
    """Every `event:` name a stream sends itself (`ServerSentEvent(event=...)`), apart from
    the event log's types, which the queue streams pass through as `event: <type>`."""
    found = set()
    for module, rel, tree in _modules():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and ast.unparse(node.func) == "ServerSentEvent"):
                continue
            kw = {k.arg: k.value for k in node.keywords}
            if "event" not in kw:
                continue  # the `retry:` preamble
            if ast.unparse(kw["event"]) == "item.type":
                continue  # a log event, covered by the event-type table
            found.add(_resolve(kw["event"], module, f"{rel}:{node.lineno}"))
    return found


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : None if end < 0 else end]


def documented_log_types(text: str) -> set[str]:
    """The first cells of the table under "## Event log event types"."""
    section = _section(text, "## Event log event types")
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))


def documented_sse_events(text: str) -> set[str]:
    """Names in backticks in the streams' section: their tables and their prose."""
    return set(re.findall(r"`([a-z_]+)`", _section(text, "## Server-Sent Events")))


def test_every_event_log_type_is_documented_and_every_documented_type_is_emitted():
    emitted = emitted_log_types()
    assert {"messages_synced", "conversation_reopened", "status", "retry"} <= emitted
    documented = documented_log_types(API_MD.read_text())
    assert sorted(emitted - documented) == [], "appended but not in docs/api.md's table"
    assert sorted(documented - emitted) == [], "in docs/api.md's table but never appended"


def test_the_event_table_check_notices_a_missing_row():
    """The check above can fail: the reference without one row no longer covers the code."""
    text = API_MD.read_text()
    for event_type in ("conversation_reopened", "retry"):
        row = re.compile(rf"^\| `{event_type}` \|.*\n", re.M)
        assert row.search(text), event_type
        assert event_type not in documented_log_types(row.sub("", text))


def test_an_unresolvable_event_type_fails_the_scan():
    tree = ast.parse("events.append(conn, scope='global', type=pick())")
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.keywords)
    with pytest.raises(_Unresolved):
        _resolve(call.keywords[1].value, "chatstats.events.bus", "example")


def test_every_stream_event_is_documented():
    names = sse_event_names()
    assert {"initial", "ready", "update", "heartbeat", "error", "reset", "metrics"} <= names
    assert sorted(names - documented_sse_events(API_MD.read_text())) == []
