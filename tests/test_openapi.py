"""`GET /openapi.json` against the code and the running daemon.

(a) the document is valid OpenAPI 3.1; (b) it names exactly the router's routes; (c) every
route's real answer on a sample library (analysis run against the loopback fake model, so
the analysis routes answer with real rows) validates against the document; (d) schemathesis,
property-based, against the daemon over loopback: no 5xx, no status or body the document
does not describe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from starlette.routing import Mount, Route

from chatstats.api import openapi
from chatstats.api.app import create_app
from chatstats.api.state import AppState
from chatstats.config import Settings
from chatstats.db import Database
from chatstats.sample.generate import make_library
from chatstats.testing.fake_llm import ClientError, FakeLLM, Reply, ToolCalls
from tests import daemon_proc

TOKEN = "openapi-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _app(tmp_path: Path) -> Any:
    db = Database(tmp_path / "app.db")
    state = AppState(
        settings=Settings(data_dir=str(tmp_path)), db=db, token="t", started_ns=time.time_ns()
    )
    return create_app(state)


# ---------------------------------------------------------------------------------------------
# (a) and (b): the document alone


def test_the_document_is_valid_openapi_3_1():
    document = openapi.build()
    assert document["openapi"] == "3.1.0"
    validate_spec(document)  # raises on any violation of the 3.1 schema


def test_the_document_names_every_route_of_the_router_and_nothing_else(tmp_path):
    served = openapi.router_operations(_app(tmp_path).routes)
    documented = openapi.document_operations(openapi.build())
    assert ("GET", "/openapi.json") in served
    assert sorted(served - documented) == [], "routes without an entry in schemas.OPERATIONS"
    assert sorted(documented - served) == [], "entries in schemas.OPERATIONS for no route"


def test_the_coverage_check_sees_a_route_without_an_entry_even_inside_a_mount(tmp_path):
    """The comparison above can fail: a mounted route nobody described is reported."""

    async def endpoint(request: Any) -> Any:
        raise AssertionError

    routes = [*_app(tmp_path).routes, Mount("/x", routes=[Route("/y/{n:int}", endpoint)])]
    missing = openapi.router_operations(routes) - openapi.document_operations(openapi.build())
    assert missing == {("GET", "/x/y/{n}")}


def test_every_route_but_health_and_the_page_needs_the_token():
    document = openapi.build()
    open_ops = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if op.get("security") == []
    }
    assert open_ops == {
        ("GET", "/api/health"),
        ("GET", "/"),
        ("GET", "/static/{path}"),
        ("POST", "/api/session"),
    }
    assert document["security"] == [{"bearer": []}]


def test_answer_schemas_come_from_the_msgspec_types():
    """A renamed field (`pass_` -> `pass`) and a forbidden extra field show in the schema."""
    schemas = openapi.build()["components"]["schemas"]
    assert "pass" in schemas["Job"]["properties"] and "pass_" not in schemas["Job"]["properties"]
    assert schemas["Message"]["additionalProperties"] is False
    assert schemas["Error"]["required"] == ["error"]


# ---------------------------------------------------------------------------------------------
# The daemon on a sample library, with analyses made by the loopback model


@dataclass
class Daemon:
    url: str
    client: httpx.Client
    ids: dict[str, Any]


def _wait(fn: Callable[[], Any], what: str, seconds: float = 60.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _run(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    run_id = client.post("/api/analysis/runs", json=body).json()["run_id"]
    return _wait(
        lambda: (
            (r := client.get(f"/api/analysis/runs/{run_id}").json())["status"] == "complete" and r
        ),
        f"run {run_id}",
    )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("openapi")
    make_library(root / "lib", messages=600, seed=5, truth=False)
    with FakeLLM() as fake:
        env = {
            "CHATSTATS_LLM_MODEL": "openai/fake",
            "CHATSTATS_LLM_API_BASE": fake.base_url,
            "CHATSTATS_LLM_API_KEY": "sk-local",
            "CHATSTATS_LLM_INPUT_COST_PER_TOKEN": "0.000001",
            "CHATSTATS_LLM_OUTPUT_COST_PER_TOKEN": "0.000002",
        }
        proc = daemon_proc.serve(root / "lib", root / "data", token=TOKEN, env=env)
        try:
            url = daemon_proc.ready(proc)["url"]
            # Its log lines go on coming on stdout: a full pipe would stall the daemon.
            assert proc.stdout is not None
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            assert daemon_proc.wait_live(url, TOKEN)["live"]["state"] == "ok"
            client = httpx.Client(base_url=url, headers=AUTH, timeout=30)
            # One job the model refuses (a 400 is not retried, so it is dead at once), then
            # real analyses of a few conversations.
            fake.script([ClientError(400)])
            failed = _run(client, {"passes": ["basic"], "limit": 1})
            assert failed["failed"] == 1
            done = _run(client, {"limit": 3})
            assert done["success"] >= 1
            _wait(lambda: client.get("/api/index/status").json()["progress"] == 1.0, "index")
            chats = client.get("/api/chats").json()
            chat = next(c for c in chats if c["message_count"] > 0 and not c["is_group"])
            contact_id = chat["participants"][0]["contact_id"]
            analysed = client.get("/api/analysis/jobs", params={"state": "done"}).json()
            dead = client.get("/api/analysis/jobs", params={"state": "dead"}).json()
            # One chatbot turn in which the model writes a document, through the real stream.
            thread = client.post("/api/chatbot/threads", json={"title": "t"}).json()
            fake.script(
                [
                    ToolCalls((("create_document", {"title": "Plans", "content": "1. call"}),)),
                    Reply("Done."),
                ]
            )
            turn = client.post(
                f"/api/chatbot/threads/{thread['id']}/messages", json={"content": "plan"}
            )
            assert "event: message" in turn.text, turn.text[-300:]
            document = client.get("/api/chatbot/documents").json()[0]
            ids = {
                "thread": thread["id"],
                "document": document["id"],
                "chat": chat["id"],
                "contact": contact_id,
                "conversation": analysed[0]["conversation_id"],
                "run": done["run_id"],
                "dead_job": dead[0]["id"],
            }
            yield Daemon(url, client, ids)
            client.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)


# ---------------------------------------------------------------------------------------------
# (c): real answers against the document


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """`schema` with the document's components beside it, so its `$ref`s resolve."""
    root = {**schema, "components": document["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _check(document: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    responses = document["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in responses, (method, path, response.status_code)
    schema = responses[str(response.status_code)]["content"]["application/json"]["schema"]
    errors = sorted(
        _validator(document, schema).iter_errors(response.json()), key=lambda e: list(e.path)
    )
    assert not errors, f"{method} {path}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors[:5]
    )


def _samples(ids: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(method, documented path, URL, JSON body): one real request per JSON route."""
    chat, contact, conv = ids["chat"], ids["contact"], ids["conversation"]
    return [
        ("GET", "/api/health", "/api/health", None),
        ("GET", "/api/chats", "/api/chats?limit=5", None),
        ("GET", "/api/chats/{id}", f"/api/chats/{chat}", None),
        ("GET", "/api/chats/{id}/messages", f"/api/chats/{chat}/messages", None),
        ("GET", "/api/contacts", "/api/contacts", None),
        ("GET", "/api/conversations", f"/api/conversations?chat_id={chat}", None),
        ("GET", "/api/conversations/{id}", f"/api/conversations/{conv}", None),
        ("GET", "/api/conversations/{id}/messages", f"/api/conversations/{conv}/messages", None),
        ("GET", "/api/search", "/api/search?q=the", None),
        ("GET", "/api/search", "/api/search?q=dinner&mode=hybrid&limit=5", None),
        ("GET", "/api/search", "/api/search?q=dinner&mode=semantic&since=2020-01-01", None),
        ("GET", "/api/index/status", "/api/index/status", None),
        ("GET", "/api/context/definitions", "/api/context/definitions", None),
        (
            "POST",
            "/api/context/preview",
            "/api/context/preview",
            {"definition": "chat_brief", "chat_id": chat, "budget_tokens": 400, "query": "dinner"},
        ),
        ("GET", "/api/analysis/passes", "/api/analysis/passes", None),
        ("GET", "/api/analysis/status", "/api/analysis/status", None),
        ("GET", "/api/analysis/runs", "/api/analysis/runs", None),
        ("POST", "/api/analysis/runs", "/api/analysis/runs", {"limit": 1, "kind": "historic"}),
        ("GET", "/api/analysis/runs/{run_id}", f"/api/analysis/runs/{ids['run']}", None),
        ("GET", "/api/analysis/coverage", "/api/analysis/coverage", None),
        ("GET", "/api/analysis/missing", "/api/analysis/missing?limit=2", None),
        ("POST", "/api/analysis/backfill", "/api/analysis/backfill", {"dry_run": True}),
        ("GET", "/api/conversations/{id}/analyses", f"/api/conversations/{conv}/analyses", None),
        ("GET", "/api/commitments", "/api/commitments", None),
        ("GET", "/api/analysis/jobs", "/api/analysis/jobs", None),
        (
            "POST",
            "/api/analysis/jobs/{id}/retry",
            f"/api/analysis/jobs/{ids['dead_job']}/retry",
            None,
        ),
        ("GET", "/api/stats/overview", "/api/stats/overview", None),
        ("GET", "/api/stats/chats/{id}", f"/api/stats/chats/{chat}", None),
        ("GET", "/api/stats/contacts/{id}", f"/api/stats/contacts/{contact}", None),
        ("GET", "/api/stats/wrapped", "/api/stats/wrapped?year=2024", None),
        ("GET", "/api/metrics", "/api/metrics", None),
        ("POST", "/api/chatbot/threads", "/api/chatbot/threads", {"contexts": [{"chat_id": chat}]}),
        ("GET", "/api/chatbot/threads", "/api/chatbot/threads", None),
        ("GET", "/api/chatbot/threads/{id}", f"/api/chatbot/threads/{ids['thread']}", None),
        (
            "PATCH",
            "/api/chatbot/threads/{id}",
            f"/api/chatbot/threads/{ids['thread']}",
            {"title": "u"},
        ),
        (
            "GET",
            "/api/chatbot/threads/{id}/messages",
            f"/api/chatbot/threads/{ids['thread']}/messages",
            None,
        ),
        ("GET", "/api/chatbot/documents", "/api/chatbot/documents", None),
        ("GET", "/api/chatbot/documents/{id}", f"/api/chatbot/documents/{ids['document']}", None),
        (
            "POST",
            "/api/chatbot/documents/{id}/read",
            f"/api/chatbot/documents/{ids['document']}/read",
            None,
        ),
        ("GET", "/openapi.json", "/openapi.json", None),
        ("DELETE", "/api/session", "/api/session", None),
    ]


def test_every_json_route_answers_as_the_document_says(daemon):
    document = daemon.client.get("/openapi.json").json()
    assert document == openapi.build()
    samples = _samples(daemon.ids)
    json_ops = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if "application/json" in op["responses"]["200"]["content"]
    } - {("POST", "/api/session")}  # below: it needs the page's Origin
    assert {(m, p) for m, p, _, _ in samples} == json_ops, "a JSON route without a sample"
    seen: dict[str, int] = {}
    for method, path, url, body in samples:
        response = daemon.client.request(method, url, json=body)
        assert response.status_code == 200, (url, response.text[:300])
        assert response.headers["content-type"] == "application/json"
        _check(document, path, method, response)
        seen[path] = seen.get(path, 0) + (len(response.json()) if response.text[0] == "[" else 1)
    # The answers held real rows, so their items were checked too.
    for path in (
        "/api/conversations/{id}/analyses",
        "/api/analysis/jobs",
        "/api/search",
        "/api/chatbot/threads/{id}/messages",
        "/api/chatbot/documents",
    ):
        assert seen[path] > 0, path


def test_the_sign_in_and_the_page_answer_as_the_document_says(daemon):
    document = openapi.build()
    with httpx.Client(base_url=daemon.url, timeout=10) as anonymous:
        signed = anonymous.post(
            "/api/session", json={"token": TOKEN}, headers={"Origin": daemon.url}
        )
        assert signed.status_code == 200
        _check(document, "/api/session", "POST", signed)
        wrong = anonymous.post("/api/session", json={"token": "x"}, headers={"Origin": daemon.url})
        assert wrong.status_code == 401
        _check(document, "/api/session", "POST", wrong)
        page = anonymous.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert anonymous.get("/static/app.js").status_code == 200
        missing = anonymous.get("/static/nope.js")
        _check(document, "/static/{path}", "GET", missing)


def test_errors_answer_in_the_documented_shape(daemon):
    document = openapi.build()
    with httpx.Client(base_url=daemon.url, timeout=10) as anonymous:
        refused = anonymous.get("/openapi.json")
        assert refused.status_code == 401
        _check(document, "/openapi.json", "GET", refused)
    cases = [
        ("/api/chats/{id}", f"/api/chats/{2**40}", 404),
        ("/api/chats", "/api/chats?limit=501", 400),
        ("/api/stats/overview", "/api/stats/overview?since=0093-01-01T00:00:00Z", 400),
        ("/api/stats/chats/{id}", "/api/stats/chats/x", 400),
        # mode=text does not filter by these yet, but a malformed one is still an error
        ("/api/search", "/api/search?q=a&since=yesterday", 400),
        ("/api/search", "/api/search?q=a&contact_id=-1", 400),
    ]
    for path, url, status in cases:
        response = daemon.client.get(url)
        assert response.status_code == status, (url, response.text[:200])
        _check(document, path, "GET", response)


def test_a_405_names_every_method_of_the_path(daemon):
    """Starlette's own 405 named the first matching route's methods only."""
    assert daemon.client.request("PUT", "/api/session").headers["allow"] == "DELETE, POST"
    allow = daemon.client.request("PATCH", "/api/analysis/runs").headers["allow"]
    assert allow == "GET, HEAD, POST"


def test_every_stream_opens_as_the_document_says(daemon):
    document = openapi.build()
    streams = [
        (path, method)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if "text/event-stream" in op["responses"]["200"]["content"]
    ]
    urls = {
        "/api/live-sync/stream/chat/{chat_id}/messages": (
            f"/api/live-sync/stream/chat/{daemon.ids['chat']}/messages"
        ),
        "/api/analysis/streaming/redis_stream/{stream_key}": (
            "/api/analysis/streaming/redis_stream/task_events:analysis?start_id=0"
        ),
        "/api/metrics/stream": "/api/metrics/stream?interval=0.5",
        "/api/chatbot/threads/{id}/messages": f"/api/chatbot/threads/{daemon.ids['thread']}/messages",
    }
    metrics_schema = document["paths"]["/api/metrics"]["get"]["responses"]["200"]["content"]
    for path, method in streams:
        url = urls.get(path, path)
        body = {"content": "hi"} if method == "post" else None  # a turn: the fake answers
        with daemon.client.stream(method.upper(), url, json=body, timeout=10) as response:
            assert response.status_code == 200, url
            assert response.headers["content-type"].startswith("text/event-stream")
            if path == "/api/metrics/stream":
                data = next(line for line in response.iter_lines() if line.startswith("data:"))
                validator = _validator(document, metrics_schema["application/json"]["schema"])
                assert not list(validator.iter_errors(json.loads(data[5:])))


# ---------------------------------------------------------------------------------------------
# (d): property-based, against the running daemon

# Checks left out, on purpose: `positive_data_acceptance` expects every schema-valid request
# to succeed, but some 400s depend on values no schema can relate (since after until, a
# before_id naming no item, a job that is not dead); those are documented 400s.
EXCLUDED_CHECKS = "positive_data_acceptance"


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(daemon, tmp_path):
    """Streams are left out (an answer that never ends); test above opens each of them."""
    schemathesis = Path(sys.executable).with_name("schemathesis")
    seed = os.environ.get("CHATSTATS_SCHEMATHESIS_SEED", "1")
    cmd = [
        str(schemathesis), "run", f"{daemon.url}/openapi.json",
        "--header", f"Authorization: Bearer {TOKEN}",
        "--max-examples", "8", "--seed", seed, "--workers", "1",
        "--exclude-tag", "streams",
        "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
        "--request-timeout", "20", "--max-failures", "20",
        "--suppress-health-check", "all",
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    done = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    report = done.stdout[-12000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert " passed" in report or "No issues found" in report, report
