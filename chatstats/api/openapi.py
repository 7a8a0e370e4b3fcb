"""`GET /openapi.json`: an OpenAPI 3.1 document generated from `chatstats.api.schemas`.

Answer, body and parameter schemas come from the msgspec types there
(`msgspec.json.schema_components`), so the document cannot drift from the types; the tests
check the types against the real answers and the router. The document is built once per
process, on first request: it depends only on code.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from chatstats import __version__
from chatstats.api.schemas import JSON, OPERATIONS, Error, Op

REF = "#/components/schemas/{name}"

_CONVERTOR = re.compile(r"\{(\w+)(?::\w+)?\}")

_STATUS_TEXT = {
    200: "OK",
    400: "Bad request: a parameter or the body is malformed",
    401: "Missing or wrong bearer token",
    403: "Refused: the Host is not loopback, or a cookie request lacks this page's Origin",
    404: "No such item or route",
    503: "Not ready yet (the vector index is loading)",
}


def openapi_path(starlette_path: str) -> str:
    """`/api/chats/{id:int}` -> `/api/chats/{id}`."""
    return _CONVERTOR.sub(r"{\1}", starlette_path)


def router_operations(routes: Iterable[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) of every route, mounts walked; HEAD goes with GET."""
    out: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            out |= router_operations(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            for method in route.methods or ("GET",):
                if method != "HEAD":
                    out.add((method, openapi_path(prefix + route.path)))
        else:  # a WebSocketRoute or a custom BaseRoute: no HTTP method to document
            out.add(("WEBSOCKET", openapi_path(prefix + getattr(route, "path", "?"))))
    return out


def document_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, item in document["paths"].items() for m in item}


def _error_statuses(op: Op) -> list[int]:
    statuses = {403, *op.errors}
    if not op.open:
        statuses.add(401)
    if op.query or op.body or op.path or op.headers:
        statuses.add(400)
    if op.path:
        statuses.add(404)
    return sorted(statuses)


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter is absent rather than null: `int | None` becomes the `int` schema."""
    options = schema.get("anyOf")
    if options is None:
        return schema
    kept = [s for s in options if s.get("type") != "null"]
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(kept) == 1:
        return {**kept[0], **rest}
    return {**rest, "anyOf": kept}


def _parameters(
    struct: type, where: str, schemas: dict[str, Any], components: dict[str, Any]
) -> list[dict[str, Any]]:
    """One parameter per field of `struct` (its wire name), with the field's schema."""
    name = struct.__name__
    # Parameter Structs are inlined: their own component is dropped below.
    props: dict[str, Any] = schemas[name]["properties"]
    required = set(schemas[name].get("required", ()))
    out = []
    for field, schema in props.items():
        schema = dict(_strip_null(schema))
        description = schema.pop("description", None)
        if schema.get("default", 0) is None:
            del schema["default"]
        param: dict[str, Any] = {
            "name": field,
            "in": where,
            "required": where == "path" or field in required,
            "schema": schema,
        }
        if description:
            param["description"] = description
        if where == "query":
            param["allowEmptyValue"] = True  # the routes read `?limit=` as no limit given
        if schema.get("type") == "array":
            param["style"], param["explode"] = "form", True
        out.append(param)
    components.pop(name, None)
    return out


def _content(media: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    return {media: {"schema": schema if schema is not None else {"type": "string"}}}


def build() -> dict[str, Any]:
    """The whole document, from `OPERATIONS`."""
    types: list[Any] = [Error]
    for op in OPERATIONS.values():
        types += [t for t in (op.answer, op.body, op.query, op.path, op.headers) if t is not None]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    by_type = dict(zip(types, refs, strict=True))
    all_schemas = dict(components)

    error_ref = by_type[Error]
    paths: dict[str, dict[str, Any]] = {}
    for (method, starlette_path), op in OPERATIONS.items():
        params: list[dict[str, Any]] = []
        for struct, where in ((op.path, "path"), (op.query, "query"), (op.headers, "header")):
            if struct is not None:
                params += _parameters(struct, where, all_schemas, components)
        responses: dict[str, Any] = {}
        ok: dict[str, Any] = {
            "description": op.description or _STATUS_TEXT[200],
            "content": _content(
                op.media if op.answer is None else JSON,
                None if op.answer is None else by_type[op.answer],
            ),
        }
        if op.paged:
            ok["headers"] = {
                "Link": {
                    "description": 'the next page: `<URL>; rel="next"`, on full pages only',
                    "schema": {"type": "string"},
                }
            }
        responses["200"] = ok
        for status in _error_statuses(op):
            responses[str(status)] = {
                "description": _STATUS_TEXT.get(status, "Error"),
                "content": _content(JSON, error_ref),
            }
        operation: dict[str, Any] = {
            "operationId": f"{method.lower()}_{_slug(starlette_path)}",
            "summary": op.summary,
            "tags": [op.tag],
            "responses": responses,
        }
        if params:
            operation["parameters"] = params
        if op.body is not None:
            operation["requestBody"] = {
                "required": False,
                "content": _content(JSON, by_type[op.body]),
            }
        if op.open:
            operation["security"] = []
        paths.setdefault(openapi_path(starlette_path), {})[method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ChatStats",
            "version": __version__,
            "description": (
                "The local ChatStats daemon: iMessage history, analysis, search, statistics "
                "and live streams. Every route but /api/health and the web page's files needs "
                "`Authorization: Bearer <token>`; requests whose Host is not loopback are refused."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", openapi_path(path).lower()).strip("_") or "root"


@functools.cache
def document_bytes() -> bytes:
    return msgspec.json.encode(build())


async def openapi_json(request: Request) -> Response:
    return Response(document_bytes(), media_type="application/json")
