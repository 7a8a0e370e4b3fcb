"""Generate a realistic sample Messages library: chat.db, AddressBook stores and the truth.

`make_library(root)` writes

* `root/chat.db` (+ `chat.db-wal`): WAL mode, the profile's real schema, every quirk of
  Apple's data listed in `QUIRKS` (`profiles.py`) at least once (for ≥ 500 messages), and the
  most recent rows and updates living only in the WAL, as on a real Mac;
* `root/AddressBook/`: a macOS Contacts tree with two Sources (and an empty top-level store);
* `root/truth.json`: what a faithful importer must produce (`chatstats.sample.truth`).

Shape of the data: people with phones typed in many formats in Contacts but stored as E.164
in chat.db; 1:1 and group chats whose sizes follow a Zipf law (a few chats hold most
messages); conversations in bursts (seconds to minutes apart) separated by hours or days;
a multi-year span whose eras follow Apple's history (old rows with the body only in `text`
and dates in seconds; Ventura+ rows with `text` NULL and the body only in attributedBody).

Quirks are written by *scenarios* (`scenarios/`, one module each): small scripted
exchanges placed at fixed points of the timeline and merged in time order with the random
filler traffic, so ROWID order follows date order like a real database (apart from the
deliberately late-synced row). The builder (`builder.py`) writes rows and truth together;
`profiles.py` holds the eras and release dates, `corpus.py` the text, `people.py` the handles.
Everything derives from `seed`; the same arguments give byte-identical files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from chatstats.sample.generate.builder import Builder
from chatstats.sample.generate.profiles import QUIRKS
from chatstats.sample.truth import Truth, dump_truth

__all__ = ["QUIRKS", "make_library"]


def make_library(
    root: Path | str,
    *,
    messages: int = 2000,
    seed: int = 0,
    profile: str = "sequoia",
    addressbook: bool = True,
    truth: bool = True,
) -> Truth:
    """Write a sample Messages library under `root` and return its truth.

    `messages` is the number of rows left in the `message` table (tapbacks and group
    events included); below ~135 the scripted quirks alone exceed it. `truth=False` skips
    building the per-message truth (for benchmarks): the returned Truth then has only
    `counts`, and no truth.json is written.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in ("chat.db", "chat.db-wal", "chat.db-shm", "truth.json"):
        (root / name).unlink(missing_ok=True)
    ab_root = root / "AddressBook"
    if ab_root.exists():
        shutil.rmtree(ab_root)
    builder = Builder(root, messages, seed, profile, truth)
    result = builder.run()
    if addressbook:
        builder.addressbook(ab_root)
    if truth:
        dump_truth(result, root / "truth.json")
    return result
