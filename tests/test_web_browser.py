"""The web page in headless Chromium against the real daemon: sign in, open a chat, older
pages on scroll, a message committed to chat.db appearing live, search in context.

One browser and one daemon for the module; each test gets a fresh page (and so a fresh
sign-in). A failing test leaves a screenshot in tests/.artifacts/.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatstats.sample.generate import make_library
from tests import daemon_proc

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TOKEN = "web-browser-token"
ARTIFACTS = Path(__file__).parent / ".artifacts"
WAIT_MS = 15_000

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="scripts/setup installs chromium"
)


class Daemon:
    def __init__(self, url: str, lib: Path) -> None:
        self.url = url
        self.lib = lib
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"})

    def get(self, path: str) -> Any:
        r = self.http.get(path)
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("web-browser")
    make_library(root / "lib", messages=400, seed=5)
    proc = daemon_proc.serve(root / "lib", root / "data", token=TOKEN)
    try:
        url = daemon_proc.ready(proc)["url"].rstrip("/")
        daemon_proc.wait_live(url, TOKEN)
        d = Daemon(url, root / "lib")
        yield d
        d.http.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, daemon: Daemon, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    p = context.new_page()
    p.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        p.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert errors == [], errors


def sign_in(page: Any, daemon: Daemon) -> None:
    page.goto(daemon.url + "/")
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("[data-chat-id]")


def busiest_chat(daemon: Daemon) -> dict[str, Any]:
    chats = daemon.get("/api/chats?limit=500")
    return max(chats, key=lambda c: c["message_count"])


def test_a_wrong_token_is_refused_and_the_right_one_signs_in(page: Any, daemon: Daemon) -> None:
    page.goto(daemon.url + "/")
    page.get_by_label("Token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    sync_api.expect(page.locator("#signin-error")).to_contain_text("wrong token")
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("[data-chat-id]")
    cookies = page.context.cookies()
    assert [(c["httpOnly"], c["sameSite"]) for c in cookies] == [(True, "Strict")]
    # The page reloads signed in, without asking again.
    page.reload()
    page.wait_for_selector("[data-chat-id]")
    assert page.locator("#signin").is_hidden()


def test_open_a_chat_shows_its_messages_and_older_pages_on_scroll(
    page: Any, daemon: Daemon
) -> None:
    chat = busiest_chat(daemon)
    assert chat["message_count"] > 50
    sign_in(page, daemon)
    page.click(f'[data-chat-id="{chat["id"]}"]')
    newest = daemon.get(f"/api/chats/{chat['id']}/messages?limit=50")
    page.wait_for_selector(f'[data-message-guid="{newest[0]["guid"]}"]', state="attached")
    assert page.locator("#chat-title").inner_text() == chat["title"]
    shown = page.locator("[data-message-guid]").count()
    assert shown == 50
    # Messages shown with reactions carry them (as emoji, with a spoken label).
    reacted = [m for m in newest if m["reactions"] and not m["unsent"] and m["kind"] == "message"]
    for m in reacted[:3]:
        node = page.locator(f'[data-message-guid="{m["guid"]}"] .reactions')
        assert "Reactions:" in (node.get_attribute("aria-label") or "")
    unsent = [m for m in newest if m["unsent"]]
    for m in unsent[:2]:
        assert "unsent a message" in page.locator(f'[data-message-guid="{m["guid"]}"]').inner_text()
    # The README's picture of the page (docs/web.png is a copy of this file).
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web.png"))
    page.locator("#messages").evaluate("el => el.scrollTop = 0")
    older = daemon.get(f"/api/chats/{chat['id']}/messages?limit=50&before_id={newest[-1]['id']}")
    page.wait_for_selector(f'[data-message-guid="{older[0]["guid"]}"]', state="attached")
    assert page.locator("[data-message-guid]").count() > 50


def test_a_message_committed_to_chat_db_appears_live(page: Any, daemon: Daemon) -> None:
    from chatstats.sample.writer import MessagesWriter

    chats = daemon.get("/api/chats?limit=500")
    target = chats[-1] if chats[-1]["last_message_time"] else chats[len(chats) // 2]
    sign_in(page, daemon)
    page.click(f'[data-chat-id="{target["id"]}"]')
    page.wait_for_selector("#message-list [data-message-guid]", state="attached")
    w = MessagesWriter(daemon.lib / "chat.db", create=False)
    try:
        rowid = w.find_chat(target["guid"])
        assert rowid is not None
        _r, guid = w.message(rowid, "live browser zebra", from_me=True, date=time.time_ns())
    finally:
        w.close()
    node = page.wait_for_selector(f'[data-message-guid="{guid}"]')
    assert "live browser zebra" in node.inner_text()
    # The chat moved to the top of the list.
    sync_api.expect(page.locator("[data-chat-id]").first).to_have_attribute(
        "data-chat-id", str(target["id"])
    )


def test_search_shows_results_and_opens_one_in_context(page: Any, daemon: Daemon) -> None:
    chat = busiest_chat(daemon)
    msgs = daemon.get(f"/api/chats/{chat['id']}/messages?limit=500")
    # An older message (beyond the first page) so opening it must page back to reach it.
    assert len(msgs) > 50
    wanted, word = next(
        (m, w)
        for m in msgs[50:]
        if not m["unsent"] and m["kind"] == "message"
        for w in (m["text"] or "").split()
        if w.isalpha() and len(w) > 3
    )
    expected = daemon.get(f"/api/search?q={word}&limit=50")
    sign_in(page, daemon)
    page.get_by_label("Search messages").fill(word)
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_selector("[data-result-guid]")
    assert page.locator("[data-result-guid]").count() == len(expected)
    if not any(m["guid"] == wanted["guid"] for m in expected):
        wanted = expected[-1]
    page.click(f'[data-result-guid="{wanted["guid"]}"]')
    found = page.wait_for_selector(f'[data-message-guid="{wanted["guid"]}"].found')
    assert found.is_visible()


def test_health_panel_shows_counts_and_live_metrics(page: Any, daemon: Daemon) -> None:
    health = daemon.get("/api/health")
    sign_in(page, daemon)
    page.get_by_role("button", name="Health").click()
    panel = page.locator("#health")
    sync_api.expect(panel).to_contain_text("Open streams")
    assert str(health["counts"]["chats"]) in panel.inner_text()


def test_at_phone_width_in_dark_mode_the_list_and_a_chat_take_turns(
    browser: Any, daemon: Daemon
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    try:
        p = context.new_page()
        p.set_default_timeout(WAIT_MS)
        sign_in(p, daemon)
        chat = busiest_chat(daemon)
        assert p.locator("#messages-pane").is_hidden()
        background = p.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(0, 0, 0)"
        p.click(f'[data-chat-id="{chat["id"]}"]')
        p.wait_for_selector("#message-list [data-message-guid]")
        assert p.locator("#chats-pane").is_hidden()
        # Keyboard: the back button is reachable and returns focus to the chat in the list.
        p.get_by_role("button", name="Back to chats").focus()
        p.keyboard.press("Enter")
        sync_api.expect(p.locator(f'[data-chat-id="{chat["id"]}"]')).to_be_focused()
        assert p.locator("#messages-pane").is_hidden()
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        p.screenshot(path=str(ARTIFACTS / "phone.png"))
        raise
    finally:
        context.close()
