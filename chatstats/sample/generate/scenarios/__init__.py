"""The scripted quirks, one module each, and when they run.

Each scenario is a generator that yields the time it wants to run next; `plan` spreads them
over their era, never before the Apple release that introduced the feature, and the builder
merges them in time order with the filler traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import DAY, HOUR, IOS10, IOS14, IOS18, MACOS26, MIN, Era
from chatstats.sample.generate.scenarios.attachments import attachments
from chatstats.sample.generate.scenarios.balloons import balloons
from chatstats.sample.generate.scenarios.corrupt import corrupt
from chatstats.sample.generate.scenarios.edits import edits
from chatstats.sample.generate.scenarios.effects import effects
from chatstats.sample.generate.scenarios.gaps import gaps
from chatstats.sample.generate.scenarios.group_events import group_events
from chatstats.sample.generate.scenarios.lengths import lengths
from chatstats.sample.generate.scenarios.misc import misc
from chatstats.sample.generate.scenarios.old_rows import old_rows
from chatstats.sample.generate.scenarios.orphans import orphans
from chatstats.sample.generate.scenarios.replies import replies
from chatstats.sample.generate.scenarios.services import services
from chatstats.sample.generate.scenarios.tapbacks import tapbacks
from chatstats.sample.generate.scenarios.text_bytes import text_bytes
from chatstats.sample.generate.scenarios.unsends import unsends

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder

__all__ = ["SCENARIO_ROWS", "plan"]


# Rows the scenarios write per profile (tapback rows included, the deleted one excluded);
# the filler fills the rest so `messages` is exact. A test pins these numbers.
SCENARIO_ROWS = {"sequoia": 131, "sonoma": 124, "legacy": 112}


def plan(lib: Builder) -> list[tuple[int, Iterator[int]]]:
    """Each scenario is a generator that yields the time it wants to run next; they are
    spread over their era, never before the Apple release that introduced the feature."""
    eras = {e.name: e for e in lib.plan.eras}
    last = lib.plan.eras[-1]
    newest_tapbacks = IOS18 if lib.can_emoji else IOS10
    planned: list[tuple[Era, int, Callable[[Builder, int], Iterator[int]]]] = [
        (eras["old"], 0, old_rows),
        (last, 0, lengths),
        (last, 0, text_bytes),
        (last, IOS14 if lib.can_reply else IOS10, attachments),
        (last, IOS10, balloons),
        (last, newest_tapbacks, tapbacks),
        (last, 0, group_events),
        (last, IOS18 if lib.modern else 0, services),
        (last, 0, orphans),
        (last, IOS10, effects),
        (last, 0, corrupt),
        (last, 0, gaps),
        (last, 0, misc),
    ]
    if lib.can_reply:
        planned.append((last, IOS14, replies))
    if lib.can_edit:
        planned.append((last, 0, edits))
        planned.append((last, MACOS26 if lib.modern else 0, unsends))
    by_era: dict[str, list[tuple[int, Callable[[Builder, int], Iterator[int]]]]] = {}
    for era, earliest, fn in planned:
        by_era.setdefault(era.name, []).append((earliest, fn))
    out = []
    for name, fns in by_era.items():
        era = eras[name]
        end = era.end
        if name == "old" and lib.plan.seconds_before:
            end = min(end, lib.plan.seconds_before)
        span = end - era.start
        for i, (earliest, fn) in enumerate(fns):
            anchor = era.start + span * (i + 1) // (len(fns) + 2)
            anchor = max(anchor, earliest + 2 * (i + 1) * DAY)
            anchor -= anchor % DAY
            anchor += (13 + i % 8) * HOUR + 7 * MIN + 123_456_789  # afternoon, odd ns
            assert anchor < era.end, fn.__name__
            out.append((anchor, fn(lib, anchor)))
    return out
