"""The words, names, numbers and media the generator draws from.

Kept apart from the builder so the correspondent (chatstats.sample.correspondent) and the
scenarios share one corpus and the same seed keeps giving the same text.
"""

from __future__ import annotations

import functools
import plistlib
import random

from chatstats.sample.writer import guid_from_bits

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
EN_LINES = _lines(
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
LANG_LINES = {
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


def build_pools(rng: random.Random, size: int) -> dict[str, list[str]]:
    seen: set[str] = set()
    en: list[str] = []
    attempts = 0
    while len(en) < size and attempts < size * 20:
        attempts += 1
        line = rng.choice(EN_LINES)
        opener = rng.choice(_EN_OPENERS)
        closer = rng.choice(_EN_CLOSERS)
        if rng.random() < 0.25:
            line = f"{line}. {rng.choice(EN_LINES)}"
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
        sentences = [rng.choice(EN_LINES).capitalize() + "." for _ in range(n)]
        if rng.random() < 0.5:
            sentences.insert(n // 2, "\n\n")
        en.append(" ".join(sentences).replace(" \n\n ", "\n\n"))
    en.extend(EMOJI)  # emoji-only messages
    pools = {"en": en}
    for lang, lines in LANG_LINES.items():
        pool = list(lines)
        pool += [f"{line} {e}" for line in lines for e in rng.sample(EMOJI, 2)]
        pools[lang] = pool
    return pools


def exact_utf8(seed_text: str, n: int, filler: str = " ok") -> str:
    """A text of exactly `n` UTF-8 bytes (multi-byte characters kept whole)."""
    out = seed_text
    while len(out.encode()) < n:
        out += filler
    raw = out.encode()[:n]
    text = raw.decode("utf-8", errors="ignore")
    while len(text.encode()) < n:
        text += "."
    return text


def visible(text: str) -> str:
    """Apple's text as the truth states it: without attachment/balloon placeholders."""
    return text.replace("\ufffc", "").replace("\ufffd", "")


def rng_words(rng: random.Random) -> str:
    return " " + rng.choice(EN_LINES)


def uuid_from(rng: random.Random) -> str:
    return guid_from_bits(rng.getrandbits(128))


@functools.lru_cache(maxsize=64)
def url_payload(url: str, title: str) -> bytes:
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
