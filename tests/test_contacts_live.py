"""Contacts while the daemon runs: a stranger gets a nameless contact, and when the
AddressBook learns their name the nameless contact is merged into the named one."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from chatstats import cli
from chatstats.db import Database
from chatstats.ingest.addressbook_sync import AddressBookSync
from chatstats.sample.addressbook import FixturePerson, write_macos_store
from chatstats.sample.generate import make_library
from chatstats.sample.writer import MessagesWriter

pytestmark = pytest.mark.anyio
STRANGER = "+15558675309"


@pytest.fixture
def imported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    lib = tmp_path / "lib"
    make_library(lib, messages=400, seed=31)
    w = MessagesWriter(lib / "chat.db", create=False)
    h = w.handle(STRANGER)
    chat = w.chat([h])
    w.message(chat, "hi, it's me", from_me=False, sender=h, date=time.time_ns())
    w.close()
    data = tmp_path / "data"
    code = cli.main(
        [
            "import",
            "--source",
            str(lib / "chat.db"),
            "--addressbook",
            str(lib / "AddressBook"),
            "--data-dir",
            str(data),
        ]
    )
    capsys.readouterr()
    assert code == 0
    return lib, data


def contact_of(data: Path, identifier: str) -> tuple[int, str | None]:
    conn = sqlite3.connect(data / "chatstats.db")
    row = conn.execute(
        "SELECT c.id, c.name FROM handles h JOIN contacts c ON c.id = h.contact_id"
        " WHERE h.identifier = ?",
        (identifier,),
    ).fetchone()
    conn.close()
    return row


async def test_a_nameless_sender_is_merged_when_the_addressbook_names_them(imported):
    lib, data = imported
    before_id, before_name = contact_of(data, STRANGER)
    assert before_name is None
    # The user saves the number in Contacts, typed their way, in a new account store.
    store = lib / "AddressBook" / "Sources" / "NEW-ACCOUNT" / "AddressBook-v22.abcddb"
    store.parent.mkdir(parents=True)
    write_macos_store(
        store, [FixturePerson(first="Jenny", last="Tutone", phones=["(555) 867-5309"])]
    )
    db = Database(data / "chatstats.db")
    await db.open()
    changed: list[list[int]] = []

    async def on_change(ids: list[int]) -> None:
        changed.append(ids)

    try:
        sync = AddressBookSync(db, lib / "AddressBook", on_change=on_change, cooldown=60)
        await sync.sync()
    finally:
        db.close()
    after_id, after_name = contact_of(data, STRANGER)
    assert after_name == "Jenny Tutone"
    assert after_id == before_id  # the nameless contact was adopted: its id (and links) live on
    assert changed and after_id in changed[0]
    conn = sqlite3.connect(data / "chatstats.db")
    count = conn.execute("SELECT message_count FROM contacts WHERE id = ?", (after_id,)).fetchone()
    assert count[0] >= 1


async def test_unknown_senders_ask_the_addressbook_once_per_cooldown(imported):
    lib, data = imported
    db = Database(data / "chatstats.db")
    await db.open()
    try:
        sync = AddressBookSync(db, lib / "AddressBook", cooldown=60)
        sync.request([STRANGER])
        assert sync._wake.is_set()
        sync._wake = type(sync._wake)()
        sync.request([STRANGER])  # within the cooldown: no new re-read
        assert not sync._wake.is_set()
        sync.request(["+15550001111"])
        assert sync._wake.is_set()
    finally:
        db.close()


def test_demo_serves_the_sample_and_messages_arrive_live(tmp_path: Path):
    """The README's first command, minus the setup: a sample, imported, served, written to."""
    import json
    import os
    import signal
    import subprocess
    import sys

    import httpx

    env = {**os.environ, "CHATSTATS_TOKEN": "demo"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chatstats",
            "demo",
            "--data-dir",
            str(tmp_path),
            "--port",
            "0",
            "--messages",
            "400",
            "--interval",
            "0.2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        client = httpx.Client(base_url=ready["url"], headers={"Authorization": "Bearer demo"})
        deadline = time.monotonic() + 30
        live = None
        while time.monotonic() < deadline:
            live = client.get("/api/health").json()["live"]
            if live and live["messages"] >= 3:
                break
            time.sleep(0.2)
        assert live and live["state"] == "ok" and live["messages"] >= 3
        assert client.get("/api/chats").json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0
    leftover = subprocess.run(
        ["pgrep", "-f", f"correspondent --db {tmp_path}"], capture_output=True, text=True
    )
    assert leftover.stdout.strip() == ""
    shutil.rmtree(tmp_path / "sample", ignore_errors=True)
