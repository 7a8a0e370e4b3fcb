"""Write a sample Messages library (chat.db, AddressBook, truth.json) for demos and benchmarks.

python scripts/make_sample.py --out /tmp/sample --messages 300000 --seed 1 --no-truth
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from chatstats.sample.chatdb_schema import PROFILES
from chatstats.sample.generate import make_library


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument("--messages", type=int, default=2000, help="rows in the message table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", choices=PROFILES, default="sequoia")
    parser.add_argument("--no-truth", action="store_true", help="skip truth.json (faster)")
    parser.add_argument("--no-addressbook", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    truth = make_library(
        args.out,
        messages=args.messages,
        seed=args.seed,
        profile=args.profile,
        addressbook=not args.no_addressbook,
        truth=not args.no_truth,
    )
    elapsed = time.perf_counter() - started
    width = max(len(k) for k in truth.counts)
    for key, value in truth.counts.items():
        print(f"{key:<{width}}  {value}")
    print(f"{'seconds':<{width}}  {elapsed:.2f}")
    print(f"written to {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
