"""The web page in headless Chromium against the real daemon: sign in, open a chat, older
pages on scroll, a message committed to chat.db appearing live, search in every mode finding
a planted fact, statistics charts holding the routes' figures, the AI chat streaming an
answer from the loopback model with a citation that opens its message, analysis runs.

One browser and one daemon (no model) for the module; a second daemon, with the loopback
fake model, only for the AI chat and analysis runs. Each test gets a fresh page (and so a
fresh sign-in). A failing test leaves a screenshot in tests/.artifacts/.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatstats.sample.generate import make_library
from chatstats.testing.fake_llm import FakeLLM, Reply, ToolCalls, default_responder
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
    def __init__(self, url: str, lib: Path, truth: Any = None) -> None:
        self.url = url
        self.lib = lib
        self.truth = truth
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"})

    def get(self, path: str) -> Any:
        r = self.http.get(path)
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    # Seed 3 plants two facts (sentences with a question in other words) in 400 messages.
    root = tmp_path_factory.mktemp("web-browser")
    truth = make_library(root / "lib", messages=400, seed=3)
    assert truth.facts
    yield from _serve(root, truth, {})


def _serve(root: Path, truth: Any, env: dict[str, str]) -> Iterator[Daemon]:
    proc = daemon_proc.serve(root / "lib", root / "data", token=TOKEN, env=env)
    try:
        url = daemon_proc.ready(proc)["url"].rstrip("/")
        daemon_proc.wait_live(url, TOKEN)
        d = Daemon(url, root / "lib", truth)
        yield d
        d.http.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# The AI chat's scripted model: a turn first asks for search_messages with the word the test
# sets, then answers citing what the tool found; analysis requests get schema-valid JSON.
ASK = {"query": "", "answer": "You told them about it, see the cited message."}


def _respond(payload: dict[str, Any]) -> Any:
    if payload.get("tools"):
        if payload["messages"][-1].get("role") == "tool":
            return Reply(ASK["answer"])
        return ToolCalls((("search_messages", {"query": ASK["query"]}),), content="Looking. ")
    return default_responder(payload)


@pytest.fixture(scope="module")
def llm_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("web-browser-llm")
    truth = make_library(root / "lib", messages=400, seed=3)
    with FakeLLM(_respond) as fake:
        env = {
            "CHATSTATS_LLM_MODEL": "openai/fake",
            "CHATSTATS_LLM_API_BASE": fake.base_url,
            "CHATSTATS_LLM_INPUT_COST_PER_TOKEN": "1e-6",
            "CHATSTATS_LLM_OUTPUT_COST_PER_TOKEN": "2e-6",
        }
        yield from _serve(root, truth, env)


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
        # The AI chat fits the phone's width: its composer shows, nothing scrolls sideways.
        p.get_by_role("button", name="AI chat").click()
        sync_api.expect(p.get_by_label("Message to the assistant")).to_be_visible()
        assert p.evaluate("() => document.documentElement.scrollWidth") <= 390
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        p.screenshot(path=str(ARTIFACTS / "phone.png"))
        raise
    finally:
        context.close()


def wait_index(daemon: Daemon, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        st = daemon.get("/api/index/status")
        if st["items"] and not st["building"] and not st["pending"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"vector index not ready: {st}")


def test_search_in_every_mode_finds_a_planted_fact_and_opens_it(page: Any, daemon: Daemon) -> None:
    wait_index(daemon)
    fact = daemon.truth.facts[0]
    word = max(fact.answer.split(), key=len).strip(",.!?'")
    sign_in(page, daemon)
    for mode, query in (("text", word), ("semantic", fact.question), ("hybrid", fact.question)):
        expected = daemon.get(
            f"/api/search?mode={mode}&limit={50 if mode == 'text' else 20}&q={query}"
        )
        assert fact.guid in [m["guid"] for m in expected], (mode, query)
        page.get_by_label("Search mode").select_option(mode)
        page.get_by_label("Search messages").fill(query)
        page.get_by_role("button", name="Search", exact=True).click()
        sync_api.expect(page.locator("#search-results")).to_have_attribute("data-mode", mode)
        page.wait_for_selector(f'[data-result-guid="{fact.guid}"]')
        shown = page.locator("[data-result-guid]").evaluate_all(
            "els => els.map(e => e.dataset.resultGuid)"
        )
        assert shown == [m["guid"] for m in expected], mode
    page.click(f'[data-result-guid="{fact.guid}"]')
    found = page.wait_for_selector(f'#message-list [data-message-guid="{fact.guid}"].found')
    assert fact.answer in found.inner_text()


def test_statistics_charts_hold_the_routes_figures(page: Any, daemon: Daemon) -> None:
    chat = busiest_chat(daemon)
    stats = daemon.get(f"/api/stats/chats/{chat['id']}")
    sign_in(page, daemon)
    page.click(f'[data-chat-id="{chat["id"]}"]')
    page.get_by_role("button", name="Statistics").click()
    page.wait_for_selector("#stats-body .heatmap")
    cells = page.locator("#stats-body .heatmap rect.cell").evaluate_all(
        "els => els.map(e => [+e.dataset.day, +e.dataset.hour, +e.dataset.count])"
    )
    assert len(cells) == 7 * 24
    assert [[c for d, h, c in cells if d == day] for day in range(7)] == stats["hour_of_week"]
    bars = page.locator("#stats-body .volume g.bar").evaluate_all(
        "els => els.map(e => [+e.dataset.sent, +e.dataset.received])"
    )
    assert sum(b[0] for b in bars) == stats["sent"] == sum(d["sent"] for d in stats["by_day"])
    assert sum(b[1] for b in bars) == stats["received"]
    rt = page.locator("#stats-body .chart-responses g.hbar").evaluate_all(
        "els => els.map(e => [e.dataset.seconds, +e.dataset.n])"
    )
    want = stats["response_times"]
    assert [(float(s) if s else None, n) for s, n in rt] == [
        (want[side][k], want[side]["n"]) for side in ("me", "them") for k in ("median_s", "p90_s")
    ]
    reactions = page.locator("#stats-body .chart-reactions g.hbar").evaluate_all(
        "els => els.map(e => [e.dataset.type, e.dataset.side, +e.dataset.count])"
    )
    for t, side, n in reactions:
        assert stats["reactions"][side].get(t, 0) == n
    assert {t for t, _s, n in reactions if n} == set(stats["reactions"]["given"]) | set(
        stats["reactions"]["received"]
    ) - {t for side in ("given", "received") for t, n in stats["reactions"][side].items() if not n}
    figures = page.locator("#stats-body .figures").inner_text()
    assert f"Messages\n{stats['messages']}" in figures


def test_without_a_model_the_ai_chat_says_so(page: Any, daemon: Daemon) -> None:
    sign_in(page, daemon)
    page.get_by_role("button", name="AI chat").click()
    notice = page.locator("#ai-notice")
    sync_api.expect(notice).to_contain_text("CHATSTATS_LLM_MODEL")
    page.get_by_label("Message to the assistant").fill("what did I promise?")
    page.keyboard.press("Enter")
    answer = page.locator('.ai-msg[data-role="assistant"]').last
    sync_api.expect(answer).to_have_attribute("data-error-code", "llm_not_configured")
    sync_api.expect(answer.get_by_role("alert")).to_contain_text("No model is configured")


def test_an_ai_chat_turn_streams_an_answer_whose_citation_opens_its_message(
    page: Any, llm_daemon: Daemon
) -> None:
    d = llm_daemon
    chat = busiest_chat(d)
    msgs = d.get(f"/api/chats/{chat['id']}/messages?limit=500")
    target, word = next(
        (m, w)
        for m in msgs[55:]
        if not m["unsent"] and m["kind"] == "message"
        for w in (m["text"] or "").split()
        if w.isascii() and w.isalpha() and len(w) > 5
    )
    ASK["query"] = word
    sign_in(page, d)
    page.get_by_role("button", name="AI chat").click()
    assert page.locator("#ai-notice").is_hidden()
    page.get_by_label("Title").fill("Browser thread")
    page.get_by_label("About").select_option(str(chat["id"]))
    page.get_by_role("button", name="New thread").click()
    sync_api.expect(page.locator("#ai-thread-title")).to_contain_text("Browser thread")
    page.get_by_label("Message to the assistant").fill(f"when did we talk about {word}?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator('.ai-msg[data-role="assistant"][data-status="complete"]')
    # The daemon's first model call imports LiteLLM (seconds).
    sync_api.expect(answer).to_have_count(1, timeout=WAIT_MS * 2)
    sync_api.expect(answer.locator(".text")).to_have_text("Looking. " + ASK["answer"])
    sync_api.expect(answer.locator('.ai-step[data-tool="search_messages"]')).to_have_attribute(
        "data-count", re.compile(r"[1-9]")
    )
    (thread,) = d.get("/api/chatbot/threads")
    stored = d.get(f"/api/chatbot/threads/{thread['id']}/messages")[-1]
    guids = [c["message_guid"] for c in stored["citations"]]
    assert target["guid"] in guids
    shown = answer.locator(".citation").evaluate_all("els => els.map(e => e.dataset.messageGuid)")
    assert shown == guids
    # The README's picture of the page (docs/web.png is a copy of this file).
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web.png"))
    totals = page.locator("#ai-totals")
    sync_api.expect(totals).to_have_attribute("data-total-tokens", str(thread["total_tokens"]))
    assert thread["total_tokens"] > 0 and thread["total_cost"] > 0
    assert float(totals.get_attribute("data-total-cost") or 0) == pytest.approx(
        thread["total_cost"]
    )
    # The citation opens the cited message in its chat, paging back to reach it.
    answer.locator(f'.citation[data-message-guid="{target["guid"]}"]').click()
    found = page.wait_for_selector(f'#message-list [data-message-guid="{target["guid"]}"].found')
    assert found.is_visible()
    assert page.locator("#chat-title").inner_text() == chat["title"]


def test_an_analysis_run_shows_its_progress_to_the_end(page: Any, llm_daemon: Daemon) -> None:
    sign_in(page, llm_daemon)
    page.get_by_role("button", name="Analysis").click()
    page.get_by_label("At most").fill("2")
    page.get_by_role("button", name="Analyse all chats").click()
    row = page.locator("#runs [data-run-id]").first
    sync_api.expect(row).to_have_attribute("data-status", "complete", timeout=60_000)
    run = llm_daemon.get(f"/api/analysis/runs/{row.get_attribute('data-run-id')}")
    assert run["status"] == "complete" and run["total"] > 0
    assert row.get_attribute("data-done") == str(run["success"] + run["failed"])
    assert row.get_attribute("data-total") == str(run["total"])
    assert row.locator("progress").evaluate("p => p.value") == 100
