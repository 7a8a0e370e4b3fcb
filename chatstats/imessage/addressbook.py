"""Read people (names + phone numbers/e-mails) from Apple's Contacts databases.

Two formats, told apart by their tables: the macOS Core Data store ``AddressBook-v22.abcddb``
(``ZABCDRECORD`` …; one per account under ``Sources/<id>/`` plus a top-level one) and the iOS
``AddressBook.sqlitedb`` found in iPhone backups (``ABPerson`` + ``ABMultiValue``).  See
``shared/reference/addressbook.md``.

Contacts may be writing while we read, so stores are opened read-only through SQLite's normal
locking (``mode=ro``, never ``immutable=1``, which would ignore rows still in the WAL), read
inside one short transaction for a consistent snapshot, and closed at once.  Schemas vary by OS
version, so every optional table and column is probed first and simply skipped when absent.

Nothing here logs: names and numbers are personal data, and callers decide what to report from
the :class:`AddressBookError` values they get back.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

import msgspec

from chatstats.imessage.chatdb import LENIENT_TEXT
from chatstats.imessage.identifiers import match_keys, normalize

__all__ = [
    "MACOS_STORE_NAME",
    "ABPerson",
    "AddressBookError",
    "find_macos_stores",
    "read_people",
    "read_store",
]

MACOS_STORE_NAME = "AddressBook-v22.abcddb"
BUSY_TIMEOUT_MS = 5_000
_SQLITE_MAGIC = b"SQLite format 3\x00"
_IOS_PHONE, _IOS_EMAIL = 3, 4


class AddressBookError(Exception):
    """A store that could not be read; ``reason`` is safe to show (no names or numbers)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class ABPerson(msgspec.Struct, frozen=True):
    """One person as the importer sees them: a display name and the addresses that reach them.

    ``key`` is ``"<mac|ios>:<store id>:<record id>"``: the store id is the store's own UUID
    (Core Data ``Z_METADATA.Z_UUID`` / iOS local ``ABStore.guid``) so it survives moving the
    file, and the record id is ``ZUNIQUEID`` / ``ABPerson.guid`` (``ROWID`` on old iOS).  Keys
    are unique within one :func:`read_people` result.  ``aliases`` lists the keys of the cards
    that were merged into this one, so a caller that stored an older key can still find it.
    """

    key: str
    name: str | None
    identifiers: tuple[str, ...]
    is_me: bool = False
    aliases: tuple[str, ...] = ()


class _Card(msgspec.Struct):
    record_id: str
    name: str | None
    identifiers: list[str]
    is_me: bool


# --------------------------------------------------------------------------------------------
# locating stores


def find_macos_stores(root: Path) -> list[Path]:
    """The Contacts stores under ``~/Library/Application Support/AddressBook`` (or ``[root]``).

    Order: the top-level store, then ``Sources/*`` sorted by folder name.  Pointing at the
    ``Sources`` folder itself also works.  A missing ``root`` gives ``[]``; a folder macOS will
    not let us list (no Full Disk Access) raises :class:`AddressBookError` rather than looking
    empty, so the user learns what to fix.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    try:
        found: list[Path] = []
        top = root / MACOS_STORE_NAME
        if top.is_file():
            found.append(top)
        sources = root if root.name == "Sources" else root / "Sources"
        if sources.is_dir():
            for folder in sorted(sources.iterdir(), key=lambda p: p.name):
                store = folder / MACOS_STORE_NAME
                if store.is_file():
                    found.append(store)
        return found
    except PermissionError as exc:
        raise AddressBookError(
            root, "permission denied listing Contacts (grant Full Disk Access)"
        ) from exc


# --------------------------------------------------------------------------------------------
# reading


def read_store(path: Path, default_country_code: str = "1") -> list[ABPerson]:
    """All people in one store, macOS or iOS; raises :class:`AddressBookError` if unreadable."""
    path = Path(path)
    kind, tag, cards = _read_cards(path, default_country_code)
    return [_person(kind, tag, card) for card in cards]


def read_people(
    paths: Iterable[Path], default_country_code: str = "1"
) -> tuple[list[ABPerson], list[AddressBookError]]:
    """Everyone in all ``paths``, with cards of the same person merged; plus per-store errors.

    A bad store (locked, corrupt, not Contacts) must not cost the user every other store, so its
    error is returned beside the people of the good ones.  Cards merge when they have the same
    name (ignoring case and spacing) *and* share an address (by :func:`match_keys`) — the usual
    result of one person living in an iCloud and an Exchange account, or a duplicated card.
    Name alone would merge namesakes; an address alone would merge family members sharing a
    landline.  Cards without any name merge on a shared address alone: they are shown by that
    address anyway.  The merged person keeps the smallest key (stable whatever the order of
    ``paths``) and lists the others in ``aliases``.
    """
    people: list[ABPerson] = []
    errors: list[AddressBookError] = []
    seen_tags: set[tuple[str, str]] = set()
    for raw in paths:
        path = Path(raw)
        try:
            kind, tag, cards = _read_cards(path, default_country_code)
        except AddressBookError as exc:
            errors.append(exc)
            continue
        if (kind, tag) in seen_tags:  # the same store twice, e.g. two backups of one phone
            tag = f"{tag}~{_path_tag(path)}"
        seen_tags.add((kind, tag))
        people.extend(_person(kind, tag, card) for card in cards)
    return _merge(people, default_country_code), errors


def _person(kind: str, tag: str, card: _Card) -> ABPerson:
    return ABPerson(
        key=f"{kind}:{tag}:{card.record_id}",
        name=card.name,
        identifiers=tuple(card.identifiers),
        is_me=card.is_me,
    )


def _read_cards(path: Path, cc: str) -> tuple[str, str, list[_Card]]:
    with _open(path) as conn:
        try:
            tables = {
                row[0].upper(): row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if "ZABCDRECORD" in tables:
                return "mac", *_read_macos(conn, path, cc)
            if "ABPERSON" in tables:
                return "ios", *_read_ios(conn, path, cc)
        except sqlite3.Error as exc:
            raise AddressBookError(path, _sqlite_reason(exc)) from exc
    raise AddressBookError(path, "not a Contacts database (no ZABCDRECORD or ABPerson table)")


@contextmanager
def _open(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection inside one read transaction, always closed afterwards."""
    try:
        with path.open("rb") as fh:
            header = fh.read(len(_SQLITE_MAGIC))
    except FileNotFoundError as exc:
        raise AddressBookError(path, "file not found") from exc
    except IsADirectoryError as exc:
        raise AddressBookError(path, "is a folder, expected a Contacts database file") from exc
    except PermissionError as exc:
        raise AddressBookError(path, "permission denied (grant Full Disk Access)") from exc
    except OSError as exc:
        raise AddressBookError(path, f"cannot read: {exc.strerror or exc}") from exc
    if not header:
        raise AddressBookError(path, "empty file, not a Contacts database")
    if header != _SQLITE_MAGIC:
        raise AddressBookError(path, "not a SQLite database (corrupt, encrypted or another file)")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise AddressBookError(path, _sqlite_reason(exc)) from exc
    with closing(conn):
        try:
            conn.text_factory = LENIENT_TEXT  # one bad byte in a note must not lose a store
            conn.execute("PRAGMA query_only = 1")
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise AddressBookError(path, _sqlite_reason(exc)) from exc
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")


def _sqlite_reason(exc: sqlite3.Error) -> str:
    message = str(exc)
    lowered = message.lower()
    if "locked" in lowered or "busy" in lowered:
        return "database is locked by another process; try again"
    if "not a database" in lowered:
        return "not a SQLite database (corrupt or encrypted)"
    if "malformed" in lowered or "corrupt" in lowered:
        return "database is corrupt"
    if "unable to open" in lowered or "authorization" in lowered:
        return "cannot open the database (permissions? grant Full Disk Access)"
    return f"SQLite error: {message}"


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """Upper-cased column names of ``table`` (empty when the table does not exist)."""
    return {row[1].upper() for row in conn.execute(f"PRAGMA table_info({table})")}


def _col(columns: set[str], name: str) -> str:
    return name if name in columns else "NULL"


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    return text or None


def _display_name(
    first: object, last: object, nickname: object, organization: object
) -> str | None:
    parts = [p for p in (_text(first), _text(last)) if p]
    if parts:
        return " ".join(parts)
    return _text(nickname) or _text(organization)


def _path_tag(path: Path) -> str:
    return hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]


def _add_identifier(card: _Card, raw: object, cc: str) -> None:
    text = _text(raw)
    value = normalize(text, cc) if text else None
    if value and value not in card.identifiers:
        card.identifiers.append(value)


# macOS -------------------------------------------------------------------------------------


def _contact_entities(conn: sqlite3.Connection) -> set[int] | None:
    """Z_ENT numbers of ABCDContact and its subentities, or None when the model is unknown."""
    cols = _columns(conn, "Z_PRIMARYKEY")
    if not {"Z_ENT", "Z_NAME"} <= cols:
        return None
    rows = conn.execute(
        f"SELECT Z_ENT, Z_NAME, {_col(cols, 'Z_SUPER')} FROM Z_PRIMARYKEY"
    ).fetchall()
    entities = {ent for ent, name, _ in rows if name in ("ABCDContact", "ABCDSubscribedContact")}
    if not entities:
        return None
    grew = True
    while grew:
        children = {ent for ent, _, sup in rows if sup in entities and ent not in entities}
        entities |= children
        grew = bool(children)
    return {int(e) for e in entities}


def _macos_store_tag(conn: sqlite3.Connection, path: Path) -> str:
    if {"Z_UUID"} <= _columns(conn, "Z_METADATA"):
        row = conn.execute("SELECT Z_UUID FROM Z_METADATA WHERE Z_UUID IS NOT NULL").fetchone()
        if row and _text(row[0]):
            return str(_text(row[0]))
    return _path_tag(path)


def _read_macos(conn: sqlite3.Connection, path: Path, cc: str) -> tuple[str, list[_Card]]:
    rec = _columns(conn, "ZABCDRECORD")
    if "Z_PK" not in rec:
        raise AddressBookError(path, "ZABCDRECORD has no Z_PK column; unknown Contacts schema")
    entities = _contact_entities(conn) if "Z_ENT" in rec else None
    params: list[int] = []
    if entities is not None:
        where = f"Z_ENT IN ({', '.join('?' * len(entities))})"
        params = sorted(entities)
    else:
        # Older or partial schema: a contact is a record with a person or company name (groups
        # and containers use ZNAME instead).
        named = [c for c in ("ZFIRSTNAME", "ZLASTNAME", "ZORGANIZATION") if c in rec]
        where = " OR ".join(f"NULLIF(TRIM({c}), '') IS NOT NULL" for c in named) or "0"
    me_pks: set[int] = set()
    if "ZME" in rec:
        # Contacts also marks the me-card from the container side (container.ZME → contact).
        me_pks = {r[0] for r in conn.execute("SELECT ZME FROM ZABCDRECORD WHERE ZME IS NOT NULL")}
    rows = conn.execute(
        f"SELECT Z_PK, {_col(rec, 'ZUNIQUEID')}, {_col(rec, 'ZFIRSTNAME')},"
        f" {_col(rec, 'ZLASTNAME')}, {_col(rec, 'ZNICKNAME')}, {_col(rec, 'ZORGANIZATION')},"
        f" {_col(rec, 'ZCONTAINERWHERECONTACTISME')}"
        f" FROM ZABCDRECORD WHERE {where} ORDER BY Z_PK",
        params,
    ).fetchall()
    cards: dict[int, _Card] = {}
    for pk, unique_id, first, last, nickname, org, me_container in rows:
        cards[pk] = _Card(
            record_id=_text(unique_id) or f"pk{pk}",
            name=_display_name(first, last, nickname, org),
            identifiers=[],
            is_me=me_container is not None or pk in me_pks,
        )
    phone = _columns(conn, "ZABCDPHONENUMBER")
    if {"ZOWNER", "ZFULLNUMBER"} <= phone:
        _attach(conn, cards, "ZABCDPHONENUMBER", "ZFULLNUMBER", phone, cc)
    email = _columns(conn, "ZABCDEMAILADDRESS")
    if "ZOWNER" in email:
        value = [c for c in ("ZADDRESSNORMALIZED", "ZADDRESS") if c in email]
        if value:
            expr = "COALESCE(" + ", ".join(f"NULLIF({c}, '')" for c in value) + ", NULL)"
            _attach(conn, cards, "ZABCDEMAILADDRESS", expr, email, cc)
    return _macos_store_tag(conn, path), list(cards.values())


def _attach(
    conn: sqlite3.Connection,
    cards: dict[int, _Card],
    table: str,
    value_expr: str,
    columns: set[str],
    cc: str,
) -> None:
    order = ", ".join(c for c in ("ZORDERINGINDEX", "Z_PK") if c in columns)
    order_by = f"ZOWNER, {order}" if order else "ZOWNER"
    for owner, value in conn.execute(
        f"SELECT ZOWNER, {value_expr} FROM {table} WHERE ZOWNER IS NOT NULL ORDER BY {order_by}"
    ):
        card = cards.get(owner)
        if card is not None:
            _add_identifier(card, value, cc)


# iOS ---------------------------------------------------------------------------------------


def _ios_store_tag(conn: sqlite3.Connection, path: Path) -> str:
    if {"GUID"} <= _columns(conn, "ABStore"):
        row = conn.execute(
            "SELECT guid FROM ABStore WHERE guid IS NOT NULL ORDER BY ROWID LIMIT 1"
        ).fetchone()
        if row and _text(row[0]):
            return str(_text(row[0]))
    return _path_tag(path)


def _read_ios(conn: sqlite3.Connection, path: Path, cc: str) -> tuple[str, list[_Card]]:
    person = _columns(conn, "ABPerson")
    me_rowids: set[int] = set()
    if "MEIDENTIFIER" in _columns(conn, "ABStore"):
        # [I] ABStore.MeIdentifier (default -1) names the me-card's ROWID in that store.
        me_rowids = {
            r[0]
            for r in conn.execute(
                "SELECT MeIdentifier FROM ABStore WHERE MeIdentifier IS NOT NULL"
                " AND MeIdentifier >= 0"
            )
        }
    rows = conn.execute(
        f"SELECT ROWID, {_col(person, 'GUID')}, {_col(person, 'FIRST')}, {_col(person, 'LAST')},"
        f" {_col(person, 'NICKNAME')}, {_col(person, 'ORGANIZATION')}"
        " FROM ABPerson ORDER BY ROWID"
    ).fetchall()
    cards: dict[int, _Card] = {}
    for rowid, guid, first, last, nickname, org in rows:
        cards[rowid] = _Card(
            record_id=_text(guid) or f"row{rowid}",
            name=_display_name(first, last, nickname, org),
            identifiers=[],
            is_me=rowid in me_rowids,
        )
    multi = _columns(conn, "ABMultiValue")
    if {"RECORD_ID", "PROPERTY", "VALUE"} <= multi:
        order = ", ".join(c for c in ("IDENTIFIER", "UID") if c in multi) or "ROWID"
        values = conn.execute(
            "SELECT record_id, property, value FROM ABMultiValue"
            f" WHERE property IN (?, ?) ORDER BY record_id, property, {order}",
            (_IOS_PHONE, _IOS_EMAIL),
        )
        for record_id, _prop, value in values:
            card = cards.get(record_id)
            if card is not None:
                _add_identifier(card, value, cc)
    return _ios_store_tag(conn, path), list(cards.values())


# merging -----------------------------------------------------------------------------------


def _name_key(name: str | None) -> str | None:
    return " ".join(name.casefold().split()) if name else None


def _merge(people: Sequence[ABPerson], cc: str) -> list[ABPerson]:
    parent = list(range(len(people)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_holder: dict[tuple[str | None, str], int] = {}
    for index, person in enumerate(people):
        name = _name_key(person.name)
        for identifier in person.identifiers:
            for key in match_keys(identifier, cc):
                other = first_holder.setdefault((name, key), index)
                if other != index:
                    a, b = find(other), find(index)
                    if a != b:
                        parent[max(a, b)] = min(a, b)

    groups: dict[int, list[ABPerson]] = {}
    for index, person in enumerate(people):
        groups.setdefault(find(index), []).append(person)

    merged: list[ABPerson] = []
    for members in groups.values():  # dict order = first appearance
        if len(members) == 1:
            merged.append(members[0])
            continue
        primary = min(members, key=lambda p: p.key)
        identifiers: dict[str, None] = {}  # ordered set: primary's addresses first
        for member in [primary, *(m for m in members if m is not primary)]:
            identifiers.update(dict.fromkeys(member.identifiers))
        aliases = sorted({alias for m in members for alias in (m.key, *m.aliases)} - {primary.key})
        merged.append(
            ABPerson(
                key=primary.key,
                name=primary.name,
                identifiers=tuple(identifiers),
                is_me=any(m.is_me for m in members),
                aliases=tuple(aliases),
            )
        )
    return merged
