"""The generator itself: writes chat.db rows and their truth side by side.

It owns the writer, the random stream and the truth lists; the scripted quirks live in
`scenarios/` (one module each) and are merged in time order with the filler traffic here,
so ROWID order follows date order as in a real database.
"""

from __future__ import annotations

import heapq
import math
import random
import shutil
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from chatstats.imessage.typedstream import TypedStreamError, extract_text
from chatstats.imessage.typedstream_writer import corrupt_variants, encode_attributed_string
from chatstats.sample.facts import FactPlanter, TruthFact
from chatstats.sample.generate.corpus import (
    EFFECTS,
    FIRST_NAMES,
    LANG_LINES,
    LAST_NAMES,
    MEDIA,
    NON_LATIN_NAMES,
    ORGANIZATIONS,
    TAPBACK_EMOJI,
    URLS,
    build_pools,
    url_payload,
    uuid_from,
    visible,
)
from chatstats.sample.generate.people import Ids, Person, us_formats
from chatstats.sample.generate.profiles import DAY, HOUR, IOS10, IOS14, IOS18, MIN, PLANS, SEC, Era
from chatstats.sample.generate.scenarios import SCENARIO_ROWS, plan
from chatstats.sample.truth import (
    Truth,
    TruthAttachment,
    TruthChat,
    TruthContact,
    TruthMessage,
    TruthReaction,
)
from chatstats.sample.writer import TAPBACK_KINDS, URL_BALLOON, AttachmentSpec, MessagesWriter

# ----------------------------------------------------------------------------- builder


@dataclass
class _Recent:
    guid: str
    quoted: str
    text_part: int | None
    n_parts: int
    sender: int | None  # handle rowid; None = me
    balloon: bool


ME = 0  # reaction-state key for the owner

T = TypeVar("T")


def _needed(value: T | None, kind: str, key: str) -> T:
    """A system event's required keyword, so a scenario that forgets it fails by name."""
    if value is None:
        raise ValueError(f"{kind} event needs {key}=")
    return value


class Builder:
    def __init__(
        self, root: Path, messages: int, seed: int, profile: str, with_truth: bool
    ) -> None:
        if profile not in PLANS:
            raise ValueError(f"unknown profile {profile!r} (choose from {', '.join(PLANS)})")
        self.root = root
        self.target_rows = messages
        self.seed = seed
        self.profile = profile
        self.plan = PLANS[profile]
        self.truth_on = with_truth
        self.rng = random.Random(seed)
        self.planter = FactPlanter(seed)
        self.planted: list[tuple[TruthMessage, TruthFact]] = []
        self.w = MessagesWriter(
            root / "chat.db",
            profile,
            create=True,
            seed=self.rng.getrandbits(64),
            seconds_before=self.plan.seconds_before,
            indexes=False,
        )
        # One writer, one pass, nothing to roll back: no rollback journal while loading;
        # WAL (as Messages keeps chat.db) is switched on before the live tail.
        self.w.conn.execute("PRAGMA journal_mode=OFF")
        self.w.conn.execute("PRAGMA cache_size=-200000")
        self.can_reply = self.w.has("thread_originator_guid")
        self.can_edit = self.w.has("date_edited")
        self.can_emoji = self.w.has("associated_message_emoji")
        self.modern = profile == "sequoia"  # RCS, any;-; GUIDs, macOS 26 unsends
        self.pools = build_pools(self.rng, min(4000, 200 + messages // 20))
        self.plain_lines = frozenset(self.pools["en"])
        self.rows = 0
        self.deleted = 0
        self.messages: list[TruthMessage] = []
        self.reactions: dict[tuple[str, int, int], tuple[int, TruthReaction]] = {}
        self.tapback_rows = 0
        self.recent: dict[int, deque[_Recent]] = {}
        self.chat_lang: dict[int, str] = {}
        self.dedicated: set[int] = set()
        self.counter = dict.fromkeys(
            (
                "seconds_rows",
                "wal_rows",
                "orphans",
                "system_events",
                "edited",
                "unsent",
                "body_corrupt",
            ),
            0,
        )
        self._img = 1000

    # ------------------------------------------------------------------ helpers

    def hid(self, handle: int | None) -> str | None:
        return None if handle is None else self.w.handle_ids[handle][0]

    def era_at(self, t: int) -> Era:
        for era in self.plan.eras:
            if t < era.end:
                return era
        return self.plan.eras[-1]

    def body_for(self, t: int, from_me: bool) -> str:
        era = self.era_at(t)
        choices = era.body_me if from_me else era.body_them
        r = self.rng.random()
        acc = 0.0
        for mode, weight in choices:
            acc += weight
            if r < acc:
                return mode
        return choices[-1][0]

    def text(self, chat: int | None = None) -> str:
        lang = self.chat_lang.get(chat, "en") if chat is not None else "en"
        if lang != "en" and self.rng.random() < 0.6:
            return self.rng.choice(self.pools[lang])
        return self.rng.choice(self.pools["en"])

    def image(self, kind: str = "heic") -> AttachmentSpec:
        name, mime, uti, low, high = MEDIA[kind]
        self._img += self.rng.randint(1, 9)
        return AttachmentSpec(name.format(n=self._img), mime, uti, self.rng.randint(low, high))

    def audio_spec(self) -> AttachmentSpec:
        # Voice messages: no MIME type, only the UTI (imessage-exporter falls back to it).
        return AttachmentSpec(
            "Audio Message.caf",
            None,
            "com.apple.coreaudio-format",
            self.rng.randint(20_000, 400_000),
        )

    def record(self, msg: TruthMessage) -> TruthMessage:
        if self.truth_on:
            self.messages.append(msg)
        return msg

    def track_date(self, t: int) -> None:
        if self.w.stores_seconds(t):
            self.counter["seconds_rows"] += 1

    # ------------------------------------------------------------------ writing + truth

    def send(
        self,
        chat: int | None,
        text: str | None,
        *,
        from_me: bool,
        sender: int | None = None,
        date: int,
        body: str | None = None,
        attachments: tuple[AttachmentSpec, ...] = (),
        corrupt: bool = False,
        remember: bool = True,
        read_delay: int | None = -1,
        **kw: Any,
    ) -> tuple[int, str, TruthMessage]:
        w = self.w
        c = w.chats[chat] if chat is not None else None
        fact = None
        if text in self.plain_lines and c is not None and not attachments and not corrupt:
            fact = self.planter.maybe()
            if fact is not None:
                text = fact[0]
        if body is None:
            body = self.body_for(date, from_me)
            if body == "attributed" and c is not None and c.service != "iMessage":
                body = "both"  # SMS/RCS relayed by the iPhone keep their text column [I]
        blob = None
        if corrupt:
            blob = self.corrupt_blob(text or "")
        if read_delay == -1:
            read_delay = self.rng.randint(5, 3 * 3600) * SEC
        date_read = date_delivered = None
        if from_me and kw.get("sent", True):
            if c is not None and not c.is_group and c.service == "iMessage":
                date_delivered = date + self.rng.randint(1, 4) * SEC
                if read_delay is not None and self.rng.random() < 0.5:
                    date_read = date + read_delay
        elif read_delay is not None:
            date_read = date + read_delay
        rowid, guid = w.message(
            chat,
            text,
            from_me=from_me,
            sender=None if from_me else sender,
            date=date,
            body=body,
            attachments=attachments,
            corrupt=blob,
            date_read=date_read,
            date_delivered=date_delivered,
            **kw,
        )
        self.rows += 1
        self.track_date(date)
        shown = "" if body == "none" or not text else visible(text)
        is_corrupt = corrupt and body == "attributed"
        if is_corrupt:
            shown = ""
            self.counter["body_corrupt"] += 1
        msg = TruthMessage(
            guid=guid,
            chat_guid=c.guid if c else None,
            kind="message",
            text=shown,
            is_from_me=from_me,
            sender=None if from_me else self.hid(sender),
            date_ns=w.stored_date_ns(date),
            reply_to_guid=kw.get("reply_to"),
            edited=False,
            unsent=False,
            body_corrupt=is_corrupt,
            group_title=None,
            other=None,
            attachments=[
                TruthAttachment(f"at_{i}_{guid}", a.transfer_name, a.mime_type, a.total_bytes)
                for i, a in enumerate(attachments)
            ],
            service=kw.get("service") or (c.service if c else "iMessage"),
        )
        self.record(msg)
        if fact is not None:
            self.planted.append((msg, TruthFact(guid=guid, question=fact[1], answer=fact[0])))
        if chat is None:
            self.counter["orphans"] += 1
        elif remember and chat not in self.dedicated:
            quoted = text if text else ("an image" if attachments else "a message")
            self.recent.setdefault(chat, deque(maxlen=12)).append(
                _Recent(
                    guid,
                    quoted,
                    len(attachments) if text else None,
                    len(attachments) + (1 if text else 0),
                    None if from_me else sender,
                    bool(kw.get("balloon")),
                )
            )
        return rowid, guid, msg

    def corrupt_blob(self, text: str) -> bytes:
        """A damaged attributedBody no reader can recover the text from."""
        blob = encode_attributed_string(text)
        raw = text.encode()
        for _ in range(200):
            bad = corrupt_variants(blob, self.rng)
            try:
                extract_text(bad)
            except TypedStreamError:
                if raw not in bad:
                    return bad
        return blob[:20]  # header and class names only: the text is gone for sure

    def react(
        self,
        chat: int,
        target: str,
        kind: int,
        *,
        sender: int | None,
        date: int,
        part: int = 0,
        quoted: str = "a message",
        emoji: str | None = None,
        form: str = "p",
        body: str | None = None,
    ) -> tuple[int, str]:
        from_me = sender is None
        sticker = None
        if kind == 2007:
            sticker = AttachmentSpec(
                "sticker.heic",
                "image/heic",
                "public.heic",
                self.rng.randint(20_000, 90_000),
                is_sticker=True,
            )
        rowid, guid = self.w.tapback(
            chat,
            target,
            kind,
            part=part,
            emoji=emoji,
            from_me=from_me,
            sender=sender,
            date=date,
            target_form=form,
            quoted=quoted,
            sticker=sticker,
            body=body
            or ("both" if self.era_at(date).name != "ventura" else self.body_for(date, from_me)),
        )
        self.rows += 1
        self.tapback_rows += 1
        self.track_date(date)
        key = (target, part, ME if from_me else sender or 0)
        base = kind % 1000
        if kind < 3000:
            self.reactions[key] = (
                rowid,
                TruthReaction(
                    guid, target, part, TAPBACK_KINDS[base], emoji, from_me, self.hid(sender)
                ),
            )
        else:
            current = self.reactions.get(key)
            if current is not None and current[1].type == TAPBACK_KINDS[base]:
                del self.reactions[key]
        return rowid, guid

    def event(
        self, kind: str, chat: int, *, sender: int | None, date: int, **kw: Any
    ) -> tuple[int, str]:
        w = self.w
        from_me = sender is None
        other: int | None = kw.get("handle")
        title: str | None = kw.get("title")
        photo: AttachmentSpec | None = kw.get("photo")
        if kind == "participant_added":
            handle = _needed(other, kind, "handle")
            out = w.add_member(chat, handle, from_me=from_me, sender=sender, date=date)
        elif kind == "participant_removed":
            handle = _needed(other, kind, "handle")
            out = w.remove_member(chat, handle, from_me=from_me, sender=sender, date=date)
        elif kind == "renamed":
            name = _needed(title, kind, "title")
            out = w.rename_group(chat, name, from_me=from_me, sender=sender, date=date)
        elif kind == "participant_left":
            out = w.leave_group(chat, from_me=from_me, sender=sender, date=date)
        elif kind == "photo_changed":
            spec = _needed(photo, kind, "photo")
            out = w.set_group_photo(chat, spec, from_me=from_me, sender=sender, date=date)
        elif kind == "photo_removed":
            out = w.remove_group_photo(chat, from_me=from_me, sender=sender, date=date)
        else:
            raise ValueError(kind)
        self.rows += 1
        self.track_date(date)
        guid = out[1]
        self.counter["system_events"] += 1
        self.record(
            TruthMessage(
                guid=guid,
                chat_guid=w.chats[chat].guid,
                kind=kind,
                text="",
                is_from_me=from_me,
                sender=self.hid(sender),
                date_ns=w.stored_date_ns(date),
                reply_to_guid=None,
                edited=False,
                unsent=False,
                body_corrupt=False,
                group_title=title,
                other=self.hid(other),
                attachments=[
                    TruthAttachment(
                        f"at_0_{guid}", photo.transfer_name, photo.mime_type, photo.total_bytes
                    )
                ]
                if photo
                else [],
                service=w.chats[chat].service,
            )
        )
        return out

    def edit(self, rowid: int, msg: TruthMessage, versions: list[str], start: int) -> None:
        t = start
        for text in versions:
            t += self.rng.randint(20, 240) * SEC
            self.w.edit(rowid, text, t)
        msg.text = visible(versions[-1])
        msg.edited = True
        self.counter["edited"] += 1

    def unsend(self, rowid: int, msg: TruthMessage, date: int, macos26: bool = False) -> None:
        self.w.unsend(rowid, date, macos26=macos26)
        msg.text = ""
        msg.unsent = True
        msg.attachments = []
        self.counter["unsent"] += 1

    # ------------------------------------------------------------------ people, handles, chats

    def make_people(self) -> None:
        rng = self.rng
        ids = Ids(rng)
        n = max(24, min(300, 24 + self.target_rows // 2000))
        people: list[Person] = []
        names_used: set[tuple[str, str]] = set()
        non_latin = list(NON_LATIN_NAMES)
        rng.shuffle(non_latin)
        langs = [lang for lang in LANG_LINES]
        for i in range(n):
            if i % 9 == 4 and non_latin:
                first, last, lang = non_latin.pop()
            else:
                while True:
                    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                    if (first, last) not in names_used:
                        break
                lang = rng.choice(langs) if rng.random() < 0.15 else "en"
            names_used.add((first, last))
            p = Person(first, last, lang=lang)
            if rng.random() < 0.82:
                p.phone, p.phone_ab = ids.us_phone()
            else:
                p.phone, p.phone_ab, p.country = ids.intl_phone()
            r = rng.random()
            if r < 0.10:
                p.services = ("SMS",)
            elif r < 0.22 and first.isascii():
                p.email, p.email_ab = ids.email(first, last)
                p.email_handle = True
            elif r < 0.30 and first.isascii():
                p.email, p.email_ab = ids.email(first, last)  # in Contacts only
            if rng.random() < 0.08:
                p.nickname = first[:3]
            p.in_ab = rng.random() < 0.9
            p.source = 0 if rng.random() < 0.7 else 1
            people.append(p)
        # The people whose quirks the scenarios rely on, with fixed roles.
        both = Person("Marisol", "Vega", lang="es")
        both.phone, both.phone_ab = ids.us_phone()
        both.email, both.email_ab = "marisol.vega@icloud.com", "Marisol.Vega@iCloud.com"
        both.services = ("iMessage", "SMS")
        both.email_handle = True
        dup = Person("Tobias", "Hartmann", lang="de")
        dup.phone, dup.phone_ab = ids.us_phone()
        dup.also_source = 1
        dup.email, dup.email_ab = "tobias.hartmann@outlook.com", "Tobias.Hartmann@Outlook.com"
        case = Person("Liam", "O'Brien")
        case.phone, case.phone_ab = ids.us_phone()
        case.email, case.email_ab = "Liam.OBrien@iCloud.com", "liam.obrien@icloud.com"
        case.email_handle = True
        twin_a = Person("Chris", "Lee")
        twin_a.phone, twin_a.phone_ab = ids.us_phone()
        twin_b = Person("Chris", "Lee", source=1)
        twin_b.phone, twin_b.phone_ab = ids.us_phone()
        org = Person(None, None, org=ORGANIZATIONS[0])
        org.phone, org.phone_ab = ids.us_phone()
        org.services = ("SMS",)
        solo = Person("Ngozi", None)
        solo.phone, solo.phone_ab, solo.country = ids.intl_phone()
        gap = Person("Yuki", "Tanaka", lang="ja")
        gap.phone, gap.phone_ab = ids.us_phone()
        rcs = Person("Rosa", "Delgado", lang="es")
        rcs.phone, rcs.phone_ab = ids.us_phone()
        rcs.services = ("RCS", "SMS") if self.modern else ("SMS",)
        anyp = Person("Omar", "Haddad", lang="ar")
        anyp.phone, anyp.phone_ab = ids.us_phone()
        self.special = {
            "both": both,
            "dup": dup,
            "case": case,
            "twin_a": twin_a,
            "twin_b": twin_b,
            "org": org,
            "solo": solo,
            "gap": gap,
            "rcs": rcs,
            "any": anyp,
        }
        for p in self.special.values():
            p.in_ab = True
        people.extend(self.special.values())
        # Numbers nobody saved: an unknown mobile, a bank's short code, an unknown address.
        self.unknown = {
            "mobile": Person(None, None, in_ab=False),
            "shortcode": Person(None, None, in_ab=False),
            "email": Person(None, None, in_ab=False),
        }
        self.unknown["mobile"].phone = ids.us_phone()[0]
        self.unknown["shortcode"].phone = "22395"
        self.unknown["shortcode"].services = ("SMS",)
        self.unknown["email"].phone = None
        self.unknown["email"].email = "noreply.deals@shopmail.example"
        self.unknown["email"].email_handle = True
        people.extend(self.unknown.values())
        # Contacts who never messaged (they must not gain identifiers).
        for _ in range(max(3, n // 10)):
            p = Person(rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES))
            p.phone_ab = ids.us_phone()[1]
            p.services = ()
            people.append(p)
        for i, p in enumerate(people):
            p.key = f"p{i}"
        self.people = people

    def make_handles(self) -> None:
        w = self.w
        for p in self.people:
            if p.phone and p.phone_ab is None and p.in_ab:
                p.phone_ab = p.phone
            if p.phone:
                for svc in p.services:
                    typed = p.phone_ab if self.rng.random() < 0.2 else None
                    country = p.country if p.phone.startswith("+") else None
                    p.handles.append(
                        w.handle(p.phone, svc, uncanonicalized_id=typed, country=country)
                    )
            if p.email and p.email_handle:
                p.handles.append(w.handle(p.email, "iMessage", country=None))
        both = self.special["both"]
        pcid = f"{self.rng.getrandbits(64):016X}"
        if "person_centric_id" in w._columns["handle"]:
            w.conn.execute(
                f"UPDATE handle SET person_centric_id = ? WHERE ROWID IN ({','.join('?' * len(both.handles))})",
                [pcid, *both.handles],
            )

    def make_chats(self) -> None:
        w, rng = self.w, self.rng
        self.one_to_one: dict[int, int] = {}  # handle → chat
        chats: list[int] = []
        for p in self.people:
            for h in p.handles:
                _ident, svc = w.handle_ids[h]
                prefix = "any" if self.modern and p is self.special["any"] else None
                cid = w.chat(
                    [h], service=svc, guid_prefix=prefix, display_name=rng.choice(("", "", None))
                )
                self.one_to_one[h] = cid
                self.chat_lang[cid] = p.lang
                chats.append(cid)
        imessage_people = [
            p
            for p in self.people
            if p.handles and "iMessage" in p.services and p.phone and p not in self.unknown.values()
        ]
        n_groups = max(2, min(40, 2 + self.target_rows // 8000))
        group_names = [
            "Family 👨‍👩‍👧‍👦",
            "Book club",
            "Ski trip 2024 ⛷️",
            "Roommates",
            "Work lunch",
            "",
            "",
            None,
            "Soccer Sundays",
            "Cousins",
        ]
        groups = []
        for _ in range(n_groups):
            size = min(len(imessage_people), rng.choice((2, 2, 3, 3, 4, 5, 6, 8)))
            members = [p.handles[0] for p in rng.sample(imessage_people, size)]
            cid = w.chat(members, display_name=rng.choice(group_names))
            groups.append(cid)
        # Dedicated groups for the tapback and membership scenarios.
        crew = [p.handles[0] for p in imessage_people[:5]]
        self.tapback_group = w.chat(crew, display_name="Tapback crew")
        club = [p.handles[0] for p in imessage_people[5:8]]
        self.member_group = w.chat(club, display_name=None)
        self.member_pool = [p.handles[0] for p in imessage_people[8:10]]
        self.left_group = w.chat(
            [p.handles[0] for p in imessage_people[10:13]], display_name="Old project"
        )
        groups += [self.tapback_group, self.member_group, self.left_group]
        chats += groups
        self.gap_chat = self.one_to_one[self.special["gap"].handles[0]]
        self.dedicated = {self.gap_chat, self.left_group}
        if self.modern:  # RCS arrived with iOS 18: no filler traffic there in earlier years
            self.dedicated.add(self.one_to_one[self.special["rcs"].handles[0]])
        filler = [c for c in chats if c not in self.dedicated]
        rng.shuffle(filler)
        weights = [1.0 / (rank + 1) ** 1.15 for rank in range(len(filler))]
        self.filler_chats = filler
        acc = 0.0
        self.filler_cum = []
        for wt in weights:
            acc += wt
            self.filler_cum.append(acc)

    # ------------------------------------------------------------------ filler traffic

    def filler_times(self, budget: int) -> Iterator[tuple[int, int, bool]]:
        """(date, chat, first message of a burst) for `budget` rows, in date order."""
        rng = self.rng
        eras = self.plan.eras
        remaining = budget
        for i, era in enumerate(eras):
            n = remaining if i == len(eras) - 1 else round(budget * era.share)
            n = min(n, remaining)
            remaining -= n
            if n <= 0:
                continue
            sizes: list[int] = []
            total = 0
            while total < n:
                size = min(n - total, 1 + int(rng.expovariate(1 / 7)))
                sizes.append(size)
                total += size
            span = max(1, era.end - era.start - 8 * HOUR)
            starts = sorted(era.start + int(rng.random() * span) for _ in sizes)
            chat_ids = rng.choices(self.filler_chats, cum_weights=self.filler_cum, k=len(sizes))
            heap: list[tuple[int, int, int]] = []
            left: dict[int, int] = {}
            j = seq = 0
            while j < len(starts) or heap:
                if heap and (j >= len(starts) or heap[0][0] <= starts[j]):
                    t, _, chat = heapq.heappop(heap)
                    first = left[chat] < 0
                    left[chat] = abs(left[chat]) - 1
                    yield t, chat, first
                    if left[chat] > 0:
                        gap = int(math.exp(rng.gauss(math.log(45), 1.1)) * SEC)
                        seq += 1
                        heapq.heappush(heap, (t + min(max(gap, 2 * SEC), 45 * MIN), seq, chat))
                    else:
                        del left[chat]
                else:
                    chat, size, start = chat_ids[j], sizes[j], starts[j]
                    j += 1
                    if chat in left:
                        left[chat] = (abs(left[chat]) + size) * (1 if left[chat] > 0 else -1)
                    else:
                        left[chat] = -size  # negative: the burst has not started yet
                        seq += 1
                        heapq.heappush(heap, (start, seq, chat))

    def filler_row(self, t: int, chat: int, first: bool) -> None:
        rng, w = self.rng, self.w
        c = w.chats[chat]
        recent = self.recent.get(chat)
        members = c.handles
        if not members:
            self.send(chat, self.text(chat), from_me=True, date=t)
            return
        r = rng.random()
        if recent and not first and r < 0.07 and t >= IOS10:
            target = rng.choice(recent)
            people = [ME, *members]
            reactor = rng.choice([x for x in people if x != (target.sender or ME)] or people)
            sender = None if reactor == ME else reactor
            part = (
                target.text_part
                if target.text_part is not None
                else rng.randrange(target.n_parts or 1)
            )
            key = (target.guid, part, reactor)
            current = self.reactions.get(key)
            base_names = {v: k for k, v in TAPBACK_KINDS.items()}
            if current is not None and rng.random() < 0.35:
                kind = 3000 + base_names[current[1].type]
                emoji = current[1].emoji
            else:
                kinds = [0] * 30 + [1] * 25 + [3] * 25 + [4] * 10 + [2] * 3 + [5] * 5
                if self.can_emoji and t >= IOS18:
                    kinds += [6] * 4
                base = rng.choice(kinds)
                kind = 2000 + base
                emoji = rng.choice(TAPBACK_EMOJI) if base == 6 else None
            self.react(
                chat,
                target.guid,
                kind,
                sender=sender,
                date=t,
                part=part,
                quoted=target.quoted,
                emoji=emoji,
                form="bp" if target.balloon else "p",
            )
            return None
        from_me = rng.random() < (0.3 if c.is_group else 0.45)
        sender = None if from_me else rng.choice(members)
        era = self.era_at(t)
        kw: dict[str, Any] = {}
        attachments: tuple[AttachmentSpec, ...] = ()
        text: str | None = self.text(chat)
        r = rng.random()
        if r < 0.035:
            attachments = (self.image(rng.choice(("heic", "heic", "jpeg", "png"))),)
            if rng.random() < 0.6:
                text = None
        elif r < 0.042:
            attachments = tuple(self.image() for _ in range(rng.randint(2, 4)))
            text = None if rng.random() < 0.5 else text
        elif r < 0.045:
            attachments = (self.image(rng.choice(("mov", "pdf"))),)
            text = None
        elif r < 0.049:
            attachments = (self.audio_spec(),)
            text = None
            kw["audio"] = True
        elif r < 0.056 and t >= IOS10:
            url, _title = rng.choice(URLS)
            text = url
            kw["balloon"] = URL_BALLOON
            kw["payload"] = url_payload(url, _title)
        if self.can_reply and recent and rng.random() < 0.03 and t >= IOS14:
            target = rng.choice(recent)
            kw["reply_to"] = target.guid
            kw["reply_part"] = target.text_part or 0
        if rng.random() < 0.003 and t >= IOS10:
            kw["effect"] = rng.choice(EFFECTS)
        if from_me and not c.is_group and rng.random() < 0.03:
            kw["handle_id"] = 0  # typed on another device (§3)
        orphan = rng.random() < 0.001
        corrupt = rng.random() < 0.0005 and bool(text) and not attachments
        rowid, _guid, msg = self.send(
            None if orphan else chat,
            text,
            from_me=from_me,
            sender=sender,
            date=t,
            attachments=attachments,
            corrupt=corrupt,
            **kw,
        )
        if (
            era.name == "ventura"
            and self.can_edit
            and text
            and not attachments
            and not kw
            and not corrupt
        ):
            r = rng.random()
            if r < 0.008:
                versions = [f"{text} {rng.choice(('(edited)', 'actually', '*', 'nvm'))}"]
                if rng.random() < 0.4:
                    versions.append(self.text(chat))
                self.edit(rowid, msg, versions, t)
            elif r < 0.010:
                self.unsend(
                    rowid,
                    msg,
                    t + rng.randint(10, 100) * SEC,
                    macos26=self.modern and rng.random() < 0.3,
                )
        return None

    def p(self, role: str) -> Person:
        return self.special[role]

    def chat_of(self, role: str, index: int = 0) -> tuple[int, int]:
        h = self.special[role].handles[index]
        return self.one_to_one[h], h

    # ------------------------------------------------------------------ the live tail in the WAL

    def tail(self, t: int) -> int:
        """Rows and updates written after the last checkpoint, left only in chat.db-wal."""
        w = self.w
        chat, h = self.chat_of("both")
        rows_before = self.rows
        _, _, _ = self.send(
            chat, "are you still up?", from_me=False, sender=h, date=t, read_delay=None
        )
        rowid, _, _msg = self.send(
            chat, "yes, just got home", from_me=True, date=t + MIN, sent=False, read_delay=None
        )
        w.mark_sent(rowid)
        w.deliver(rowid, t + MIN + 2 * SEC)
        w.read(rowid, t + 3 * MIN)
        _, g3, _ = self.send(
            chat,
            "great, call you tomorrow",
            from_me=False,
            sender=h,
            date=t + 4 * MIN,
            read_delay=None,
        )
        self.react(chat, g3, 2000, sender=None, date=t + 5 * MIN, quoted="great, call you tomorrow")
        # A message that synced late: new ROWID, date a week earlier.
        self.send(
            chat, "(sent last week from my other phone)", from_me=False, sender=h, date=t - 7 * DAY
        )
        return self.rows - rows_before

    # ------------------------------------------------------------------ run

    def run(self) -> Truth:
        self.make_people()
        with self.w.bulk():
            self.make_handles()
            self.make_chats()
            if self.profile == "legacy":
                self.w.set_property("_ClientVersion", "9005")  # seen in a 2016-era store [R]
            scenario = plan(self)
            est = SCENARIO_ROWS[self.profile]
            tail_rows = 5
            budget = max(0, self.target_rows - est - tail_rows)
            heap = [(t, i, gen) for i, (t, gen) in enumerate(scenario)]
            heapq.heapify(heap)
            last_t = self.plan.eras[0].start
            for t, chat, first in self.filler_times(budget):
                while heap and heap[0][0] <= t:
                    self._step(heap)
                self.filler_row(t, chat, first)
                last_t = max(last_t, t)
            while heap:
                last_t = max(last_t, heap[0][0])
                self._step(heap)
            # Top up to the exact row count (scenarios may write fewer rows than estimated).
            short = self.target_rows - tail_rows - self.rows
            t = last_t + HOUR
            chat = self.filler_chats[0]
            for i in range(max(0, short)):
                self.filler_row(t + i * 40 * SEC, chat, i == 0)
            last_t = t + max(0, short) * 40 * SEC
        self.w.create_indexes()
        self.w.conn.execute("PRAGMA analysis_limit=2000")
        self.w.conn.execute("ANALYZE")
        self.w.conn.execute("PRAGMA journal_mode=WAL")
        self.w.conn.execute("PRAGMA wal_autocheckpoint=0")
        self.counter["wal_rows"] = self.tail(last_t + 2 * HOUR)
        return self.finish()

    def _step(self, heap: list[tuple[int, int, Iterator[int]]]) -> None:
        _t, i, gen = heapq.heappop(heap)
        try:
            nxt = next(gen)
        except StopIteration:
            return
        heapq.heappush(heap, (nxt, i, gen))

    def finish(self) -> Truth:
        w = self.w
        db = self.root / "chat.db"
        # Keep the tail only in the WAL: snapshot chat.db and its WAL while the connection
        # is open, close (which would fold the WAL in), then put the snapshot back.
        snap_db = self.root / ".chat.db.snapshot"
        snap_wal = self.root / ".chat.db-wal.snapshot"
        shutil.copyfile(db, snap_db)
        shutil.copyfile(f"{db}-wal", snap_wal)
        counts = self.counts()
        chats = self.truth_chats() if self.truth_on else []
        w.close()
        snap_db.replace(db)
        snap_wal.replace(f"{db}-wal")
        Path(f"{db}-shm").unlink(missing_ok=True)
        reactions = [r for _, r in sorted(self.reactions.values(), key=lambda x: x[0])]
        truth = Truth(
            profile=self.profile,
            chats=chats,
            messages=self.messages if self.truth_on else [],
            reactions=reactions if self.truth_on else [],
            contacts=self.truth_contacts() if self.truth_on else [],
            counts=counts,
            facts=[f for m, f in self.planted if m.text == f.answer and not (m.edited or m.unsent)],
        )
        truth.counts["contacts"] = len(self.truth_contacts())
        return truth

    def counts(self) -> dict[str, int]:
        q = self.w.conn.execute

        def one(sql: str) -> int:
            return int(q(sql).fetchone()[0])

        return {
            "message_rows": one("SELECT COUNT(*) FROM message"),
            "messages": self.rows - self.tapback_rows,
            "tapback_rows": self.tapback_rows,
            "reactions": len(self.reactions),
            "chats": one("SELECT COUNT(*) FROM chat"),
            "handles": one("SELECT COUNT(*) FROM handle"),
            "attachments": one("SELECT COUNT(*) FROM attachment"),
            "orphans": self.counter["orphans"],
            "system_events": self.counter["system_events"],
            "edited": self.counter["edited"],
            "unsent": self.counter["unsent"],
            "body_corrupt": self.counter["body_corrupt"],
            "seconds_rows": self.counter["seconds_rows"],
            "wal_rows": self.counter["wal_rows"],
            "deleted_rows": self.deleted,
        }

    def truth_chats(self) -> list[TruthChat]:
        out = []
        rows = self.w.conn.execute(
            "SELECT ROWID, guid, style, display_name, service_name FROM chat ORDER BY ROWID"
        ).fetchall()
        members: dict[int, list[str]] = {}
        for chat_id, ident in self.w.conn.execute(
            "SELECT j.chat_id, h.id FROM chat_handle_join j JOIN handle h ON h.ROWID = j.handle_id"
        ):
            members.setdefault(chat_id, []).append(ident)
        for rowid, guid, style, name, service in rows:
            out.append(
                TruthChat(
                    guid=guid,
                    is_group=style == 43,
                    display_name=name or None,
                    service=service,
                    participants=sorted(set(members.get(rowid, []))),
                )
            )
        return out

    def truth_contacts(self) -> list[TruthContact]:
        out = []
        for p in self.people:
            if p.in_ab and p.name is not None:
                ids = sorted({self.w.handle_ids[h][0] for h in p.handles})
                out.append(TruthContact(p.name, ids))
            else:
                for ident in sorted({self.w.handle_ids[h][0] for h in p.handles}):
                    out.append(TruthContact(None, [ident]))
        return out

    # ------------------------------------------------------------------ AddressBook

    def addressbook(self, root: Path) -> None:
        from chatstats.sample.addressbook import FixturePerson, write_macos_tree

        rng = random.Random(self.seed * 7919 + 17)
        source_ids = [f"{uuid_from(rng)}" for _ in range(2)]
        sources: dict[str, list[FixturePerson]] = {sid: [] for sid in source_ids}
        me = FixturePerson(
            "Alex", "Morgan", phones=["(415) 555-0100"], emails=["owner@icloud.com"], is_me=True
        )
        sources[source_ids[0]].append(me)
        for p in self.people:
            if not p.in_ab:
                continue
            phones = [p.phone_ab] if p.phone_ab else []
            emails = [p.email_ab] if p.email_ab else []
            card = FixturePerson(
                p.first,
                p.last,
                organization=p.org,
                nickname=p.nickname,
                phones=phones + p.extra_ab_phones,
                emails=emails + p.extra_ab_emails,
            )
            if p.also_source is not None:
                # The same person in a second account: same name, the number typed
                # differently, and the e-mail only on this card.
                first_card = FixturePerson(
                    p.first, p.last, phones=[us_formats(p.phone)[0]] if p.phone else []
                )
                sources[source_ids[p.source]].append(first_card)
                sources[source_ids[p.also_source]].append(card)
            else:
                sources[source_ids[p.source]].append(card)
        write_macos_tree(root, sources, top_level=[], rng=rng)
