"""The sample library is the fixture every other test trusts, so it is checked two ways:
each quirk of Apple's data is proven present by querying chat.db directly, and the truth is
proven consistent with the file by an independent minimal reader written here."""

from __future__ import annotations

import itertools
import plistlib
import re
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest

from chatstats.imessage import chatdb
from chatstats.imessage.dates import apple_to_unix_ns
from chatstats.imessage.identifiers import normalize
from chatstats.imessage.typedstream import TypedStreamError, extract_text
from chatstats.sample import chatdb_schema
from chatstats.sample.generate import make_library
from chatstats.sample.truth import Truth, load_truth
from chatstats.sample.writer import AttachmentSpec, MessagesWriter

PROFILES = chatdb_schema.PROFILES
N = 600
# What Messages writes before the backing string's length (shared/reference/typedstream.md §5).
_MUTABLE = (
    b"\x04\x0bstreamtyped\x81\xe8\x03\x84\x01@\x84\x84\x84\x19NSMutableAttributedString\x00"
    b"\x84\x84\x12NSAttributedString\x00\x84\x84\x08NSObject\x00\x85\x92\x84\x84\x84\x0f"
    b"NSMutableString\x01\x84\x84\x08NSString\x01\x95\x84\x01+"
)
_PLAIN = (
    b"\x04\x0bstreamtyped\x81\xe8\x03\x84\x01@\x84\x84\x84\x12NSAttributedString\x00"
    b"\x84\x84\x08NSObject\x00\x85\x92\x84\x84\x84\x08NSString\x01\x94\x84\x01+"
)


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Truth]]:
    out = {}
    for profile in PROFILES:
        root = tmp_path_factory.mktemp(f"lib-{profile}")
        truth = make_library(root, messages=N, seed=7, profile=profile)
        out[profile] = (root, truth)
    return out


def ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def scalar(conn: sqlite3.Connection, sql: str, *args: object) -> int:
    return conn.execute(sql, args).fetchone()[0]


# ----------------------------------------------------------------------------- schema


@pytest.mark.parametrize("profile", PROFILES)
def test_schema_profiles_create_cleanly(profile: str) -> None:
    conn = sqlite3.connect(":memory:")
    chatdb_schema.create_schema(conn, profile)
    cols = {r[1] for r in conn.execute("PRAGMA table_info(message)")}
    assert {"guid", "text", "attributedBody", "associated_message_guid"} <= cols
    if profile == "sequoia":
        assert "associated_message_emoji" in cols and "date_recovered" in cols
    if profile == "sonoma":
        assert "date_edited" in cols and "associated_message_emoji" not in cols
    if profile == "legacy":
        assert cols.issuperset({"ck_record_id", "destination_caller_id"})
        assert "thread_originator_guid" not in cols and "reply_to_guid" not in cols
        assert "date_edited" not in cols and "part_count" not in cols
        handle = {r[1] for r in conn.execute("PRAGMA table_info(handle)")}
        assert "person_centric_id" not in handle


def test_sequoia_schema_is_the_reference_text() -> None:
    # Spot-check the verbatim copy (the whole text is compared against the reference when
    # ../shared is available).
    ref = Path(__file__).resolve().parents[2] / "shared" / "reference" / "chatdb_schema.sql"
    if not ref.exists():
        pytest.skip("reference not available")
    text = ref.read_text()
    for stmt in (*chatdb_schema.TABLES, *chatdb_schema.INDEXES, *chatdb_schema.TRIGGERS):
        assert stmt in text
    for stmt in chatdb_schema.SONOMA_TABLES.values():
        assert f"-- {stmt}" in text


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize("profile", PROFILES)
def test_chat_db_is_a_real_wal_database(libs, profile: str) -> None:
    root, truth = libs[profile]
    db = root / "chat.db"
    assert db.read_bytes()[:16] == b"SQLite format 3\x00"
    assert (root / "chat.db-wal").stat().st_size > 0
    conn = ro(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    expected = {chatdb_schema._name(t) for t in chatdb_schema.profile(profile).tables}
    assert tables == expected | {"sqlite_sequence", "sqlite_stat1"}
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert triggers == {chatdb_schema._name(t) for t in chatdb_schema.profile(profile).triggers}
    rows = scalar(conn, "SELECT COUNT(*) FROM message")
    assert rows == N == truth.counts["message_rows"]
    # The newest rows live only in the WAL: immutable=1 (which ignores it) misses them.
    frozen = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    assert scalar(frozen, "SELECT COUNT(*) FROM message") == rows - truth.counts["wal_rows"]
    frozen.close()
    conn.close()
    assert (root / "truth.json").exists()
    sources = sorted((root / "AddressBook" / "Sources").iterdir())
    assert len(sources) >= 2
    assert all((s / "AddressBook-v22.abcddb").exists() for s in sources)


@pytest.mark.parametrize("profile", PROFILES)
def test_triggers_filled_the_caches(libs, profile: str) -> None:
    conn = ro(libs[profile][0] / "chat.db")
    bad_rooms = scalar(
        conn,
        """SELECT COUNT(*) FROM message m JOIN chat_message_join j ON j.message_id = m.ROWID
           JOIN chat c ON c.ROWID = j.chat_id
           WHERE m.cache_roomnames IS NOT c.room_name""",
    )
    assert bad_rooms == 0
    assert scalar(conn, "SELECT COUNT(*) FROM message WHERE cache_roomnames LIKE 'chat%'") > 0
    with_att = scalar(
        conn,
        "SELECT COUNT(*) FROM message WHERE ROWID IN (SELECT message_id FROM message_attachment_join)"
        " AND cache_has_attachments = 1",
    )
    assert with_att == scalar(
        conn, "SELECT COUNT(DISTINCT message_id) FROM message_attachment_join"
    )
    assert scalar(conn, "SELECT COUNT(*) FROM message WHERE cache_has_attachments = 1") == with_att
    # The replaced tapback's row was removed through the delete triggers.
    assert scalar(conn, "SELECT COUNT(*) FROM deleted_messages") == 1
    assert scalar(conn, "SELECT COUNT(*) FROM sync_deleted_messages") == 1


# ----------------------------------------------------------------------------- quirks


def _q(conn: sqlite3.Connection, where: str, table: str = "message") -> int:
    return scalar(conn, f"SELECT COUNT(*) FROM {table} WHERE {where}")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_quirk_is_present(libs, profile: str) -> None:
    conn = ro(libs[profile][0] / "chat.db")
    cols = {r[1] for r in conn.execute("PRAGMA table_info(message)")}
    modern = profile != "legacy"
    plain = "associated_message_type = 0 AND item_type = 0"
    # Bodies.
    assert _q(conn, "text IS NOT NULL AND attributedBody IS NULL") > 0
    assert _q(conn, "text IS NOT NULL AND attributedBody IS NOT NULL") > 0
    assert _q(conn, f"text IS NULL AND attributedBody IS NULL AND {plain}") > 0
    attributed_only = _q(conn, f"text IS NULL AND attributedBody IS NOT NULL AND {plain}")
    if profile == "sequoia":
        assert attributed_only > _q(conn, plain) / 2  # most rows on Ventura+ Macs
    elif profile == "sonoma":
        assert attributed_only > 0
    texts = [r[0] for r in conn.execute("SELECT text FROM message WHERE text IS NOT NULL")]
    bodies = [
        r[0]
        for r in conn.execute("SELECT attributedBody FROM message WHERE attributedBody IS NOT NULL")
    ]
    decoded = []
    corrupt = 0
    for blob in bodies:
        try:
            decoded.append(extract_text(blob))
        except TypedStreamError:
            corrupt += 1
    assert corrupt >= (2 if modern else 1)
    # Bodies whose string length prefix runs past the text (the shape some Messages.app
    # blobs have) are present, and decode to their text: the declared length, read here
    # from the fixed prefix, is longer than the text's UTF-8.
    overruns: list[bool] = []  # per overrunning blob: does the length run past the blob?
    for blob in bodies:
        prefix = next((x for x in (_MUTABLE, _PLAIN) if blob.startswith(x)), None)
        if prefix is None:
            continue
        p = len(prefix)
        head = blob[p]
        declared = (
            head
            if head < 0x80
            else int.from_bytes(blob[p + 1 : p + (3 if head == 0x81 else 5)], "little")
        )
        try:
            text = extract_text(blob)
        except TypedStreamError:
            continue
        start = p + (1 if head < 0x80 else 3 if head == 0x81 else 5)
        if declared > len(text.encode()):
            assert blob[start:].startswith(text.encode() + b"\x86")
            overruns.append(start + declared > len(blob))
    assert len(overruns) >= 4 and set(overruns) == {True, False}
    everything = texts + decoded
    lengths = {len(t.encode()) for t in everything}
    assert {127, 128, 129, 255, 256, 300} <= lengths
    assert max(lengths) >= 70000
    joined = "\n".join(everything)
    for needle in ("Ȅ", "Ɔ", "ↄ", "\x01+", "\ufffc", "👨‍👩‍👧‍👦", "שלום", "漢字", "Привет", "नमस्ते"):
        assert needle in joined, needle
    assert any(
        t.startswith("\ufffc\ufffc\ufffc") and len(t) > 3 for t in everything
    )  # 3 images + text
    # Tapbacks.
    kinds = {r[0] for r in conn.execute("SELECT DISTINCT associated_message_type FROM message")}
    expected = set(range(2000, 2006)) | set(range(3000, 3006))
    if "associated_message_emoji" in cols:
        expected |= {2006, 2007, 3006, 3007}
        assert (
            _q(conn, "associated_message_type = 2006 AND associated_message_emoji IS NOT NULL") > 0
        )
    assert expected <= kinds
    assert (
        _q(
            conn,
            "associated_message_guid LIKE 'p:_/%' AND associated_message_guid NOT LIKE 'p:0/%'",
        )
        > 0
    )
    assert _q(conn, "associated_message_guid LIKE 'bp:%'") > 0
    assert (
        _q(conn, "associated_message_type >= 2000 AND associated_message_guid NOT LIKE '%:%'") > 0
    )
    assert _q(conn, "associated_message_type >= 2000 AND is_from_me = 1") > 0
    assert _q(conn, "associated_message_type = 0 AND text LIKE 'Liked “%'") > 0  # SMS text reaction
    # Replies, edits, unsends.
    if "thread_originator_guid" in cols:
        assert (
            _q(conn, "thread_originator_guid IS NOT NULL AND thread_originator_part LIKE '_:0:%'")
            > 0
        )
        assert _q(conn, "thread_originator_part LIKE '1:%'") > 0
    if "date_edited" in cols:
        infos = [
            plistlib.loads(r[0])
            for r in conn.execute(
                "SELECT message_summary_info FROM message WHERE message_summary_info IS NOT NULL"
            )
        ]
        history = [len(v) for i in infos for v in i.get("ec", {}).values()]
        assert {2, 3, 4} <= set(history)
        assert any(i.get("ep") for i in infos) and any(i.get("rp") for i in infos)
        assert (
            _q(conn, "COALESCE(date_retracted, 0) != 0 AND text IS NULL AND attributedBody IS NULL")
            > 0
        )
        if profile == "sequoia":  # macOS 26 Undo Send: no date_retracted
            assert (
                _q(
                    conn,
                    "date_edited != 0 AND COALESCE(date_retracted, 0) = 0 AND attributedBody IS NULL AND item_type = 0",
                )
                > 0
            )
        assert _q(conn, "date_edited != 0 AND text IS NULL AND attributedBody IS NOT NULL") > 0
    # Group events.
    assert _q(conn, "item_type = 1 AND group_action_type = 0 AND other_handle != 0") > 0
    assert _q(conn, "item_type = 1 AND group_action_type = 1 AND other_handle != 0") > 0
    assert _q(conn, "item_type = 2 AND group_title IS NOT NULL") > 0
    assert _q(conn, "item_type = 3 AND group_action_type = 0 AND handle_id != 0") > 0
    assert (
        _q(conn, "item_type = 3 AND group_action_type = 0 AND is_from_me = 1 AND handle_id = 0") > 0
    )
    assert _q(conn, "item_type = 3 AND group_action_type = 1 AND cache_has_attachments = 1") > 0
    # Chats, handles, services.
    assert (
        _q(
            conn,
            "style = 43 AND guid LIKE 'iMessage;+;chat%' AND room_name = chat_identifier",
            "chat",
        )
        > 0
    )
    assert _q(conn, "style = 45 AND guid LIKE 'iMessage;-;%' AND room_name IS NULL", "chat") > 0
    assert _q(conn, "guid LIKE 'SMS;-;%' AND service_name = 'SMS'", "chat") > 0
    assert _q(conn, "service = 'SMS'") > 0
    if profile == "sequoia":
        assert _q(conn, "guid LIKE 'RCS;-;%'", "chat") > 0 and _q(conn, "service = 'RCS'") > 0
        assert _q(conn, "guid LIKE 'any;-;%' AND service_name = 'iMessage'", "chat") > 0
    assert (
        scalar(
            conn,
            "SELECT COUNT(*) FROM (SELECT id FROM handle GROUP BY id HAVING COUNT(DISTINCT service) > 1)",
        )
        > 0
    )
    assert _q(conn, "id LIKE '%@%' AND id != lower(id)", "handle") > 0
    assert _q(conn, "id = '22395'", "handle") > 0  # short code
    # Senders and dates.
    assert _q(conn, "is_from_me = 1 AND handle_id != 0 AND cache_roomnames IS NULL") > 0
    assert (
        _q(
            conn,
            "is_from_me = 1 AND handle_id = 0 AND cache_roomnames IS NULL AND item_type = 0 AND ROWID IN (SELECT message_id FROM chat_message_join)",
        )
        > 0
    )
    assert _q(conn, "is_from_me = 1 AND handle_id = 0 AND cache_roomnames IS NOT NULL") > 0
    assert _q(conn, "ROWID NOT IN (SELECT message_id FROM chat_message_join)") >= 2
    assert _q(conn, "date < 100000000000") > 0  # seconds since 2001
    if modern:
        assert _q(conn, "date > 100000000000") > 0
        assert (
            scalar(conn, "SELECT COUNT(*) FROM chat_message_join WHERE message_date < 100000000000")
            > 0
        )
    assert _q(conn, "expressive_send_style_id IS NOT NULL") > 0
    assert _q(conn, "is_audio_message = 1 AND cache_has_attachments = 1 AND is_played = 1") > 0
    assert (
        _q(
            conn,
            "balloon_bundle_id = 'com.apple.messages.URLBalloonProvider' AND payload_data IS NOT NULL",
        )
        > 0
    )
    assert _q(conn, "subject IS NOT NULL") > 0
    # Attachments.
    assert (
        _q(
            conn,
            "guid LIKE 'at_0_%' AND filename LIKE '~/Library/Messages/Attachments/__/__/%/%'",
            "attachment",
        )
        > 0
    )
    assert _q(conn, "guid LIKE 'at_2_%'", "attachment") > 0
    assert _q(conn, "filename IS NULL", "attachment") > 0
    assert _q(conn, "mime_type IS NULL AND uti = 'com.apple.coreaudio-format'", "attachment") > 0
    assert _q(conn, "created_date BETWEEN 100000000 AND 1000000000", "attachment") == _q(
        conn, "1", "attachment"
    )
    # Exact 90-minute gap and 90 minutes + 1 unit in one chat (located through the truth).
    truth = libs[profile][1]
    gap_chat = next(m.chat_guid for m in truth.messages if m.text == "ok calling now")
    dates = [
        r[0]
        for r in conn.execute(
            "SELECT j.message_date FROM chat_message_join j JOIN chat c ON c.ROWID = j.chat_id"
            " WHERE c.guid = ? ORDER BY j.message_date",
            (gap_chat,),
        )
    ]
    gaps = {b - a for a, b in itertools.pairwise(dates)}
    if modern:
        assert {5_400_000_000_000, 5_400_000_000_001} <= gaps
    else:
        assert {5400, 5401} <= gaps


# ----------------------------------------------------------------------------- truth vs file


def _visible(text: str | None) -> str:
    return (text or "").replace("\ufffc", "").replace("\ufffd", "")


def _read_messages(conn: sqlite3.Connection) -> dict[str, dict]:
    cols = {r[1] for r in conn.execute("PRAGMA table_info(message)")}

    def col(name: str) -> str:
        return f"m.{name}" if name in cols else f"NULL AS {name}"

    sql = f"""
        SELECT m.ROWID, m.guid, m.text, m.attributedBody, m.is_from_me, m.date, m.service,
               m.item_type, m.group_action_type, m.group_title, h.id, oh.id,
               m.associated_message_type, m.associated_message_guid, {col("associated_message_emoji")},
               {col("thread_originator_guid")}, {col("date_edited")}, {col("message_summary_info")},
               (SELECT c.guid FROM chat_message_join j JOIN chat c ON c.ROWID = j.chat_id
                 WHERE j.message_id = m.ROWID)
        FROM message m LEFT JOIN handle h ON h.ROWID = m.handle_id
        LEFT JOIN handle oh ON oh.ROWID = m.other_handle
        ORDER BY m.ROWID"""
    out = {}
    for r in conn.execute(sql):
        (
            rowid,
            guid,
            text,
            blob,
            from_me,
            date,
            service,
            item,
            action,
            title,
            hid,
            other,
            atype,
            aguid,
            emoji,
            thread,
            edited,
            summary,
            chat,
        ) = r
        body, corrupt = None, False
        if blob:
            try:
                body = extract_text(blob)
            except TypedStreamError:
                corrupt = True
        if body is None:
            body = text
        flags = chatdb.summary_flags(summary) if summary else chatdb.SummaryFlags((), ())
        out[guid] = {
            "rowid": rowid,
            "text": _visible(body),
            "body_corrupt": corrupt and text is None,
            "is_from_me": bool(from_me),
            "sender": None if from_me else hid,
            "date_ns": apple_to_unix_ns(date),
            "service": service,
            "kind": chatdb.message_kind(item, action),
            "group_title": title,
            "other": other,
            "atype": atype,
            "aguid": aguid,
            "emoji": emoji,
            "reply_to_guid": chatdb.reply_guid(thread),
            "edited": bool(edited) and bool(flags.edited_parts),
            "unsent": bool(flags.unsent_parts),
            "chat_guid": chat,
        }
    return out


@pytest.mark.parametrize("profile", PROFILES)
def test_truth_matches_the_database(libs, profile: str) -> None:
    root, returned = libs[profile]
    truth = load_truth(root / "truth.json")
    assert truth == returned
    conn = ro(root / "chat.db")
    rows = _read_messages(conn)
    by_guid = {m.guid: m for m in truth.messages}
    assert len(by_guid) == len(truth.messages)
    tapbacks = {g: r for g, r in rows.items() if chatdb.tapback(r["atype"])}
    assert set(by_guid) == set(rows) - set(tapbacks)
    for guid, m in by_guid.items():
        r = rows[guid]
        got = {
            k: r[k]
            for k in (
                "text",
                "body_corrupt",
                "is_from_me",
                "sender",
                "date_ns",
                "service",
                "kind",
                "reply_to_guid",
                "edited",
                "unsent",
                "chat_guid",
            )
        }
        want = {k: getattr(m, k) for k in got}
        assert got == want, guid
        if m.kind == "renamed":
            assert r["group_title"] == m.group_title
        if m.kind in ("participant_added", "participant_removed"):
            assert r["other"] == m.other
    # Attachments in body order.
    att: dict[str, list[tuple]] = defaultdict(list)
    for mguid, aguid, name, mime, size in conn.execute(
        """SELECT m.guid, a.guid, a.transfer_name, a.mime_type, a.total_bytes FROM attachment a
           JOIN message_attachment_join x ON x.attachment_id = a.ROWID
           JOIN message m ON m.ROWID = x.message_id ORDER BY m.ROWID, a.guid"""
    ):
        att[mguid].append((aguid, name, mime, size))
    for m in truth.messages:
        want = [(a.guid, a.transfer_name, a.mime_type, a.total_bytes) for a in m.attachments]
        if m.unsent:
            continue
        assert att.get(m.guid, []) == want, m.guid
    # Reactions: replay adds/removals in ROWID order.
    active: dict[tuple, tuple] = {}
    for guid, r in sorted(tapbacks.items(), key=lambda kv: kv[1]["rowid"]):
        kind, removal = chatdb.tapback(r["atype"])
        target, part = chatdb.tapback_target(r["aguid"])
        key = (target, part, r["sender"])
        if removal:
            if key in active and active[key][1] == kind:
                del active[key]
        else:
            active[key] = (guid, kind, r["emoji"], r["is_from_me"])
    want = {
        (x.target_guid, x.part, x.sender): (x.guid, x.type, x.emoji, x.is_from_me)
        for x in truth.reactions
    }
    assert active == want
    assert truth.counts["reactions"] == len(truth.reactions) > 0
    assert truth.counts["tapback_rows"] == len(tapbacks)
    # Chats.
    members: dict[str, set[str]] = defaultdict(set)
    for guid, ident in conn.execute(
        "SELECT c.guid, h.id FROM chat c JOIN chat_handle_join j ON j.chat_id = c.ROWID JOIN handle h ON h.ROWID = j.handle_id"
    ):
        members[guid].add(ident)
    chats = {c.guid: c for c in truth.chats}
    for guid, style, name, service in conn.execute(
        "SELECT guid, style, display_name, service_name FROM chat"
    ):
        c = chats[guid]
        assert (c.is_group, c.display_name, c.service) == (style == 43, name or None, service)
        assert c.participants == sorted(members[guid])
    counts = truth.counts
    assert counts["messages"] == len(truth.messages)
    assert counts["message_rows"] == len(rows)
    assert counts["orphans"] == sum(1 for m in truth.messages if m.chat_guid is None) >= 2
    assert counts["edited"] == sum(m.edited for m in truth.messages)
    assert counts["unsent"] == sum(m.unsent for m in truth.messages)
    assert counts["body_corrupt"] == sum(m.body_corrupt for m in truth.messages)
    assert counts["system_events"] == sum(m.kind != "message" for m in truth.messages)
    assert counts["handles"] == scalar(conn, "SELECT COUNT(*) FROM handle")
    assert counts["contacts"] == len(truth.contacts)
    assert counts["message_rows"] == counts["messages"] + counts["tapback_rows"]
    assert counts["chats"] == len(truth.chats)
    assert counts["attachments"] == scalar(conn, "SELECT COUNT(*) FROM attachment")


@pytest.mark.parametrize("profile", PROFILES)
def test_truth_covers_the_semantic_quirks(libs, profile: str) -> None:
    truth = libs[profile][1]
    ms = truth.messages
    kinds = {m.kind for m in ms}
    assert {
        "participant_added",
        "participant_removed",
        "renamed",
        "participant_left",
        "photo_changed",
        "photo_removed",
    } <= kinds
    assert any(m.body_corrupt for m in ms) == (profile != "legacy")
    assert any(m.text == "damaged blob but the text column survives" for m in ms)
    assert any(m.text == "" and m.attachments and not m.unsent for m in ms)
    if profile != "legacy":
        assert any(m.reply_to_guid for m in ms)
        assert any(m.edited for m in ms) and any(m.unsent for m in ms)
    types = {r.type for r in truth.reactions}
    assert {"loved", "liked", "disliked", "laughed", "emphasized", "questioned"} <= types
    if profile == "sequoia":
        assert {"emoji", "sticker"} <= types
    assert any(r.is_from_me and r.sender is None for r in truth.reactions)
    assert any(r.part > 0 for r in truth.reactions)
    # Changed tapback: that sender has exactly one reaction on the message, the newer one.
    by_key = defaultdict(list)
    for r in truth.reactions:
        by_key[(r.target_guid, r.part, r.sender)].append(r)
    assert all(len(v) == 1 for v in by_key.values())
    t3 = next(m for m in ms if m.text == "Bring cash, they don't take cards")
    assert [r.type for r in truth.reactions if r.target_guid == t3.guid] == ["loved"]
    t4 = next(m for m in ms if m.text == "Parking is a nightmare there")
    assert not [r for r in truth.reactions if r.target_guid == t4.guid]
    # Dates: the exact 90-minute gap and one unit more.
    gap_chat = next(m.chat_guid for m in ms if m.text == "ok calling now")
    gaps = set(
        b - a
        for a, b in itertools.pairwise(sorted(m.date_ns for m in ms if m.chat_guid == gap_chat))
    )
    assert 90 * 60 * 10**9 in gaps
    assert (90 * 60 * 10**9 + (1 if profile != "legacy" else 10**9)) in gaps


@pytest.mark.parametrize("profile", PROFILES)
def test_contacts_truth_matches_the_addressbook(libs, profile: str) -> None:
    root, truth = libs[profile]
    cards: list[tuple[str | None, set[str]]] = []
    typed_phones: list[str] = []
    typed_emails: list[str] = []
    for store in sorted((root / "AddressBook").rglob("AddressBook-v22.abcddb")):
        conn = ro(store)
        rows = conn.execute(
            "SELECT Z_PK, ZFIRSTNAME, ZLASTNAME, ZORGANIZATION, ZCONTAINERWHERECONTACTISME FROM ZABCDRECORD"
            " WHERE ZFIRSTNAME IS NOT NULL OR ZLASTNAME IS NOT NULL OR ZORGANIZATION IS NOT NULL"
        ).fetchall()
        for pk, first, last, org, is_me in rows:
            if is_me:
                continue
            ids = {
                normalize(v)
                for (v,) in conn.execute(
                    "SELECT ZFULLNUMBER FROM ZABCDPHONENUMBER WHERE ZOWNER = ?", (pk,)
                )
            }
            ids |= {
                normalize(v)
                for (v,) in conn.execute(
                    "SELECT ZADDRESS FROM ZABCDEMAILADDRESS WHERE ZOWNER = ?", (pk,)
                )
            }
            typed_phones += [
                v
                for (v,) in conn.execute(
                    "SELECT ZFULLNUMBER FROM ZABCDPHONENUMBER WHERE ZOWNER = ?", (pk,)
                )
            ]
            typed_emails += [
                v
                for (v,) in conn.execute(
                    "SELECT ZADDRESS FROM ZABCDEMAILADDRESS WHERE ZOWNER = ?", (pk,)
                )
            ]
            name = " ".join(x for x in (first, last) if x) or org
            cards.append((name, {i for i in ids if i}))
        conn.close()
    assert len({str(s) for s in (root / "AddressBook" / "Sources").iterdir()}) >= 2
    chat = ro(root / "chat.db")
    handle_ids = {r[0] for r in chat.execute("SELECT id FROM handle")}
    named = [c for c in truth.contacts if c.name]
    # Every handle id belongs to exactly one truth contact.
    seen = [i for c in truth.contacts for i in c.identifiers]
    assert sorted(seen) == sorted(handle_ids)
    for contact in named:
        # Each identifier of a named contact is on a card with that name (after normalising).
        for ident in contact.identifiers:
            assert any(name == contact.name and normalize(ident) in ids for name, ids in cards), (
                ident
            )
    # The same person on two Sources, and two different people sharing a name.
    assert sum(1 for name, _ in cards if name == "Tobias Hartmann") == 2
    assert sum(1 for c in named if c.name == "Tobias Hartmann") == 1
    assert sum(1 for c in named if c.name == "Chris Lee") == 2
    assert any(c.name is None for c in truth.contacts)
    assert any(len(c.identifiers) >= 2 and any("@" in i for i in c.identifiers) for c in named)
    assert any(c.name == "Blue Bottle Dental" for c in named)
    # Phones are typed in many formats in Contacts but stored E.164 in chat.db; e-mail case
    # differs between the two in both directions.
    shapes = {re.sub(r"\d", "9", raw) for raw in typed_phones}
    assert len(shapes) >= 5 and any(not raw.startswith("+") for raw in typed_phones)
    assert any(raw != raw.lower() for raw in typed_emails)
    assert any("@" in h and h != h.lower() for h in handle_ids)


# ----------------------------------------------------------------------------- determinism


def _dump(path: Path) -> list[str]:
    conn = ro(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_deterministic_for_a_seed(tmp_path: Path, libs) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    make_library(a, messages=N, seed=7, profile="sequoia")
    make_library(b, messages=N, seed=7, profile="sequoia")
    make_library(c, messages=N, seed=8, profile="sequoia", addressbook=False)
    assert (a / "truth.json").read_bytes() == (b / "truth.json").read_bytes()
    assert (a / "truth.json").read_bytes() == (libs["sequoia"][0] / "truth.json").read_bytes()
    assert _dump(a / "chat.db") == _dump(b / "chat.db")
    for store in (a / "AddressBook").rglob("*.abcddb"):
        assert _dump(store) == _dump(b / store.relative_to(a))
    assert (a / "truth.json").read_bytes() != (c / "truth.json").read_bytes()
    assert not (c / "AddressBook").exists()


@pytest.mark.parametrize("profile", PROFILES)
def test_scenario_rows_are_what_the_budget_assumes(
    tmp_path: Path, profile: str, monkeypatch
) -> None:
    """The filler budget subtracts SCENARIO_ROWS; a scenario that writes more rows than that
    would overshoot `messages`, one that writes fewer wastes the top-up. Filler rows are
    counted as they are written; the rest, less the live tail, are the scenarios'."""
    from chatstats.sample.generate.builder import Builder
    from chatstats.sample.generate.scenarios import SCENARIO_ROWS

    filler = 0
    real = Builder.filler_row

    def counted(self, *args, **kwargs):
        nonlocal filler
        before = self.rows
        out = real(self, *args, **kwargs)
        filler += self.rows - before
        return out

    monkeypatch.setattr(Builder, "filler_row", counted)
    tail = 0
    real_tail = Builder.tail

    def counted_tail(self, *args, **kwargs):
        nonlocal tail
        before = self.rows
        out = real_tail(self, *args, **kwargs)
        tail += self.rows - before
        return out

    monkeypatch.setattr(Builder, "tail", counted_tail)
    truth = make_library(tmp_path, messages=400, seed=3, profile=profile, addressbook=False)
    assert truth.counts["message_rows"] == 400
    assert 400 - filler - tail == SCENARIO_ROWS[profile]


def test_truth_can_be_skipped(tmp_path: Path) -> None:
    truth = make_library(tmp_path, messages=400, seed=1, truth=False, addressbook=False)
    assert truth.messages == [] and truth.reactions == [] and truth.counts["message_rows"] == 400
    assert truth.counts["system_events"] > 0 and truth.counts["reactions"] > 0
    assert not (tmp_path / "truth.json").exists()


# ----------------------------------------------------------------------------- live writer


def test_live_writer_commits_each_step(tmp_path: Path, libs) -> None:
    import shutil

    src = libs["sequoia"][0]
    for name in ("chat.db", "chat.db-wal"):
        shutil.copy(src / name, tmp_path / name)
    reader = ro(tmp_path / "chat.db")
    reader.execute("PRAGMA query_only=1")
    w = MessagesWriter(tmp_path / "chat.db", "sequoia", create=False, seed=3)
    h = w.handle("+14155559876")
    chat = w.chat([h])
    t = 1_760_000_000 * 10**9
    before = scalar(reader, "SELECT MAX(ROWID) FROM message")
    rowid, guid = w.message(chat, "live hello", from_me=True, date=t, sent=False)
    assert rowid > before
    row = reader.execute(
        "SELECT is_sent, is_delivered, handle_id FROM message WHERE guid = ?", (guid,)
    ).fetchone()
    assert row == (0, 0, h)
    assert scalar(reader, "SELECT cache_roomnames IS NULL FROM message WHERE ROWID = ?", rowid) == 1
    w.mark_sent(rowid)
    w.deliver(rowid, t + 10**9)
    w.read(rowid, t + 5 * 10**9)
    row = reader.execute(
        "SELECT is_sent, is_delivered, date_delivered, is_read, date_read FROM message WHERE ROWID = ?",
        (rowid,),
    ).fetchone()
    assert row == (1, 1, t + 10**9 - 978307200 * 10**9, 1, t + 5 * 10**9 - 978307200 * 10**9)
    w.edit(rowid, "live hello (edited)", t + 60 * 10**9)
    blob, info = reader.execute(
        "SELECT attributedBody, message_summary_info FROM message WHERE ROWID = ?", (rowid,)
    ).fetchone()
    assert extract_text(blob) == "live hello (edited)"
    plist = plistlib.loads(info)
    assert plist["ep"] == [0] and len(plist["ec"]["0"]) == 2
    # A row written before this writer existed: the old text is decoded from the blob.
    old = reader.execute(
        "SELECT ROWID FROM message WHERE text IS NULL AND attributedBody IS NOT NULL AND item_type = 0"
        " AND associated_message_type = 0 AND date_edited = 0 AND cache_has_attachments = 0 ORDER BY ROWID DESC LIMIT 1"
    ).fetchone()[0]
    w.edit(old, "rewritten", t + 70 * 10**9)
    assert (
        extract_text(
            reader.execute("SELECT attributedBody FROM message WHERE ROWID = ?", (old,)).fetchone()[
                0
            ]
        )
        == "rewritten"
    )
    w.unsend(rowid, t + 90 * 10**9)
    row = reader.execute(
        "SELECT text, attributedBody, date_retracted != 0 FROM message WHERE ROWID = ?", (rowid,)
    ).fetchone()
    assert row == (None, None, 1)
    grp = w.chat([h, w.handle("+14155559877")], display_name="Live group")
    _, g = w.message(
        grp,
        None,
        from_me=False,
        sender=h,
        date=t,
        attachments=[AttachmentSpec("a.jpeg", "image/jpeg", "public.jpeg", 10)],
    )
    assert reader.execute(
        "SELECT cache_roomnames LIKE 'chat%', cache_has_attachments FROM message WHERE guid = ?",
        (g,),
    ).fetchone() == (1, 1)
    w.close()
    reader.close()


@pytest.mark.parametrize("profile", PROFILES)
def test_no_row_predates_its_feature(libs, profile: str) -> None:
    from chatstats.sample.generate.profiles import IOS10, IOS14, IOS18

    truth = libs[profile][1]
    conn = ro(libs[profile][0] / "chat.db")
    cols = {r[1] for r in conn.execute("PRAGMA table_info(message)")}

    def earliest(where: str) -> int | None:
        dates = [
            apple_to_unix_ns(r[0]) for r in conn.execute(f"SELECT date FROM message WHERE {where}")
        ]
        return min(dates) if dates else None

    assert earliest("associated_message_type >= 2000") >= IOS10
    assert earliest("expressive_send_style_id IS NOT NULL") >= IOS10
    if "thread_originator_guid" in cols:
        assert earliest("thread_originator_guid IS NOT NULL") >= IOS14
    if "associated_message_emoji" in cols:
        assert earliest("associated_message_type IN (2006, 2007, 3006, 3007)") >= IOS18
    rcs = earliest("service = 'RCS'")
    assert rcs is None or rcs >= IOS18
    years = {m.date_ns // (365 * 86400 * 10**9) for m in truth.messages}
    assert len(years) >= 3  # a multi-year span


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("participant_added", "handle"),
        ("participant_removed", "handle"),
        ("renamed", "title"),
        ("photo_changed", "photo"),
    ],
)
def test_system_event_without_its_keyword_is_refused(tmp_path: Path, kind: str, key: str) -> None:
    from chatstats.sample.generate.builder import Builder

    builder = Builder(tmp_path, messages=50, seed=1, profile="sequoia", with_truth=True)
    chat = builder.w.chat([builder.w.handle("+15555550100")], display_name="Group")
    with pytest.raises(ValueError, match=f"{kind} event needs {key}="):
        builder.event(kind, chat, sender=None, date=0)
    assert builder.rows == 0
