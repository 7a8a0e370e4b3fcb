"""Throughput of the attributedBody reader: fast path (`extract_text`) vs full `parse`.

The import decodes one blob per message, so a regression here shows up directly as import
time on a 500k-message history. Blobs come from the writer with a realistic mix: mostly
short texts, a tail of long ones, emoji, attachments, mentions, links, both root shapes.

    .venv/bin/python scripts/bench_typedstream.py [--count 100000] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid

from chatstats.imessage.typedstream import (
    FILE_TRANSFER_GUID_KEY,
    PART_KEY,
    URL,
    _fast_text,
    extract_text,
    parse,
)
from chatstats.imessage.typedstream_writer import encode_attributed_string, utf16_len

_CORPUS = (
    "ok sure see you at the thing tonight lol did you get my message running late "
    "café naïve 😂 👍🏽 ❤️ 🇫🇷 omw brb thanks!! https://example.com"
)
WORDS = _CORPUS.split()


def _text(rng: random.Random) -> str:
    r = rng.random()
    n_words = rng.randint(1, 8) if r < 0.7 else rng.randint(9, 60) if r < 0.97 else 600
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def make_blob(rng: random.Random) -> bytes:
    text = _text(rng)
    mutable = rng.random() < 0.85
    enc = "i" if rng.random() < 0.5 else "q"
    kind = rng.random()
    if kind < 0.10:  # attachments first, then a caption
        n = rng.randint(1, 3)
        guid = str(uuid.UUID(int=rng.getrandbits(128))).upper()
        runs = [
            (1, {PART_KEY: i, FILE_TRANSFER_GUID_KEY: f"at_{i}_{guid}",
                 "__kIMFilenameAttributeName": f"IMG_{i}.HEIC",
                 "__kIMInlineMediaWidthAttributeName": 1139.0,
                 "__kIMInlineMediaHeightAttributeName": 640})
            for i in range(n)
        ]  # fmt: skip
        runs.append((utf16_len(text), {PART_KEY: n}))
        return encode_attributed_string(
            "\ufffc" * n + text, runs, mutable=mutable, part_encoding=enc
        )
    if kind < 0.13:  # a mention
        name = "Dad"
        body = f"Hey {name} {text}"
        runs = [
            (4, {PART_KEY: 0}),
            (3, {"__kIMMentionConfirmedMention": "+15558675309", PART_KEY: 0}),
            (utf16_len(body) - 7, {PART_KEY: 0}),
        ]
        return encode_attributed_string(body, runs, mutable=mutable, part_encoding=enc)
    if kind < 0.16:  # a link
        link = "https://example.com/some/path?x=1"
        body = f"{text} {link}"
        n_text = utf16_len(text) + 1
        runs = [
            (n_text, {PART_KEY: 0}),
            (len(link), {PART_KEY: 0, "__kIMLinkAttributeName": URL(link)}),
        ]
        return encode_attributed_string(body, runs, mutable=mutable, part_encoding=enc)
    return encode_attributed_string(text, mutable=mutable, part_encoding=enc)


def _rate(fn, blobs: list[bytes]) -> float:
    start = time.perf_counter()
    for blob in blobs:
        fn(blob)
    return len(blobs) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    blobs = [make_blob(rng) for _ in range(args.count)]
    gen_rate = args.count / (time.perf_counter() - t0)
    fast_hits = sum(_fast_text(b) is not None for b in blobs)
    sizes = sorted(len(b) for b in blobs)
    print(
        f"{args.count} blobs, median {sizes[len(sizes) // 2]} B, max {sizes[-1]} B; "
        f"writer {gen_rate:,.0f} blobs/s; fast path taken for {fast_hits / args.count:.1%}"
    )
    for name, fn in [("extract_text", extract_text), ("parse", parse)]:
        rates = [_rate(fn, blobs) for _ in range(3)]
        print(f"{name:>12}: {statistics.median(rates):>12,.0f} blobs/s (median of 3)")


if __name__ == "__main__":
    main()
