"""Generate a realistic sample Messages library: chat.db, AddressBook stores and the truth.

`make_library(root)` writes

* `root/chat.db` (+ `chat.db-wal`): WAL mode, the profile's real schema, every quirk of
  Apple's data listed in the module's `QUIRKS` at least once (for ≥ 500 messages), and the
  most recent rows and updates living only in the WAL, as on a real Mac;
* `root/AddressBook/`: a macOS Contacts tree with two Sources (and an empty top-level store);
* `root/truth.json`: what a faithful importer must produce (`chatstats.sample.truth`).

Shape of the data: people with phones typed in many formats in Contacts but stored as E.164
in chat.db; 1:1 and group chats whose sizes follow a Zipf law (a few chats hold most
messages); conversations in bursts (seconds to minutes apart) separated by hours or days;
a multi-year span whose eras follow Apple's history (old rows with the body only in `text`
and dates in seconds; Ventura+ rows with `text` NULL and the body only in attributedBody).

Quirks are written by *scenarios*: small scripted exchanges placed at fixed points of the
timeline and merged in time order with the random filler traffic, so ROWID order follows
date order like a real database (apart from the deliberately late-synced row).
Everything derives from `seed`; the same arguments give byte-identical files.
"""

from __future__ import annotations

import functools
import heapq
import math
import plistlib
import random
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatstats.imessage.typedstream import TypedStreamError, extract_text
from chatstats.imessage.typedstream_writer import corrupt_variants, encode_attributed_string
from chatstats.sample.facts import FactPlanter, TruthFact
from chatstats.sample.truth import (
    Truth,
    TruthAttachment,
    TruthChat,
    TruthContact,
    TruthMessage,
    TruthReaction,
    dump_truth,
)
from chatstats.sample.writer import (
    NS,
    TAPBACK_KINDS,
    URL_BALLOON,
    AttachmentSpec,
    MessagesWriter,
    guid_from_bits,
)

__all__ = ["QUIRKS", "make_library"]

SEC = NS
MIN = 60 * NS
HOUR = 60 * MIN
DAY = 24 * HOUR
GAP_90 = 90 * MIN  # the conversation boundary the importer uses

# Every quirk the generator guarantees (for ≥ 500 messages), by profile availability.
QUIRKS = (
    "text_null_attributed_only",
    "text_only",
    "text_and_attributed",
    "byte_lengths",
    "tag_bytes_in_text",
    "length_overrun",
    "attachments",
    "corrupt_body",
    "bodyless",
    "tapbacks",
    "replies",
    "edits",
    "unsends",
    "group_events",
    "services",
    "same_person_many_handles",
    "addressbook_quirks",
    "orphans",
    "seconds_dates",
    "effects",
    "audio",
    "url_balloon",
    "gaps_90_min",
    "wal_only_rows",
)


def _utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> int:
    return int(datetime(y, m, d, hh, mm, tzinfo=UTC).timestamp()) * NS


@dataclass(frozen=True)
class _Era:
    name: str
    start: int
    end: int
    share: float  # of the filler rows
    body_me: tuple[tuple[str, float], ...]
    body_them: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class _Plan:
    eras: tuple[_Era, ...]
    seconds_before: int | None  # rows older than this store seconds (None: profile decides)


_OLD = (("both", 0.65), ("text", 0.35))
_MID = (("both", 0.9), ("text", 0.1))
_VENTURA_ME = (("attributed", 0.97), ("both", 0.03))
_VENTURA_THEM = (("attributed", 0.88), ("both", 0.12))
# Releases that introduced what the scenarios write (rows never predate their feature).
IOS10 = _utc(2016, 9, 13)  # tapbacks, effects, rich links
HIGH_SIERRA = _utc(2017, 9, 25)  # dates in nanoseconds
IOS14 = _utc(2020, 9, 16)  # inline replies
VENTURA = _utc(2022, 10, 24)  # edit/unsend; text only in attributedBody on Macs
IOS18 = _utc(2024, 9, 16)  # emoji/sticker tapbacks, RCS
MACOS26 = _utc(2025, 9, 15)  # Undo Send without date_retracted

PLANS = {
    "sequoia": _Plan(
        (
            _Era("old", _utc(2015, 3, 1), HIGH_SIERRA, 0.07, _OLD, _OLD),
            _Era("mid", HIGH_SIERRA, VENTURA, 0.18, _MID, _MID),
            _Era("ventura", VENTURA, _utc(2025, 11, 20), 0.75, _VENTURA_ME, _VENTURA_THEM),
        ),
        _utc(2016, 9, 1),
    ),
    "sonoma": _Plan(
        (
            _Era("old", _utc(2014, 6, 1), HIGH_SIERRA, 0.08, _OLD, _OLD),
            _Era("mid", HIGH_SIERRA, VENTURA, 0.22, _MID, _MID),
            _Era("ventura", VENTURA, _utc(2024, 6, 1), 0.70, _VENTURA_ME, _VENTURA_THEM),
        ),
        _utc(2016, 1, 1),
    ),
    "legacy": _Plan(
        (
            _Era("old", _utc(2011, 10, 12), _utc(2014, 9, 17), 0.3, _OLD, _OLD),
            _Era("mid", _utc(2014, 9, 17), _utc(2017, 6, 1), 0.7, _MID, _MID),
        ),
        None,
    ),
}

# ----------------------------------------------------------------------------- corpus


def _lines(block: str) -> tuple[str, ...]:
    return tuple(line for line in block.strip("\n").split("\n") if line)


def _words(block: str) -> tuple[str, ...]:
    return tuple(block.split())


FIRST_NAMES = _words(
    """
Emma Olivia Ava Sophia Mia Amelia Harper Evelyn Abigail Emily Ella Chloe Grace Zoe Nora
Liam Noah Oliver Elijah James William Benjamin Lucas Henry Alexander Mason Ethan Daniel
Matthew Jack Owen Samuel Ryan Nathan Caleb Isaac Aaron Priya Aisha Fatima Mateo Santiago
Camila Valentina Lucía Sofía Diego Javier Chloé Léa Manon Théo Hugo Lukas Jonas Lena
Hannah Marta Giulia Francesco Björn Astrid Sean Siobhán Kwame Amara Tariq Yusuf Dana
Rachel Maya Noa Kai Leilani Ana João Beatriz Rafael Zoë Renée Jürgen Søren
"""
)
LAST_NAMES = _words(
    """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson
White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott
Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter
Roberts Patel Shah Okafor Mensah Haddad Cohen Levi Müller Schmidt Dubois Lefèvre Rossi
Bianchi Silva Santos Kowalski Novak Andersson O'Brien MacLeod Nakamura Kim Park Chen
Wang Singh
"""
)
# (first, last) as the cards store them; the name rule still reads "First Last".
NON_LATIN_NAMES = (  # (first, last, language of their messages)
    ("芳", "王", "zh"),
    ("伟", "李", "zh"),
    ("さくら", "山田", "ja"),
    ("健太", "佐藤", "ja"),
    ("민준", "김", "ko"),
    ("Дмитрий", "Иванов", "ru"),
    ("Анна", "Смирнова", "ru"),
    ("محمد", "العلي", "ar"),
    ("ليلى", "حداد", "ar"),
    ("נועה", "כהן", "he"),
    ("प्रिया", "शर्मा", "hi"),
    ("Γιώργος", "Παπαδόπουλος", "el"),
    ("สมชาย", "ใจดี", "th"),
)
ORGANIZATIONS = (
    "Blue Bottle Dental",
    "Riverside Veterinary Clinic",
    "Acme Plumbing & Heating",
    "Golden Dragon Takeout",
    "Northside Auto Repair",
)
EMAIL_DOMAINS = ("gmail.com", "icloud.com", "me.com", "outlook.com", "yahoo.com", "hey.com")

US_AREA = (212, 310, 415, 512, 617, 720, 206, 303, 305, 404, 503, 646, 702, 773, 818, 917)
# (E.164 prefix, digits to add, country, Contacts formats: each # takes the next digit)
INTL = (
    ("+447700900", 3, "gb", ("+44 7700 900###", "+44 (0) 7700 900###", "0044 7700 900###")),
    ("+336", 8, "fr", ("+33 6 ## ## ## ##",)),
    ("+49151", 8, "de", ("+49 151 #### ####",)),
    ("+8190", 8, "jp", ("+81 90-####-####",)),
    ("+96279", 7, "jo", ("+962 79 ### ####",)),
    ("+9198", 8, "in", ("+91 98### #####",)),
    ("+55119", 8, "br", ("+55 11 9####-####", "011 55 11 9#### ####")),
)

_EN_OPENERS = (
    "",
    "",
    "",
    "hey ",
    "ok ",
    "lol ",
    "omg ",
    "yeah ",
    "haha ",
    "wait ",
    "so ",
    "honestly ",
    "btw ",
    "Hey! ",
    "Morning! ",
    "ugh ",
    "Okay so ",
)
_EN_LINES = _lines(
    """
are you around later?
running 10 min late, sorry
did you see the game last night
can you grab milk on the way home
just landed
call me when you get a sec
that's hilarious
I'll be there in 5
what time works for you tomorrow?
happy birthday!!
thanks so much for dinner
where are we meeting
sounds good to me
did you get my email about the lease
the kids loved it
I can't believe it's already Friday
let me check and get back to you
we're out of coffee again
traffic is insane on 101
parking at the usual spot
can you send me the address
just saw this and thought of you
my flight got delayed 2 hours
no worries at all
have you watched the new season yet
dinner at 7?
leaving now
the dog ate my sandwich
how did the interview go
congrats!!! so proud of you
is the meeting still on
I'm outside
can we push to 3:30
what's the wifi password
good night
miss you
did mom call you
don't forget the tickets
I owe you one
pick you up at 8
rain check?
the package arrived
who's bringing dessert
love that photo
on my way
that restaurant was amazing
text me when you're home
did you book the hotel yet
I found your keys
see you soon
how's the new job
brunch Sunday?
can't talk, in a meeting
what are you up to this weekend
running to the store, need anything
the concert starts at 9
remember to water the plants
lmk if you need a ride
lol yes exactly
I'm so tired today
meeting moved to Thursday
got the job!!
ok sounds like a plan
my phone is about to die
do you have the charger
send pics!
that's wild
we should do this more often
I'll bring the wine
is it supposed to snow tomorrow
tell your sister I said hi
the train is packed
still at the office
did you feed the cat
what did the doctor say
omw, 10 min
saw your message, will reply later
costs $45 per person
the 3rd or the 4th?
meet at gate B12
Can you review the doc before 5pm?
I left a voicemail
we won 3-1!!
kickoff is at 2
are you coming to the party
I think I left my jacket at your place
this weather though
can you believe that
I'm making pasta, want some
just finished the book, wow
"""
)
_EN_CLOSERS = (
    "",
    "",
    "",
    "",
    "!",
    "!!",
    "?",
    " lol",
    " 😂",
    " 🙏",
    " ❤️",
    " 👍🏽",
    " 😅",
    " 🎉",
    " :)",
    " 😭",
)
# One language per line: "code: line | line | …".
_LANG_LINES = {
    code: tuple(x.strip() for x in rest.split("|"))
    for code, _, rest in (
        row.partition(": ")
        for row in _lines(
            """
es: ¿Dónde estás? | Llego en diez minutos | ¡Feliz cumpleaños! | ¿Cenamos mañana? | Te extraño mucho | Qué risa jajaja | Ya voy saliendo
fr: On se retrouve où ? | J'arrive dans 5 minutes | Bon anniversaire ! 🎂 | Tu es libre ce week-end ? | Merci beaucoup pour hier soir | C'est génial ! | À tout à l'heure
de: Bin gleich da | Hast du heute Abend Zeit? | Alles Gute zum Geburtstag! | Danke für gestern | Wo treffen wir uns? | Schönes Wochenende! | Das ist ja verrückt
ru: Ты где? | Буду через десять минут | С днём рождения! 🎉 | Спасибо большое | Позвони, когда сможешь | Увидимся завтра | Это очень смешно
ar: أين أنت؟ | سأصل بعد عشر دقائق | عيد ميلاد سعيد! | شكراً جزيلاً | نلتقي غداً إن شاء الله | اتصل بي عندما تستطيع
he: איפה אתה? | אני מגיע עוד עשר דקות | יום הולדת שמח! | תודה רבה | נתראה מחר | מה שלומך?
zh: 你在哪里？ | 我十分钟后到 | 生日快乐！🎂 | 谢谢你 | 明天见 | 今晚一起吃饭吗？ | 哈哈哈太好笑了
ja: 今どこ？ | あと10分で着くよ | お誕生日おめでとう！ | ありがとう！ | また明日ね | 了解です👍 | 今夜ひま？
ko: 어디야? | 10분 후에 도착해 | 생일 축하해! | 고마워 | 내일 봐 | ㅋㅋㅋㅋ 진짜 웃기다
hi: तुम कहाँ हो? | मैं दस मिनट में पहुँचूँगा | जन्मदिन मुबारक हो! | बहुत धन्यवाद | कल मिलते हैं
th: อยู่ไหน | อีกสิบนาทีถึง | สุขสันต์วันเกิด! | ขอบคุณมาก | เจอกันพรุ่งนี้
el: Πού είσαι; | Έρχομαι σε δέκα λεπτά | Χρόνια πολλά! | Ευχαριστώ πολύ | Τα λέμε αύριο
pt: Cadê você? | Chego em dez minutos | Feliz aniversário! | Muito obrigado | Até amanhã | Kkkkkk muito bom
"""
        )
    )
}
EMOJI = (
    "😂",
    "❤️",
    "👍",
    "👍🏽",
    "🙏🏿",
    "🎉",
    "🔥",
    "😭",
    "🥲",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "🇯🇵",
    "🇧🇷",
    "1️⃣",
    "🤷‍♀️",
    "🧑🏻‍💻",
    "🫠",
    "✈️",
    "☕️",
)
# kind → (transfer_name, mime_type, uti, smallest, largest total_bytes)
MEDIA = {
    "heic": ("IMG_{n}.HEIC", "image/heic", "public.heic", 400_000, 4_000_000),
    "jpeg": ("IMG_{n}.jpeg", "image/jpeg", "public.jpeg", 80_000, 3_000_000),
    "png": ("Screenshot {n}.png", "image/png", "public.png", 50_000, 900_000),
    "mov": ("IMG_{n}.MOV", "video/quicktime", "com.apple.quicktime-movie", 2_000_000, 60_000_000),
    "pdf": ("Boarding Pass.pdf", "application/pdf", "com.adobe.pdf", 40_000, 400_000),
}
TAPBACK_EMOJI = ("🎉", "😍", "🔥", "👀", "🫶", "🥹", "💯", "🍕")
EFFECTS = (
    "com.apple.MobileSMS.expressivesend.impact",
    "com.apple.MobileSMS.expressivesend.loud",
    "com.apple.MobileSMS.expressivesend.gentle",
    "com.apple.MobileSMS.expressivesend.invisibleink",
    "com.apple.messages.effect.CKConfettiEffect",
    "com.apple.messages.effect.CKFireworksEffect",
    "com.apple.messages.effect.CKHappyBirthdayEffect",
    "com.apple.messages.effect.CKHeartEffect",
    "com.apple.messages.effect.CKLasersEffect",
)
URLS = (
    ("https://www.nytimes.com/2024/03/12/travel/lisbon-weekend.html", "36 Hours in Lisbon"),
    ("https://youtu.be/dQw4w9WgXcQ", "Rick Astley - Never Gonna Give You Up"),
    ("https://www.airbnb.com/rooms/48213377", "Cabin in Big Sur"),
    ("https://maps.apple.com/?address=1%20Infinite%20Loop", "1 Infinite Loop"),
    ("https://github.com/python/cpython/pull/12345", "gh-12345: Fix a race in asyncio"),
)
APP_BALLOON = (
    "com.apple.messages.MSMessageExtensionBalloonPlugin:0000000000:"
    "com.apple.PassbookUIService.PeerPaymentMessagesExtension"
)


def _build_pools(rng: random.Random, size: int) -> dict[str, list[str]]:
    seen: set[str] = set()
    en: list[str] = []
    attempts = 0
    while len(en) < size and attempts < size * 20:
        attempts += 1
        line = rng.choice(_EN_LINES)
        opener = rng.choice(_EN_OPENERS)
        closer = rng.choice(_EN_CLOSERS)
        if rng.random() < 0.25:
            line = f"{line}. {rng.choice(_EN_LINES)}"
        if rng.random() < 0.08:
            line = f"{line} {rng.choice(EMOJI)}"
        text = f"{opener}{line}{closer}"
        if opener and opener[0].isupper():
            text = text[0].upper() + text[1:]
        if text not in seen:
            seen.add(text)
            en.append(text)
    for _ in range(max(10, size // 60)):  # long messages: several sentences, some paragraphs
        n = rng.randint(6, 40)
        sentences = [rng.choice(_EN_LINES).capitalize() + "." for _ in range(n)]
        if rng.random() < 0.5:
            sentences.insert(n // 2, "\n\n")
        en.append(" ".join(sentences).replace(" \n\n ", "\n\n"))
    en.extend(EMOJI)  # emoji-only messages
    pools = {"en": en}
    for lang, lines in _LANG_LINES.items():
        pool = list(lines)
        pool += [f"{line} {e}" for line in lines for e in rng.sample(EMOJI, 2)]
        pools[lang] = pool
    return pools


def _exact_utf8(seed_text: str, n: int, filler: str = " ok") -> str:
    """A text of exactly `n` UTF-8 bytes (multi-byte characters kept whole)."""
    out = seed_text
    while len(out.encode()) < n:
        out += filler
    raw = out.encode()[:n]
    text = raw.decode("utf-8", errors="ignore")
    while len(text.encode()) < n:
        text += "."
    return text


# ----------------------------------------------------------------------------- people


@dataclass
class _Person:
    first: str | None
    last: str | None
    org: str | None = None
    nickname: str | None = None
    lang: str = "en"
    phone: str | None = None  # E.164 as chat.db stores it
    phone_ab: str | None = None  # as typed into Contacts
    country: str = "us"
    email: str | None = None  # chat.db handle id
    email_ab: str | None = None  # as typed into Contacts
    extra_ab_phones: list[str] = field(default_factory=list)
    extra_ab_emails: list[str] = field(default_factory=list)
    in_ab: bool = True
    source: int = 0  # index of the AddressBook Source holding the card
    also_source: int | None = None  # the same person's second card in another Source
    services: tuple[str, ...] = ("iMessage",)  # services the phone handle exists on
    email_handle: bool = False
    handles: list[int] = field(default_factory=list)
    key: str = ""

    @property
    def name(self) -> str | None:
        if not self.in_ab:
            return None
        full = " ".join(x for x in (self.first, self.last) if x)
        return full or self.org


def _us_formats(e164: str) -> tuple[str, ...]:
    a, e, line = e164[2:5], e164[5:8], e164[8:]
    return (
        f"({a}) {e}-{line}",
        f"{a}-{e}-{line}",
        f"+1 ({a}) {e}-{line}",
        f"+1 {a} {e} {line}",
        f"{a}{e}{line}",
        f"1 ({a}) {e}-{line}",
        f"{a}.{e}.{line}",
        e164,
        f"1-{a}-{e}-{line}",
    )


class _Ids:
    """Unique phone numbers and e-mail addresses for generated people."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def us_phone(self) -> tuple[str, str]:
        while True:
            e164 = f"+1{self.rng.choice(US_AREA)}555{self.rng.randrange(10000):04d}"
            if e164 not in self.used:
                self.used.add(e164)
                return e164, self.rng.choice(_us_formats(e164))

    def intl_phone(self) -> tuple[str, str, str]:
        while True:
            prefix, n, country, formats = self.rng.choice(INTL)
            d = "".join(str(self.rng.randrange(10)) for _ in range(n))
            e164 = prefix + d
            if e164 not in self.used:
                self.used.add(e164)
                digits = iter(d)
                typed = "".join(
                    next(digits) if ch == "#" else ch for ch in self.rng.choice(formats)
                )
                return e164, typed, country

    def email(self, first: str, last: str) -> tuple[str, str]:
        base = "".join(
            ch for ch in f"{first}.{last}".lower() if ch.isascii() and (ch.isalnum() or ch == ".")
        )
        base = base.strip(".") or "user"
        while True:
            suffix = "" if self.rng.random() < 0.5 else str(self.rng.randrange(10, 99))
            address = f"{base}{suffix}@{self.rng.choice(EMAIL_DOMAINS)}"
            if address not in self.used:
                self.used.add(address)
                typed = address
                if self.rng.random() < 0.3:  # Contacts keeps whatever case was typed
                    local, domain = address.split("@")
                    typed = f"{local.title()}@{domain.capitalize()}"
                return address, typed


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


class _Builder:
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
        self.pools = _build_pools(self.rng, min(4000, 200 + messages // 20))
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

    def era_at(self, t: int) -> _Era:
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
        shown = "" if body == "none" or not text else _visible(text)
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
        other = kw.get("handle")
        title = kw.get("title")
        photo = kw.get("photo")
        if kind == "participant_added":
            out = w.add_member(chat, other, from_me=from_me, sender=sender, date=date)
        elif kind == "participant_removed":
            out = w.remove_member(chat, other, from_me=from_me, sender=sender, date=date)
        elif kind == "renamed":
            out = w.rename_group(chat, title, from_me=from_me, sender=sender, date=date)
        elif kind == "participant_left":
            out = w.leave_group(chat, from_me=from_me, sender=sender, date=date)
        elif kind == "photo_changed":
            out = w.set_group_photo(chat, photo, from_me=from_me, sender=sender, date=date)
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
        msg.text = _visible(versions[-1])
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
        ids = _Ids(rng)
        n = max(24, min(300, 24 + self.target_rows // 2000))
        people: list[_Person] = []
        names_used: set[tuple[str, str]] = set()
        non_latin = list(NON_LATIN_NAMES)
        rng.shuffle(non_latin)
        langs = [lang for lang in _LANG_LINES]
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
            p = _Person(first, last, lang=lang)
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
        both = _Person("Marisol", "Vega", lang="es")
        both.phone, both.phone_ab = ids.us_phone()
        both.email, both.email_ab = "marisol.vega@icloud.com", "Marisol.Vega@iCloud.com"
        both.services = ("iMessage", "SMS")
        both.email_handle = True
        dup = _Person("Tobias", "Hartmann", lang="de")
        dup.phone, dup.phone_ab = ids.us_phone()
        dup.also_source = 1
        dup.email, dup.email_ab = "tobias.hartmann@outlook.com", "Tobias.Hartmann@Outlook.com"
        case = _Person("Liam", "O'Brien")
        case.phone, case.phone_ab = ids.us_phone()
        case.email, case.email_ab = "Liam.OBrien@iCloud.com", "liam.obrien@icloud.com"
        case.email_handle = True
        twin_a = _Person("Chris", "Lee")
        twin_a.phone, twin_a.phone_ab = ids.us_phone()
        twin_b = _Person("Chris", "Lee", source=1)
        twin_b.phone, twin_b.phone_ab = ids.us_phone()
        org = _Person(None, None, org=ORGANIZATIONS[0])
        org.phone, org.phone_ab = ids.us_phone()
        org.services = ("SMS",)
        solo = _Person("Ngozi", None)
        solo.phone, solo.phone_ab, solo.country = ids.intl_phone()
        gap = _Person("Yuki", "Tanaka", lang="ja")
        gap.phone, gap.phone_ab = ids.us_phone()
        rcs = _Person("Rosa", "Delgado", lang="es")
        rcs.phone, rcs.phone_ab = ids.us_phone()
        rcs.services = ("RCS", "SMS") if self.modern else ("SMS",)
        anyp = _Person("Omar", "Haddad", lang="ar")
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
            "mobile": _Person(None, None, in_ab=False),
            "shortcode": _Person(None, None, in_ab=False),
            "email": _Person(None, None, in_ab=False),
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
            p = _Person(rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES))
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
            kw["payload"] = _url_payload(url, _title)
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

    # ------------------------------------------------------------------ scenarios

    def scenarios(self) -> list[tuple[int, Iterator[int]]]:
        """Each scenario is a generator that yields the time it wants to run next; they are
        spread over their era, never before the Apple release that introduced the feature."""
        eras = {e.name: e for e in self.plan.eras}
        last = self.plan.eras[-1]
        newest_tapbacks = IOS18 if self.can_emoji else IOS10
        planned: list[tuple[_Era, int, Callable[[int], Iterator[int]]]] = [
            (eras["old"], 0, self.sc_old_rows),
            (last, 0, self.sc_lengths),
            (last, 0, self.sc_bytes),
            (last, IOS14 if self.can_reply else IOS10, self.sc_attachments),
            (last, IOS10, self.sc_balloons),
            (last, newest_tapbacks, self.sc_tapbacks),
            (last, 0, self.sc_group_events),
            (last, IOS18 if self.modern else 0, self.sc_services),
            (last, 0, self.sc_orphans),
            (last, IOS10, self.sc_effects),
            (last, 0, self.sc_corrupt),
            (last, 0, self.sc_gaps),
            (last, 0, self.sc_misc),
        ]
        if self.can_reply:
            planned.append((last, IOS14, self.sc_replies))
        if self.can_edit:
            planned.append((last, 0, self.sc_edits))
            planned.append((last, MACOS26 if self.modern else 0, self.sc_unsends))
        by_era: dict[str, list[tuple[int, Callable[[int], Iterator[int]]]]] = {}
        for era, earliest, fn in planned:
            by_era.setdefault(era.name, []).append((earliest, fn))
        out = []
        for name, fns in by_era.items():
            era = eras[name]
            end = era.end
            if name == "old" and self.plan.seconds_before:
                end = min(end, self.plan.seconds_before)
            span = end - era.start
            for i, (earliest, fn) in enumerate(fns):
                anchor = era.start + span * (i + 1) // (len(fns) + 2)
                anchor = max(anchor, earliest + 2 * (i + 1) * DAY)
                anchor -= anchor % DAY
                anchor += (13 + i % 8) * HOUR + 7 * MIN + 123_456_789  # afternoon, odd ns
                assert anchor < era.end, fn.__name__
                out.append((anchor, fn(anchor)))
        return out

    def p(self, role: str) -> _Person:
        return self.special[role]

    def chat_of(self, role: str, index: int = 0) -> tuple[int, int]:
        h = self.special[role].handles[index]
        return self.one_to_one[h], h

    def sc_old_rows(self, t: int) -> Iterator[int]:
        chat, h = self.chat_of("both")
        yield t
        self.send(chat, "hey are you coming tonight?", from_me=False, sender=h, date=t, body="text")
        self.send(chat, "Yes! Leaving in 10", from_me=True, date=t + 50 * SEC, body="both")
        self.send(
            chat, "cool see you there", from_me=False, sender=h, date=t + 3 * MIN, body="both"
        )
        self.send(chat, "👍", from_me=True, date=t + 4 * MIN, body="text")

    def sc_lengths(self, t: int) -> Iterator[int]:
        chat, h = self.chat_of("twin_a")
        yield t
        seeds = (
            "So here's the whole story from last night: ",
            "Długa wiadomość — ",
            "長いメッセージ：",
        )
        for i, n in enumerate((127, 128, 129, 255, 256, 300, 5000, 40000, 70000)):
            text = _exact_utf8(seeds[i % len(seeds)], n, filler=rng_words(self.rng))
            self.send(chat, text, from_me=i % 2 == 0, sender=h, date=t + i * 40 * SEC)

    def sc_bytes(self, t: int) -> Iterator[int]:
        chat, h = self.chat_of("case")
        yield t
        texts = (
            "Ȅ is 0xC8 0x84 in UTF-8",
            "Ɔ ends in 0x86, ↄ has 86 84 inside",
            "\x01+ starts like a typedstream string",
            "+1 for that \x01+ idea",
            "streamtyped NSMutableAttributedString NSString iI",
            "e\u0301 vs é (combining accent)",
            "zero\u200dwidth joiner and \u200fRTL mark",
            "مرحبا بالعالم — hello in Arabic",
            "שלום עולם",
            "👨‍👩‍👧‍👦👍🏽🇯🇵",
            "漢字とかなと한글, Привет, नमस्ते, สวัสดี, Γειά σου",
            "tab\there and a\nnewline",
        )
        for i, text in enumerate(texts):
            self.send(chat, text, from_me=i % 3 == 0, sender=h, date=t + i * 30 * SEC)
        # Real Messages.app bodies whose string length prefix overruns the text: into the
        # runs, across the one-byte/0x81 prefix boundary, past the blob's end, and before a
        # caption's attachment run. The text is recoverable, so the truth keeps it.
        body = "attributed" if self.profile != "legacy" else "both"
        t = t + len(texts) * 30 * SEC
        overruns = (
            ("the length says more than this", 7),
            ("Ɔ and ᆄ\x02iI right before the runs", 120),
            ("past the end of the blob 🫠", 100_000),
        )
        for i, (text, extra) in enumerate(overruns):
            self.send(
                chat,
                text,
                from_me=i % 2 == 1,
                sender=h,
                date=t + i * 30 * SEC,
                body=body,
                length_overrun=extra,
            )
        self.send(
            chat,
            "caption under an overrunning length",
            from_me=False,
            sender=h,
            date=t + 2 * MIN,
            body=body,
            attachments=(self.image(),),
            length_overrun=40,
        )

    def sc_attachments(self, t: int) -> Iterator[int]:
        chat, h = self.chat_of("twin_b")
        yield t
        self.send(chat, None, from_me=False, sender=h, date=t, attachments=(self.image(),))
        self.send(
            chat,
            "Look at this view 🏔️",
            from_me=True,
            date=t + 30 * SEC,
            attachments=(self.image("jpeg"),),
        )
        trio = (self.image(), self.image(), self.image("png"))
        _, multi, _ = self.send(
            chat, "three from the hike", from_me=False, sender=h, date=t + MIN, attachments=trio
        )
        # Tapbacks on body parts other than 0: the second image and the text (part 3).
        self.react(chat, multi, 2000, sender=None, date=t + 2 * MIN, part=1, quoted="an image")
        self.react(
            chat,
            multi,
            2003,
            sender=None,
            date=t + 2 * MIN + 5 * SEC,
            part=3,
            quoted="three from the hike",
        )
        if self.can_reply:
            self.send(
                chat,
                "this one is the best",
                from_me=True,
                date=t + 3 * MIN,
                reply_to=multi,
                reply_part=1,
            )
        # Attachment rows without a body, and one whose file path is unknown.
        self.send(
            chat,
            None,
            from_me=False,
            sender=h,
            date=t + 4 * MIN,
            body="none",
            attachments=(self.image("mov"),),
        )
        nameless = AttachmentSpec(
            "IMG_0001.jpeg", "image/jpeg", "public.jpeg", 123_456, filename=None
        )
        self.send(chat, None, from_me=False, sender=h, date=t + 5 * MIN, attachments=(nameless,))
        self.send(
            chat,
            "here's the pass",
            from_me=True,
            date=t + 6 * MIN,
            attachments=(self.image("pdf"),),
        )
        rowid, _, _ = self.send(
            chat,
            None,
            from_me=False,
            sender=h,
            date=t + 7 * MIN,
            attachments=(self.audio_spec(),),
            audio=True,
        )
        yield t + 8 * MIN
        self.w.play(rowid, t + 8 * MIN)

    def sc_balloons(self, t: int) -> Iterator[int]:
        chat, h = self.chat_of("dup")
        yield t
        url, title = URLS[0]
        _, guid, _ = self.send(
            chat,
            url,
            from_me=False,
            sender=h,
            date=t,
            balloon=URL_BALLOON,
            payload=_url_payload(url, title),
        )
        self.react(chat, guid, 2001, sender=None, date=t + 20 * SEC, form="bp", quoted=url)
        self.send(
            chat,
            "\ufffd",
            from_me=True,
            date=t + MIN,
            balloon=APP_BALLOON,
            payload=plistlib.dumps({"amount": "20.00", "currency": "USD"}, fmt=plistlib.FMT_BINARY),
        )

    def sc_tapbacks(self, t: int) -> Iterator[int]:
        chat = self.tapback_group
        a, b, c, d, e = self.w.chats[chat].handles[:5]
        yield t
        t1_text, t2_text, t3_text, t4_text, t5_text = (
            "Who's in for tacos Friday?",
            "I booked the table for 8",
            "Bring cash, they don't take cards",
            "Parking is a nightmare there",
            "Running late, save me a seat",
        )
        _, t1, _ = self.send(chat, t1_text, from_me=False, sender=a, date=t)
        _, t2, _ = self.send(chat, t2_text, from_me=False, sender=b, date=t + 20 * SEC)
        _, t3, _ = self.send(chat, t3_text, from_me=True, date=t + 40 * SEC)
        _, t4, _ = self.send(chat, t4_text, from_me=True, date=t + 60 * SEC)
        _, t5, _ = self.send(chat, t5_text, from_me=False, sender=c, date=t + 80 * SEC)
        s = t + 2 * MIN
        # All six classic tapbacks active at once, one of them from me.
        self.react(chat, t1, 2000, sender=b, date=s, quoted=t1_text)
        self.react(chat, t1, 2001, sender=c, date=s + 1 * SEC, quoted=t1_text)
        self.react(chat, t1, 2002, sender=d, date=s + 2 * SEC, quoted=t1_text)
        self.react(chat, t1, 2003, sender=e, date=s + 3 * SEC, quoted=t1_text)
        self.react(chat, t1, 2004, sender=None, date=s + 4 * SEC, quoted=t1_text)
        self.react(chat, t2, 2005, sender=a, date=s + 5 * SEC, quoted=t2_text)
        if self.can_emoji:
            self.react(chat, t2, 2006, sender=c, date=s + 6 * SEC, emoji="🌮", quoted=t2_text)
            self.react(chat, t2, 2007, sender=d, date=s + 7 * SEC, quoted=t2_text)
        # A changed tapback: liked, then loved → only loved remains.
        self.react(chat, t3, 2001, sender=e, date=s + 10 * SEC, quoted=t3_text)
        self.react(chat, t3, 2000, sender=e, date=s + 12 * SEC, quoted=t3_text)
        # Added then removed → nothing remains.
        self.react(chat, t3, 2003, sender=a, date=s + 14 * SEC, quoted=t3_text)
        self.react(chat, t3, 3003, sender=a, date=s + 16 * SEC, quoted=t3_text)
        # Every removal kind, each after its add.
        senders = (a, b, c, d, e)
        last_kind = 8 if self.can_emoji else 6
        for k in range(last_kind):
            who = senders[k % 5]
            emoji = "🔥" if k == 6 else None
            self.react(
                chat,
                t4,
                2000 + k,
                sender=who,
                date=s + (20 + 4 * k) * SEC,
                quoted=t4_text,
                emoji=emoji,
            )
            self.react(
                chat,
                t4,
                3000 + k,
                sender=who,
                date=s + (22 + 4 * k) * SEC,
                quoted=t4_text,
                emoji=emoji,
            )
        # Bare-GUID target form.
        self.react(chat, t5, 2000, sender=d, date=s + 60 * SEC, form="bare", quoted=t5_text)
        # Old-style replacement: the add row is deleted when the removal arrives (§5).
        rowid, _ = self.react(chat, t5, 2001, sender=b, date=s + 70 * SEC, quoted=t5_text)
        yield s + 80 * SEC
        self.w.delete(rowid)
        self.rows -= 1
        self.deleted += 1
        self.tapback_rows -= 1
        self.react(chat, t5, 3001, sender=b, date=s + 80 * SEC, quoted=t5_text)

    def sc_replies(self, t: int) -> Iterator[int]:
        chat = self.tapback_group
        a, b = self.w.chats[chat].handles[:2]
        yield t
        _, root, _ = self.send(
            chat, "Should we rent a van for the trip?", from_me=False, sender=a, date=t
        )
        self.send(
            chat, "unrelated: who has my umbrella", from_me=False, sender=b, date=t + 30 * SEC
        )
        self.send(chat, "Yes, a van makes sense", from_me=True, date=t + 60 * SEC, reply_to=root)
        self.send(chat, "I can drive", from_me=False, sender=b, date=t + 90 * SEC, reply_to=root)

    def sc_edits(self, t: int) -> Iterator[int]:
        chat, h = self.chat_of("any") if self.modern else self.chat_of("both")
        yield t
        r1, _, m1 = self.send(chat, "Dinner at 7 at Luigi's", from_me=True, date=t)
        self.edit(r1, m1, ["Dinner at 7:30 at Luigi's", "Dinner at 8 at Luigi's"], t)
        r2, _, m2 = self.send(
            chat, "I'll bring the salad", from_me=False, sender=h, date=t + 2 * MIN
        )
        self.edit(
            r2,
            m2,
            ["I'll bring the dessert", "I'll bring dessert 🍰", "I'll bring dessert and wine 🍷"],
            t + 2 * MIN,
        )
        r3, _, m3 = self.send(chat, "see you tmrw", from_me=True, date=t + 15 * MIN)
        self.edit(r3, m3, ["see you tomorrow"], t + 15 * MIN)
        r4, _, m4 = self.send(
            chat, "Old caption", from_me=True, date=t + 20 * MIN, attachments=(self.image(),)
        )
        self.edit(r4, m4, ["New caption 📸"], t + 20 * MIN)

    def sc_unsends(self, t: int) -> Iterator[int]:
        chat, h = self.chat_of("both")
        yield t
        r1, _, m1 = self.send(chat, "oops wrong chat", from_me=True, date=t)
        self.unsend(r1, m1, t + 40 * SEC)
        r2, _, m2 = self.send(chat, "ignore that", from_me=False, sender=h, date=t + 2 * MIN)
        self.unsend(r2, m2, t + 3 * MIN, macos26=self.modern)
        self.send(chat, "all good", from_me=True, date=t + 4 * MIN)

    def sc_group_events(self, t: int) -> Iterator[int]:
        chat = self.member_group
        a, b, c = self.w.chats[chat].handles[:3]
        d = self.member_pool[0]
        yield t
        self.send(chat, "new group who dis", from_me=False, sender=a, date=t)
        self.event("participant_added", chat, sender=None, date=t + MIN, handle=d)
        self.send(chat, "hi all! thanks for adding me", from_me=False, sender=d, date=t + 2 * MIN)
        self.event("participant_removed", chat, sender=a, date=t + 3 * MIN, handle=b)
        self.event("renamed", chat, sender=c, date=t + 4 * MIN, title="Weekend Crew 🏕️")
        self.event("participant_left", chat, sender=c, date=t + 5 * MIN)
        photo = AttachmentSpec("GroupPhoto.jpeg", "image/jpeg", "public.jpeg", 245_310)
        self.event("photo_changed", chat, sender=a, date=t + 6 * MIN, photo=photo)
        self.event("renamed", chat, sender=None, date=t + 7 * MIN, title="Camping 2025")
        self.event("photo_removed", chat, sender=None, date=t + 8 * MIN)
        self.send(chat, "see you all saturday", from_me=True, date=t + 9 * MIN)
        # The owner leaving a different group: handle_id 0, is_from_me 1.
        other = self.left_group
        first = self.w.chats[other].handles[0]
        self.send(other, "project's done, leaving this one", from_me=True, date=t + 10 * MIN)
        self.send(other, "bye!", from_me=False, sender=first, date=t + 11 * MIN)
        self.event("participant_left", other, sender=None, date=t + 12 * MIN)

    def sc_services(self, t: int) -> Iterator[int]:
        both = self.p("both")
        im_phone, sms_phone, im_email = both.handles
        yield t
        c_im, c_sms, c_mail = (self.one_to_one[h] for h in both.handles)
        self.send(c_im, "¿Vienes a la cena?", from_me=False, sender=im_phone, date=t)
        self.send(
            c_sms,
            "my iMessage is off, texting instead",
            from_me=False,
            sender=sms_phone,
            date=t + MIN,
        )
        self.send(c_sms, "got it", from_me=True, date=t + 2 * MIN)
        # A tapback sent to an SMS phone arrives as ordinary text (§4).
        self.send(c_sms, "Liked “got it”", from_me=False, sender=sms_phone, date=t + 3 * MIN)
        self.send(
            c_mail, "sending from my laptop", from_me=False, sender=im_email, date=t + 4 * MIN
        )
        rcs = self.p("rcs")
        rcs_chat = self.one_to_one[rcs.handles[0]]
        self.send(
            rcs_chat,
            "Hola! this came over RCS" if self.modern else "Hola!",
            from_me=False,
            sender=rcs.handles[0],
            date=t + 5 * MIN,
        )
        self.send(rcs_chat, "nice", from_me=True, date=t + 6 * MIN)
        if self.modern:
            any_chat, any_h = self.chat_of("any")
            self.send(any_chat, "مرحبا! new Mac", from_me=False, sender=any_h, date=t + 7 * MIN)
        org = self.p("org")
        self.send(
            self.one_to_one[org.handles[0]],
            "Reminder: cleaning appt Tue 3pm. Reply C to confirm",
            from_me=False,
            sender=org.handles[0],
            date=t + 8 * MIN,
        )
        for i, role in enumerate(("mobile", "shortcode", "email")):
            h = self.unknown[role].handles[0]
            texts = {
                "mobile": "Hi, is this Sam? Got your number from Jo",
                "shortcode": "Your code is 482913. Don't share it.",
                "email": "Your order has shipped!",
            }
            self.send(
                self.one_to_one[h],
                texts[role],
                from_me=False,
                sender=h,
                date=t + (9 + i) * MIN,
                read_delay=None,
            )
        solo = self.p("solo")
        self.send(
            self.one_to_one[solo.handles[0]],
            "Good evening from Lagos",
            from_me=False,
            sender=solo.handles[0],
            date=t + 12 * MIN,
        )
        case = self.p("case")
        self.send(
            self.one_to_one[case.handles[1]],
            "email me the slides",
            from_me=False,
            sender=case.handles[1],
            date=t + 13 * MIN,
        )
        dup = self.p("dup")
        self.send(
            self.one_to_one[dup.handles[0]],
            "Servus!",
            from_me=False,
            sender=dup.handles[0],
            date=t + 14 * MIN,
        )

    def sc_orphans(self, t: int) -> Iterator[int]:
        h = self.p("twin_a").handles[0]
        yield t
        self.send(None, "message with no chat", from_me=False, sender=h, date=t)
        self.send(None, "my orphan reply", from_me=True, date=t + MIN, handle_id=h)

    def sc_effects(self, t: int) -> Iterator[int]:
        chat, h = self.chat_of("twin_b")
        yield t
        self.send(
            chat,
            "HAPPY BIRTHDAY!!!",
            from_me=True,
            date=t,
            effect="com.apple.messages.effect.CKHappyBirthdayEffect",
        )
        self.send(
            chat,
            "secret 🤫",
            from_me=False,
            sender=h,
            date=t + MIN,
            effect="com.apple.MobileSMS.expressivesend.invisibleink",
        )
        self.send(
            chat,
            "BOOM",
            from_me=True,
            date=t + 2 * MIN,
            effect="com.apple.MobileSMS.expressivesend.impact",
        )

    def sc_corrupt(self, t: int) -> Iterator[int]:
        chat, h = self.chat_of("dup")
        yield t
        attributed_only = "attributed" if self.profile != "legacy" else "both"
        self.send(
            chat,
            "this blob is damaged beyond repair",
            from_me=False,
            sender=h,
            date=t,
            body=attributed_only,
            corrupt=True,
        )
        self.send(
            chat,
            "damaged blob but the text column survives",
            from_me=False,
            sender=h,
            date=t + MIN,
            body="both",
            corrupt=True,
        )

    def sc_gaps(self, t: int) -> Iterator[int]:
        chat, h = self.gap_chat, self.p("gap").handles[0]
        step = SEC if not self.w.profile.ns_dates else 1
        yield t
        self.send(chat, "free for a call later?", from_me=False, sender=h, date=t)
        t2 = t + 2 * MIN
        self.send(chat, "after 5", from_me=True, date=t2)
        t3 = t2 + GAP_90  # exactly 90 minutes: still the same conversation
        yield t3
        self.send(chat, "ok calling now", from_me=False, sender=h, date=t3)
        t4 = t3 + GAP_90 + step  # 90 min + 1 ns (1 s on seconds profiles): a new one
        yield t4
        self.send(chat, "thanks for the chat!", from_me=True, date=t4)
        t5 = t4 + 3 * DAY
        yield t5
        self.send(chat, "coffee next week?", from_me=False, sender=h, date=t5)
        self.send(chat, "yes!", from_me=True, date=t5 + 20 * SEC)

    def sc_misc(self, t: int) -> Iterator[int]:
        chat, h = self.chat_of("twin_a")
        yield t
        # A sent message typed on another device: handle_id 0 even in a 1:1 chat (§3).
        self.send(chat, "sent from my iPad", from_me=True, date=t, handle_id=0)
        self.send(
            chat,
            "with a subject line",
            from_me=False,
            sender=h,
            date=t + MIN,
            subject="Re: Saturday",
        )

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
            scenario = self.scenarios()
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
                    p.first, p.last, phones=[_us_formats(p.phone)[0]] if p.phone else []
                )
                sources[source_ids[p.source]].append(first_card)
                sources[source_ids[p.also_source]].append(card)
            else:
                sources[source_ids[p.source]].append(card)
        write_macos_tree(root, sources, top_level=[], rng=rng)


def _visible(text: str) -> str:
    """Apple's text as the truth states it: without attachment/balloon placeholders."""
    return text.replace("\ufffc", "").replace("\ufffd", "")


def rng_words(rng: random.Random) -> str:
    return " " + rng.choice(_EN_LINES)


def uuid_from(rng: random.Random) -> str:
    return guid_from_bits(rng.getrandbits(128))


@functools.lru_cache(maxsize=64)
def _url_payload(url: str, title: str) -> bytes:
    """An NSKeyedArchiver plist shaped like a rich-link balloon's payload_data [I]."""
    uid = plistlib.UID
    objects = [
        "$null",
        {"$class": uid(7), "richLinkMetadata": uid(2)},
        {"$class": uid(6), "URL": uid(3), "originalURL": uid(3), "title": uid(5)},
        {"$class": uid(8), "NS.base": uid(0), "NS.relative": uid(4)},
        url,
        title,
        {"$classname": "LPLinkMetadata", "$classes": ["LPLinkMetadata", "NSObject"]},
        {"$classname": "RichLink", "$classes": ["RichLink", "NSObject"]},
        {"$classname": "NSURL", "$classes": ["NSURL", "NSObject"]},
    ]
    archive = {
        "$version": 100000,
        "$archiver": "NSKeyedArchiver",
        "$top": {"root": uid(1)},
        "$objects": objects,
    }
    return plistlib.dumps(archive, fmt=plistlib.FMT_BINARY)


# Rows the scenarios write per profile (tapback rows included, the deleted one excluded);
# the filler fills the rest so `messages` is exact. A test pins these numbers.
SCENARIO_ROWS = {"sequoia": 131, "sonoma": 124, "legacy": 112}


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
    builder = _Builder(root, messages, seed, profile, truth)
    result = builder.run()
    if addressbook:
        builder.addressbook(ab_root)
    if truth:
        dump_truth(result, root / "truth.json")
    return result
