"""The web page's first-load time and commit -> DOM latency, in headless Chromium.

    .venv/bin/python scripts/bench_web.py [--messages 50] [--loads 10] [--library-size 5000]

A demo-sized sample library (5000 messages, seed 7, as `chatstats demo`) is generated and
`chatstats serve` runs as its own process. First load: a signed-in browser opens `/` and waits
until the chat list is drawn (`[data-chat-id]`), measured from navigation start with the
page's own clock; the first (cold) load and the median/max of `--loads` warm ones are printed.
Commit -> DOM: with the busiest 1:1 chat open, this process commits `--messages` messages to
chat.db (one short transaction each, as Messages.app) and a MutationObserver in the page
stamps the moment each `[data-message-guid]` enters the DOM; latency is that wall-clock
stamp minus the commit's (same machine clock). Targets: first load <= 1 s; p95 <= 100 ms.
To tell the daemon's share from the page's, a second reader in this process follows the same
chat's SSE stream over loopback and stamps each message's arrival: commit -> SSE is the
daemon's part (ingest's live tail, hub, stream), SSE -> DOM roughly the page's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

TOKEN = "bench-web"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

OBSERVE = """() => {
  window.__seen = {};
  new MutationObserver((records) => {
    const now = performance.timeOrigin + performance.now();
    for (const r of records) for (const n of r.addedNodes) {
      const g = n.dataset && n.dataset.messageGuid;
      if (g && !(g in window.__seen)) window.__seen[g] = now;
    }
  }).observe(document.getElementById('message-list'), {childList: true});
}"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def follow_sse(base: str, chat_id: int, arrived: dict[str, float], stop: threading.Event) -> None:
    """Stamp when each message of an `update` event reaches this process (wall clock, ms)."""
    url = f"{base}/api/live-sync/stream/chat/{chat_id}/messages"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=None) as c, c.stream("GET", url, headers=headers) as r:
        event = None
        for line in r.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "update":
                now = time.time_ns() / 1e6
                for m in json.loads(line[5:])["messages"]:
                    arrived.setdefault(m["guid"], now)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--loads", type=int, default=10)
    ap.add_argument("--library-size", type=int, default=5000)
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between commits")
    ap.add_argument("--work", default="/tmp/chatstats-bench-web")
    args = ap.parse_args()

    from chatstats.sample.generate import make_library
    from chatstats.sample.writer import MessagesWriter

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    lib = work / "lib"
    make_library(lib, messages=args.library_size, seed=7, truth=False)
    env = {**os.environ, "CHATSTATS_TOKEN": TOKEN, "CHATSTATS_LOG_LEVEL": "WARNING"}
    cmd = [
        sys.executable, "-m", "chatstats", "serve", "--source", str(lib / "chat.db"),
        "--addressbook", str(lib / "AddressBook"), "--data-dir", str(work / "data"), "--port", "0",
    ]  # fmt: skip
    daemon = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert daemon.stdout is not None
        base = json.loads(daemon.stdout.readline())["url"].rstrip("/")
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"})
        while (client.get("/api/health").json()["live"] or {}).get("state") != "ok":
            time.sleep(0.1)
        chats = client.get("/api/chats?limit=500").json()
        chat = max((c for c in chats if not c["is_group"]), key=lambda c: c["message_count"])

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(base + "/")
            page.get_by_label("Token").fill(TOKEN)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_selector("[data-chat-id]")

            loads = []
            for _ in range(args.loads + 1):
                p = context.new_page()
                p.goto(base + "/", wait_until="commit")
                p.wait_for_selector("[data-chat-id]")
                loads.append(p.evaluate("performance.now()"))
                p.close()
            cold, warm = loads[0], loads[1:]

            page.click(f'[data-chat-id="{chat["id"]}"]')
            page.wait_for_selector("#message-list [data-message-guid]", state="attached")
            page.evaluate(OBSERVE)
            arrived: dict[str, float] = {}
            stop = threading.Event()
            reader = threading.Thread(
                target=follow_sse, args=(base, chat["id"], arrived, stop), daemon=True
            )
            reader.start()
            time.sleep(0.5)  # the reader's stream is open before the first commit
            w = MessagesWriter(lib / "chat.db", create=False)
            rowid = w.find_chat(chat["guid"])
            handle = chat["participants"][0]["identifier"]
            sender = w.handle(handle)
            commits: dict[str, float] = {}
            for i in range(args.messages):
                _r, guid = w.message(
                    rowid, f"bench {i}", from_me=i % 2 == 0, sender=None if i % 2 == 0 else sender,
                    date=time.time_ns(),
                )  # fmt: skip
                commits[guid] = time.time_ns() / 1e6
                time.sleep(args.interval)
            w.close()
            deadline = time.monotonic() + 10
            seen: dict[str, float] = {}
            while time.monotonic() < deadline:
                seen = page.evaluate("window.__seen")
                if all(g in seen for g in commits):
                    break
                time.sleep(0.1)
            stop.set()
            browser.close()
        lat = [seen[g] - t for g, t in commits.items() if g in seen]
        daemon_lat = [arrived[g] - t for g, t in commits.items() if g in arrived]
        print(
            f"library: {args.library_size} messages; chat {chat['id']} ({chat['message_count']} messages)"
        )
        print(
            f"first load (to chat list drawn): cold {cold:.0f} ms; warm median {statistics.median(warm):.0f} ms, max {max(warm):.0f} ms over {len(warm)}"
        )
        if lat:
            print(
                f"commit -> DOM over {len(lat)}/{len(commits)} messages: p50 {pct(lat, 0.5):.1f} ms, "
                f"p95 {pct(lat, 0.95):.1f} ms, max {max(lat):.1f} ms"
            )
        else:
            print("commit -> DOM: no message reached the page")
        if daemon_lat:
            print(
                f"commit -> SSE (daemon only) over {len(daemon_lat)}/{len(commits)} messages: "
                f"p50 {pct(daemon_lat, 0.5):.1f} ms, p95 {pct(daemon_lat, 0.95):.1f} ms, "
                f"max {max(daemon_lat):.1f} ms"
            )
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)


if __name__ == "__main__":
    main()
