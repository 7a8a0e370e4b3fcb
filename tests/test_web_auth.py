"""The web page's sign-in: token -> HttpOnly cookie, cookie + Origin for state changes, and
bearer clients unchanged, over real HTTP against the real daemon."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from chatstats.api import auth
from chatstats.sample.generate import make_library
from tests import daemon_proc

TOKEN = "web-auth-token"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("web-auth")
    make_library(root / "lib", messages=60, seed=3)
    proc = daemon_proc.serve(root / "lib", root / "data", token=TOKEN)
    try:
        base = daemon_proc.ready(proc)["url"]
        daemon_proc.wait_live(base, TOKEN)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def origin(url: str) -> dict[str, str]:
    return {"Origin": url.rstrip("/")}


def test_the_page_and_its_files_need_no_sign_in(url: str) -> None:
    page = httpx.get(url + "/")
    assert page.status_code == 200 and 'type="module"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "render.js", "app.css"):
        assert httpx.get(f"{url}/static/{name}").status_code == 200
    assert httpx.get(f"{url}/static/missing.js").status_code == 404
    for path in ("/static/%2e%2e/api/auth.py", "/static/..%2F..%2Fapi%2Fauth.py", "/static/"):
        assert httpx.get(url + path).status_code == 404, path


def test_token_is_exchanged_for_an_httponly_strict_cookie(url: str) -> None:
    with httpx.Client(base_url=url) as client:
        assert client.get("/api/chats").status_code == 401
        r = client.post("/api/session", json={"token": TOKEN}, headers=origin(url))
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        assert client.get("/api/chats").status_code == 200
        assert client.get("/api/health").status_code == 200


def test_wrong_token_or_malformed_bodies_are_refused(url: str) -> None:
    h = origin(url)
    r = httpx.post(url + "/api/session", json={"token": "nope"}, headers=h)
    assert r.status_code == 401 and "set-cookie" not in r.headers
    for body in (b"{", b"[]", b'{"token": 5}', b'{"token": "x", "extra": 1}', b"{}"):
        r = httpx.post(url + "/api/session", content=body, headers=h)
        assert r.status_code == 400, body
        assert r.json()["error"]["code"] == "bad_request"
    r = httpx.post(url + "/api/session", content=b'{"token":"' + b"a" * 5000 + b'"}', headers=h)
    assert r.status_code == 400


def test_sign_in_from_another_origin_or_without_origin_is_403(url: str) -> None:
    for headers in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"}):
        r = httpx.post(url + "/api/session", json={"token": TOKEN}, headers=headers)
        assert r.status_code == 403, headers
        assert r.json()["error"]["code"] == "cross_origin"


def test_state_changes_by_cookie_need_a_matching_origin(url: str) -> None:
    cookie = {"Cookie": f"{auth.SESSION_COOKIE}={auth.session_value(TOKEN)}"}
    body = {"passes": ["summary"], "chat_id": 1}
    # Reading by cookie needs no Origin; a POST by cookie without or with a foreign Origin is 403.
    assert httpx.get(url + "/api/chats", headers=cookie).status_code == 200
    for extra in ({}, {"Origin": "http://evil.example"}):
        r = httpx.post(url + "/api/analysis/runs", json=body, headers={**cookie, **extra})
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin"
    r = httpx.post(url + "/api/analysis/runs", json=body, headers={**cookie, **origin(url)})
    assert r.status_code != 403
    # A bearer client needs no Origin, as before.
    r = httpx.post(
        url + "/api/analysis/runs", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.status_code != 403


def test_a_forged_cookie_is_401_and_sign_out_clears_it(url: str) -> None:
    bad = {"Cookie": f"{auth.SESSION_COOKIE}={'0' * 64}"}
    assert httpx.get(url + "/api/chats", headers=bad).status_code == 401
    good = {"Cookie": f"{auth.SESSION_COOKIE}={auth.session_value(TOKEN)}"}
    r = httpx.delete(url + "/api/session", headers={**good, **origin(url)})
    assert r.status_code == 200 and "Max-Age=0" in r.headers["set-cookie"]
    assert httpx.delete(url + "/api/session", headers=good).status_code == 403
