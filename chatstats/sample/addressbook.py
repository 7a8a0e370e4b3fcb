"""Writers of realistic Contacts stores and iPhone backups, for the sample library and tests.

The readers in :mod:`chatstats.imessage.addressbook` and :mod:`chatstats.imessage.backup` must
work on files Apple wrote, which we cannot ship.  These writers imitate them closely enough that
a reader which handles them also handles the real thing: the macOS schema text is the one
reported for macOS 26 (``shared/reference/addressbook.md`` §1.4), entity numbers come from
``Z_PRIMARYKEY`` rather than from code, values are stored as typed, and backups are laid out by
the SHA-1 file ids Finder uses.  Where a detail is a guess it says so.

Pass ``rng`` (a seeded :class:`random.Random`) for byte-stable ids and dates across runs.
"""

from __future__ import annotations

import hashlib
import os
import plistlib
import random
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from contextlib import closing
from datetime import UTC, datetime
from itertools import cycle
from pathlib import Path

import msgspec

from chatstats.imessage.dates import APPLE_EPOCH_UNIX_S

__all__ = [
    "FixturePerson",
    "backup_file_id",
    "write_backup",
    "write_ios_store",
    "write_macos_store",
    "write_macos_tree",
]

MACOS_STORE_NAME = "AddressBook-v22.abcddb"
_CORE_DATA_EPOCH = APPLE_EPOCH_UNIX_S  # Core Data counts from the same 2001 epoch
_SQLITE_MAGIC = b"SQLite format 3\x00"


class FixturePerson(msgspec.Struct):
    """One contact card as a user would have typed it."""

    first: str | None
    last: str | None
    organization: str | None = None
    nickname: str | None = None
    phones: list[str] = []
    emails: list[str] = []
    unique_id: str = ""
    is_me: bool = False


# Z_PRIMARYKEY of the macOS 26 model as a third-party fixture lists it ([R] in the reference):
# (Z_ENT, Z_NAME, Z_SUPER).  Core Data numbers entities alphabetically, subentities after their
# parent, which these numbers follow.
MACOS_ENTITIES: tuple[tuple[int, str, int], ...] = (
    (1, "ABCDAddressingGrammar", 0),
    (2, "ABCDAlertTone", 0),
    (3, "ABCDCalendarURI", 0),
    (4, "ABCDContactDate", 0),
    (5, "ABCDContactIndex", 0),
    (6, "ABCDCustomProperty", 0),
    (7, "ABCDCustomPropertyValue", 0),
    (8, "ABCDDateComponents", 0),
    (9, "ABCDDeletedRecordLog", 0),
    (10, "ABCDDistributionListConfig", 0),
    (11, "ABCDEmailAddress", 0),
    (12, "ABCDLikeness", 0),
    (13, "ABCDMessagingAddress", 0),
    (14, "ABCDNote", 0),
    (15, "ABCDPhoneNumber", 0),
    (16, "ABCDPostalAddress", 0),
    (17, "ABCDRecord", 0),
    (18, "ABCDAbstractGroup", 17),
    (19, "ABCDGroup", 18),
    (20, "ABCDSubscribedGroup", 19),
    (21, "ABCDSmartGroup", 18),
    (22, "ABCDContact", 17),
    (23, "ABCDSubscribedContact", 22),
    (24, "ABCDInfo", 17),
    (25, "CNCDContainer", 17),
    (26, "ABCDRelatedName", 0),
    (27, "ABCDRemoteLocation", 0),
    (28, "ABCDService", 0),
    (29, "ABCDSocialProfile", 0),
    (30, "ABCDUnknownProperty", 0),
    (31, "ABCDURLAddress", 0),
    (32, "CNCDChangeHistoryClient", 0),
    (33, "CNCDProviderMetadata", 0),
    (34, "CNCDUnifiedContactInfo", 0),
)
_ENT = {name: number for number, name, _ in MACOS_ENTITIES}

# Verbatim from the reference §1.4 (the table texts reported for macOS 26.6.2).
MACOS_SCHEMA = """
CREATE TABLE Z_PRIMARYKEY (Z_ENT INTEGER PRIMARY KEY, Z_NAME VARCHAR, Z_SUPER INTEGER, Z_MAX INTEGER);
CREATE TABLE Z_METADATA (Z_VERSION INTEGER PRIMARY KEY, Z_UUID VARCHAR(255), Z_PLIST BLOB);
CREATE TABLE Z_MODELCACHE (Z_CONTENT BLOB);
CREATE TABLE ZABCDPHONENUMBER (Z_PK INTEGER PRIMARY KEY, Z_ENT INTEGER, Z_OPT INTEGER, ZIOSLEGACYIDENTIFIER INTEGER, ZISPRIMARY INTEGER, ZISPRIVATE INTEGER, ZORDERINGINDEX INTEGER, ZOWNER INTEGER, Z22_OWNER INTEGER, ZAREACODE VARCHAR, ZCOUNTRYCODE VARCHAR, ZEXTENSION VARCHAR, ZFULLNUMBER VARCHAR, ZLABEL VARCHAR, ZLASTFOURDIGITS VARCHAR, ZLOCALNUMBER VARCHAR, ZUNIQUEID VARCHAR );
CREATE TABLE ZABCDEMAILADDRESS (Z_PK INTEGER PRIMARY KEY, Z_ENT INTEGER, Z_OPT INTEGER, ZIOSLEGACYIDENTIFIER INTEGER, ZISPRIMARY INTEGER, ZISPRIVATE INTEGER, ZORDERINGINDEX INTEGER, ZOWNER INTEGER, Z22_OWNER INTEGER, ZADDRESS VARCHAR, ZADDRESSNORMALIZED VARCHAR, ZLABEL VARCHAR, ZUNIQUEID VARCHAR );
CREATE TABLE ZABCDMESSAGINGADDRESS (Z_PK INTEGER PRIMARY KEY, Z_ENT INTEGER, Z_OPT INTEGER, ZIOSLEGACYIDENTIFIER INTEGER, ZISPRIMARY INTEGER, ZISPRIVATE INTEGER, ZORDERINGINDEX INTEGER, ZOWNER INTEGER, Z22_OWNER INTEGER, ZSERVICE INTEGER, ZADDRESS VARCHAR, ZBUNDLEIDENTIFIERSSTRING VARCHAR, ZLABEL VARCHAR, ZTEAMIDENTIFIER VARCHAR, ZUNIQUEID VARCHAR, ZUSERIDENTIFIER VARCHAR );
CREATE TABLE ZABCDNOTE (Z_PK INTEGER PRIMARY KEY, Z_ENT INTEGER, Z_OPT INTEGER, ZCONTACT INTEGER, Z22_CONTACT INTEGER, ZTEXT VARCHAR, ZRICHTEXTDATA BLOB );
CREATE TABLE ZABCDRECORD (Z_PK INTEGER PRIMARY KEY, Z_ENT INTEGER, Z_OPT INTEGER, ZCREATIONDATEYEAR INTEGER, ZDISPLAYFLAGS INTEGER, ZIOSLEGACYIDENTIFIER INTEGER, ZMODIFICATIONDATEYEAR INTEGER, ZSYNCSTATUS INTEGER, ZCONTAINER INTEGER, ZEXTERNALGROUPBEHAVIOR INTEGER, ZBIRTHDAYYEAR INTEGER, ZPREFERREDFORLINKNAME INTEGER, ZPREFERREDFORLINKPHOTO INTEGER, ZPRIVACYFLAGS INTEGER, ZCONTACTINDEX INTEGER, ZCONTAINER1 INTEGER, ZCONTAINERWHERECONTACTISME INTEGER, ZLUNARBIRTHDAYCOMPONENTS INTEGER, ZNOTE INTEGER, ZASSISTANTSYNCANCHOR INTEGER, ZSHARECOUNT INTEGER, ZSYNCCOUNT INTEGER, ZVERSION INTEGER, ZCONTAINER2 INTEGER, ZGUARDIANFLAGS INTEGER, ZISALL INTEGER, ZTYPE INTEGER, ZINFO INTEGER, ZME INTEGER, Z22_ME INTEGER, ZPROVIDERMETADATA INTEGER, ZCREATIONDATE TIMESTAMP, ZCREATIONDATEYEARLESS FLOAT, ZMODIFICATIONDATE TIMESTAMP, ZMODIFICATIONDATEYEARLESS FLOAT, ZBIRTHDAY TIMESTAMP, ZBIRTHDAYYEARLESS FLOAT, ZIMAGESYNCFAILEDTIME TIMESTAMP, ZWALLPAPERSYNCFAILEDTIME TIMESTAMP, ZLASTSYNCDATE TIMESTAMP, ZEXTERNALCOLLECTIONPATH VARCHAR, ZEXTERNALFILENAME VARCHAR, ZEXTERNALHASH VARCHAR, ZEXTERNALIMAGEURI VARCHAR, ZEXTERNALMODIFICATIONTAG VARCHAR, ZEXTERNALURI VARCHAR, ZEXTERNALUUID VARCHAR, ZUNIQUEID VARCHAR, ZNAME VARCHAR, ZNAMENORMALIZED VARCHAR, ZTMPREMOTELOCATION VARCHAR, ZCROPRECT VARCHAR, ZCROPRECTID VARCHAR, ZDEPARTMENT VARCHAR, ZDOWNTIMEWHITELIST VARCHAR, ZFIRSTNAME VARCHAR, ZIDENTITYUNIQUEID VARCHAR, ZIMAGEREFERENCE VARCHAR, ZIMAGETYPE VARCHAR, ZJOBTITLE VARCHAR, ZLASTNAME VARCHAR, ZLINKID VARCHAR, ZMAIDENNAME VARCHAR, ZMIDDLENAME VARCHAR, ZNICKNAME VARCHAR, ZORGANIZATION VARCHAR, ZPHONEMEDATA VARCHAR, ZPHONETICFIRSTNAME VARCHAR, ZPHONETICLASTNAME VARCHAR, ZPHONETICMIDDLENAME VARCHAR, ZPHONETICORGANIZATION VARCHAR, ZPREFERREDAPPLEPERSONAIDENTIFIER VARCHAR, ZPREFERREDLIKENESSSOURCE VARCHAR, ZSORTINGFIRSTNAME VARCHAR, ZSORTINGLASTNAME VARCHAR, ZSUFFIX VARCHAR, ZTITLE VARCHAR, ZTMPHOMEPAGE VARCHAR, ZWALLPAPERURI VARCHAR, ZASSISTANTVALIDITY VARCHAR, ZCREATEDVERSION VARCHAR, ZLASTDOTMACACCOUNT VARCHAR, ZLASTSAVEDVERSION VARCHAR, ZSYNCANCHOR VARCHAR, ZEXTERNALIDENTIFIER VARCHAR, ZNAME1 VARCHAR, ZPROVIDERIDENTIFIER VARCHAR, ZREMOTELOCATION VARCHAR, ZSERIALNUMBER VARCHAR, ZEXTERNALREPRESENTATION BLOB, ZMODIFIEDUNIQUEIDSDATA BLOB, ZSEARCHELEMENTDATA BLOB, ZAVATARRECIPEDATA BLOB, ZCROPRECTHASH BLOB, ZIMAGEDATA BLOB, ZIMAGEHASH BLOB, ZMEMOJIMETADATA BLOB, ZSENSITIVECONTENTCONFIGURATION BLOB, ZTHUMBNAILIMAGEDATA BLOB, ZWALLPAPER BLOB );
CREATE INDEX ZABCDPHONENUMBER_ZOWNER_INDEX ON ZABCDPHONENUMBER (ZOWNER);
CREATE INDEX ZABCDEMAILADDRESS_ZOWNER_INDEX ON ZABCDEMAILADDRESS (ZOWNER);
CREATE INDEX ZABCDMESSAGINGADDRESS_ZOWNER_INDEX ON ZABCDMESSAGINGADDRESS (ZOWNER);
CREATE INDEX ZABCDRECORD_ZCONTAINER1_INDEX ON ZABCDRECORD (ZCONTAINER1);
"""
# Z_METADATA / Z_MODELCACHE and the ZOWNER index names follow Core Data's conventions [I].

_PHONE_LABELS = ("_$!<Mobile>!$_", "_$!<Home>!$_", "_$!<Work>!$_", "_$!<Main>!$_")
_EMAIL_LABELS = ("_$!<Home>!$_", "_$!<Work>!$_", "_$!<Other>!$_")


def _uuid(rng: random.Random | None) -> str:
    if rng is None:
        return str(uuid.uuid4()).upper()
    return str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()


def _core_data_now(rng: random.Random | None) -> float:
    """A creation/modification time in Core Data seconds (2016–2024 when seeded)."""
    if rng is None:
        return round(time.time() - _CORE_DATA_EPOCH, 3)
    return round(rng.uniform(4.7e8, 7.4e8), 3)


def _fresh_file(path: Path) -> None:
    """Replace ``path`` (and any WAL companions) by an empty 0600 file SQLite will adopt.

    Creating the file ourselves gives it 0600 from the start; SQLite copies the main file's
    mode to the ``-wal``/``-shm`` files it creates.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _last_four(number: str) -> str | None:
    digits = "".join(ch for ch in number if ch.isdigit())
    return digits[-4:] or None


def _labels(labels: Sequence[str], count: int) -> list[str]:
    return [label for label, _ in zip(cycle(labels), range(count))]


def _metadata_plist(store_uuid: str) -> bytes:
    return plistlib.dumps(
        {
            "NSPersistenceFrameworkVersion": 1344,
            "NSStoreModelVersionHashesVersion": 3,
            "NSStoreModelVersionIdentifiers": [""],
            "NSStoreType": "SQLite",
            "NSStoreUUID": store_uuid,
            "_NSAutoVacuumLevel": "2",
        },
        fmt=plistlib.FMT_BINARY,
    )


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, object]) -> None:
    columns = ", ".join(row)
    marks = ", ".join("?" * len(row))
    conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values()))


def write_macos_store(
    path: Path, people: list[FixturePerson], *, rng: random.Random | None = None
) -> None:
    """Write an ``AddressBook-v22.abcddb`` holding ``people`` (replacing any file at ``path``).

    Layout, as Contacts writes it: one ``CNCDContainer`` row, one ``ABCDInfo`` row, then the
    contact rows, all in ``ZABCDRECORD``; phones and e-mails in their own tables pointing back
    with ``ZOWNER`` (record ``Z_PK``) and ``Z22_OWNER`` (the owner's entity number).  The me-card
    is marked both ways seen in the wild: ``ZCONTAINERWHERECONTACTISME`` on the contact and
    ``ZME`` on the container.
    """
    path = Path(path)
    _fresh_file(path)
    contact_ent = _ENT["ABCDContact"]
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(MACOS_SCHEMA)
        conn.execute("BEGIN")
        store_uuid = _uuid(rng)
        conn.execute(
            "INSERT INTO Z_METADATA (Z_VERSION, Z_UUID, Z_PLIST) VALUES (1, ?, ?)",
            (store_uuid, _metadata_plist(store_uuid)),
        )
        container_pk, info_pk = 1, 2
        me_pk = next((3 + i for i, p in enumerate(people) if p.is_me), None)
        created = _core_data_now(rng)
        _insert(
            conn,
            "ZABCDRECORD",
            {
                "Z_PK": container_pk,
                "Z_ENT": _ENT["CNCDContainer"],
                "Z_OPT": 1,
                "ZUNIQUEID": f"{_uuid(rng)}:ABContainer",
                "ZTYPE": 0,
                "ZISALL": 1,
                "ZME": me_pk,
                "Z22_ME": contact_ent if me_pk else None,
                "ZCREATIONDATE": created,
            },
        )
        _insert(
            conn,
            "ZABCDRECORD",
            {
                "Z_PK": info_pk,
                "Z_ENT": _ENT["ABCDInfo"],
                "Z_OPT": 1,
                "ZUNIQUEID": f"{_uuid(rng)}:ABInfo",
            },
        )
        phone_pk = email_pk = 0
        for index, person in enumerate(people):
            pk = 3 + index
            stamp = _core_data_now(rng)
            has_name = bool(person.first or person.last)
            _insert(
                conn,
                "ZABCDRECORD",
                {
                    "Z_PK": pk,
                    "Z_ENT": contact_ent,
                    "Z_OPT": 1 + len(person.phones) + len(person.emails),
                    "ZCONTAINER1": container_pk,
                    "ZCONTAINERWHERECONTACTISME": container_pk if person.is_me else None,
                    # kABShowAsCompany: a card with only an organisation shows as a company [I].
                    "ZDISPLAYFLAGS": 0 if has_name or not person.organization else 1,
                    "ZFIRSTNAME": person.first,
                    "ZLASTNAME": person.last,
                    "ZNICKNAME": person.nickname,
                    "ZORGANIZATION": person.organization,
                    "ZSORTINGFIRSTNAME": " ".join(
                        x for x in (person.first, person.last) if x
                    ).lower()
                    or None,
                    "ZUNIQUEID": person.unique_id or f"{_uuid(rng)}:ABPerson",
                    "ZCREATIONDATE": stamp,
                    "ZMODIFICATIONDATE": stamp,
                },
            )
            labels = _labels(_PHONE_LABELS, len(person.phones))
            for order, (number, label) in enumerate(zip(person.phones, labels, strict=True)):
                phone_pk += 1
                _insert(
                    conn,
                    "ZABCDPHONENUMBER",
                    {
                        "Z_PK": phone_pk,
                        "Z_ENT": _ENT["ABCDPhoneNumber"],
                        "Z_OPT": 1,
                        "ZISPRIMARY": 1 if order == 0 else None,
                        "ZORDERINGINDEX": order,
                        "ZOWNER": pk,
                        "Z22_OWNER": contact_ent,
                        "ZFULLNUMBER": number,
                        "ZLABEL": label,
                        "ZLASTFOURDIGITS": _last_four(number),
                        "ZUNIQUEID": _uuid(rng),
                    },
                )
            labels = _labels(_EMAIL_LABELS, len(person.emails))
            for order, (address, label) in enumerate(zip(person.emails, labels, strict=True)):
                email_pk += 1
                _insert(
                    conn,
                    "ZABCDEMAILADDRESS",
                    {
                        "Z_PK": email_pk,
                        "Z_ENT": _ENT["ABCDEmailAddress"],
                        "Z_OPT": 1,
                        "ZISPRIMARY": 1 if order == 0 else None,
                        "ZORDERINGINDEX": order,
                        "ZOWNER": pk,
                        "Z22_OWNER": contact_ent,
                        "ZADDRESS": address,
                        "ZADDRESSNORMALIZED": address.strip().lower(),
                        "ZLABEL": label,
                        "ZUNIQUEID": _uuid(rng),
                    },
                )
        # Core Data keeps the last primary key handed out per root entity in Z_MAX [I].
        maxima = {
            "ABCDRecord": 2 + len(people),
            "ABCDPhoneNumber": phone_pk,
            "ABCDEmailAddress": email_pk,
        }
        conn.executemany(
            "INSERT INTO Z_PRIMARYKEY (Z_ENT, Z_NAME, Z_SUPER, Z_MAX) VALUES (?, ?, ?, ?)",
            [(ent, name, sup, maxima.get(name, 0)) for ent, name, sup in MACOS_ENTITIES],
        )
        conn.execute("COMMIT")
    _chmod_private(path)


def _chmod_private(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            companion.chmod(0o600)


def write_macos_tree(
    root: Path,
    sources: dict[str, list[FixturePerson]],
    top_level: list[FixturePerson] | None = None,
    *,
    rng: random.Random | None = None,
) -> list[Path]:
    """Lay out ``~/Library/Application Support/AddressBook`` under ``root``.

    Each key of ``sources`` becomes ``root/Sources/<key>/AddressBook-v22.abcddb`` (Contacts names
    these folders by the account's UUID); ``top_level`` fills ``root/AddressBook-v22.abcddb``.
    Returns the stores in the order :func:`chatstats.imessage.addressbook.find_macos_stores`
    lists them: top level first, then sources sorted by folder name.
    """
    root = Path(root)
    written: list[Path] = []
    if top_level is not None:
        top = root / MACOS_STORE_NAME
        write_macos_store(top, top_level, rng=rng)
        written.append(top)
    for key in sorted(sources):
        if not key or "/" in key or key in (".", ".."):
            raise ValueError(f"source key must be a plain folder name, got {key!r}")
        store = root / "Sources" / key / MACOS_STORE_NAME
        write_macos_store(store, sources[key], rng=rng)
        written.append(store)
    return written


# ABPerson, ABStore and ABGroup: CREATE strings found in the iOS AddressBook framework (reference
# §2.4 for ABPerson; ABStore/ABGroup from the same framework's strings).  ABMultiValue follows the
# old iPhone schema plus the newer ``guid`` column; its exact current text is unverified.
IOS_SCHEMA = """
CREATE TABLE _SqliteDatabaseProperties (key TEXT, value TEXT, UNIQUE(key));
CREATE TABLE ABPerson (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, First TEXT, Last TEXT, Middle TEXT, FirstPhonetic TEXT, MiddlePhonetic TEXT, LastPhonetic TEXT, Organization TEXT, Department TEXT, Note TEXT, Kind INTEGER, Birthday TEXT, JobTitle TEXT, Nickname TEXT, Prefix TEXT, Suffix TEXT, FirstSort TEXT, LastSort TEXT, CreationDate INTEGER, ModificationDate INTEGER, CompositeNameFallback TEXT, ExternalIdentifier TEXT, ExternalModificationTag TEXT, ExternalUUID TEXT, StoreID INTEGER, DisplayName TEXT, ExternalRepresentation BLOB, FirstSortSection TEXT, LastSortSection TEXT, FirstSortLanguageIndex INTEGER DEFAULT 2147483647, LastSortLanguageIndex INTEGER DEFAULT 2147483647, PersonLink INTEGER DEFAULT -1, ImageURI TEXT, IsPreferredName INTEGER DEFAULT 1, guid TEXT NOT NULL DEFAULT (ab_generate_guid()), PhonemeData TEXT, AlternateBirthday TEXT, MapsData TEXT, FirstPronunciation TEXT, MiddlePronunciation TEXT, LastPronunciation TEXT, OrganizationPhonetic TEXT, OrganizationPronunciation TEXT, PreviousFamilyName TEXT, PreferredLikenessSource TEXT, PreferredPersonaIdentifier TEXT, PreferredChannel TEXT, DowntimeWhitelist TEXT, ImageType TEXT, ImageHash BLOB, MemojiMetadata BLOB, Wallpaper BLOB, DisplayFlags INTEGER, WatchWallpaperImageData BLOB, WallpaperMetadata BLOB, ImageBackgroundColorsData BLOB, SensitiveContentConfiguration BLOB, WallpaperURI TEXT, UNIQUE(guid));
CREATE TABLE ABMultiValue (UID INTEGER PRIMARY KEY, record_id INTEGER, property INTEGER, identifier INTEGER, label INTEGER, value TEXT, guid TEXT);
CREATE TABLE ABMultiValueLabel (value TEXT, UNIQUE(value));
CREATE TABLE ABMultiValueEntryKey (value TEXT, UNIQUE(value));
CREATE TABLE ABMultiValueEntry (parent_id INTEGER, key INTEGER, value TEXT, UNIQUE(parent_id, key));
CREATE TABLE ABStore (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, Name TEXT, ExternalIdentifier TEXT, Type INTEGER, ConstraintsPath TEXT, ExternalModificationTag TEXT, ExternalSyncTag TEXT, StoreInternalIdentifier TEXT, AccountID INTEGER DEFAULT -1,Enabled INTEGER DEFAULT 1, SyncData BLOB, MeIdentifier INTEGER DEFAULT -1, Capabilities INTEGER DEFAULT 0, guid TEXT NOT NULL DEFAULT (ab_generate_guid()), LastSyncDate TEXT, ProviderIdentifier TEXT, ProviderMetadata BLOB, UNIQUE(StoreInternalIdentifier), UNIQUE(guid));
CREATE TABLE ABGroup (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, Name TEXT, ExternalIdentifier TEXT, StoreID INTEGER, ExternalModificationTag TEXT, ExternalRepresentation BLOB, ExternalUUID TEXT, guid TEXT NOT NULL DEFAULT (ab_generate_guid()), UNIQUE(guid));
CREATE INDEX ABMultiValueRecordIDIndex ON ABMultiValue(record_id);
"""
IOS_PHONE, IOS_EMAIL = 3, 4


def write_ios_store(
    path: Path, people: list[FixturePerson], *, rng: random.Random | None = None
) -> None:
    """Write an iOS ``AddressBook.sqlitedb`` holding ``people`` (replacing any file at ``path``).

    Phones and e-mails are ``ABMultiValue`` rows (property 3 / 4) whose ``label`` points at an
    ``ABMultiValueLabel`` rowid.  ``is_me`` becomes the local store's ``MeIdentifier`` (the
    me-card's ``ABPerson.ROWID``) — an inference from the column name and its -1 default.
    """
    path = Path(path)
    _fresh_file(path)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(IOS_SCHEMA)
        conn.execute("BEGIN")
        me_rowid = next((1 + i for i, p in enumerate(people) if p.is_me), -1)
        conn.execute(
            "INSERT INTO ABStore (ROWID, Type, Enabled, StoreInternalIdentifier, MeIdentifier, guid)"
            " VALUES (0, 0, 1, 'local', ?, ?)",
            (me_rowid, _uuid(rng)),
        )
        labels: dict[str, int] = {}

        def label_id(text: str) -> int:
            if text not in labels:
                cur = conn.execute("INSERT INTO ABMultiValueLabel (value) VALUES (?)", (text,))
                labels[text] = int(cur.lastrowid or 0)
            return labels[text]

        for index, person in enumerate(people):
            rowid = 1 + index
            stamp = int(_core_data_now(rng))
            guid = person.unique_id.split(":", 1)[0] if person.unique_id else _uuid(rng)
            has_name = bool(person.first or person.last)
            _insert(
                conn,
                "ABPerson",
                {
                    "ROWID": rowid,
                    "First": person.first,
                    "Last": person.last,
                    "Organization": person.organization,
                    "Nickname": person.nickname,
                    "Kind": 0 if has_name or not person.organization else 1,
                    "CreationDate": stamp,
                    "ModificationDate": stamp,
                    "StoreID": 0,
                    "guid": guid,
                },
            )
            values: Iterable[tuple[int, str, str]] = [
                *((IOS_PHONE, v, lbl) for v, lbl in zip(person.phones, cycle(_PHONE_LABELS))),
                *((IOS_EMAIL, v, lbl) for v, lbl in zip(person.emails, cycle(_EMAIL_LABELS))),
            ]
            for identifier, (prop, value, label) in enumerate(values):
                conn.execute(
                    "INSERT INTO ABMultiValue (record_id, property, identifier, label, value, guid)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (rowid, prop, identifier, label_id(label), value, _uuid(rng)),
                )
        conn.executemany(
            "INSERT INTO _SqliteDatabaseProperties (key, value) VALUES (?, ?)",
            [("__ABVersion__", "1200"), ("__ABMultiValueNextIdentifier__", "0")],
        )
        conn.execute("COMMIT")
    _chmod_private(path)


# --------------------------------------------------------------------------------------------
# iPhone backups


def backup_file_id(domain: str, relative_path: str) -> str:
    """The name a Finder backup gives a file: SHA-1 of ``"<domain>-<relativePath>"``."""
    return hashlib.sha1(f"{domain}-{relative_path}".encode()).hexdigest()


_BACKUP_SCHEMA = """
CREATE TABLE Files (fileID TEXT PRIMARY KEY, domain TEXT, relativePath TEXT, flags INTEGER, file BLOB);
CREATE INDEX FilesDomainIdx ON Files(domain);
CREATE INDEX FilesRelativePathIdx ON Files(relativePath);
CREATE INDEX FilesFlagsIdx ON Files(flags);
CREATE TABLE Properties (key TEXT PRIMARY KEY, value BLOB);
"""
SMS_PATH = ("HomeDomain", "Library/SMS/sms.db")
ADDRESSBOOK_PATH = ("HomeDomain", "Library/AddressBook/AddressBook.sqlitedb")


def _mbfile(relative_path: str, size: int, mode: int, mtime: int, inode: int) -> bytes:
    """The ``Files.file`` blob: an NSKeyedArchiver plist of an ``MBFile`` (reference §2.2)."""
    root = {
        "$class": plistlib.UID(3),
        "RelativePath": plistlib.UID(2),
        "Size": size,
        "Mode": mode,
        "LastModified": mtime,
        "LastStatusChange": mtime,
        "Birth": mtime,
        "InodeNumber": inode,
        "UserID": 501,
        "GroupID": 501,
        "Flags": 0,
        "ProtectionClass": 3 if mode & 0o100000 else 0,
    }
    archive = {
        "$version": 100000,
        "$archiver": "NSKeyedArchiver",
        "$top": {"root": plistlib.UID(1)},
        "$objects": [
            "$null",
            root,
            relative_path,
            {"$classname": "MBFile", "$classes": ["MBFile", "NSObject"]},
        ],
    }
    return plistlib.dumps(archive, fmt=plistlib.FMT_BINARY)


def _copy_sqlite(source: Path, target: Path) -> None:
    """Copy a database including rows still in its WAL (a plain file copy would drop them)."""
    with source.open("rb") as fh:
        is_sqlite = fh.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    if not is_sqlite:
        shutil.copyfile(source, target)
        return
    uri = f"{source.resolve().as_uri()}?mode=ro"
    with (
        closing(sqlite3.connect(uri, uri=True)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


def _random_bytes(size: int, rng: random.Random | None) -> bytes:
    size = max(16, -(-size // 16) * 16)  # AES-CBC output: whole 16-byte blocks
    return rng.randbytes(size) if rng is not None else os.urandom(size)


def write_backup(
    root: Path,
    sms_db: Path,
    addressbook: Path | None,
    *,
    encrypted: bool = False,
    rng: random.Random | None = None,
) -> Path:
    """Write a Finder/iTunes-style backup folder at ``root`` holding sms.db (+ AddressBook).

    ``encrypted=True`` imitates what a reader sees of an encrypted backup without its password:
    ``IsEncrypted`` in Manifest.plist, a keybag, and ``Manifest.db`` / file contents that are
    opaque bytes.  No real keybag is built, so nothing can decrypt it.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    udid = root.name
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)  # plistlib wants naive UTC
    mtime = int(now.timestamp())
    entries: list[tuple[str, str, int, Path | None]] = [
        ("HomeDomain", "", 2, None),
        ("HomeDomain", "Library", 2, None),
        ("HomeDomain", "Library/SMS", 2, None),
        (*SMS_PATH, 1, Path(sms_db)),
    ]
    if addressbook is not None:
        entries += [
            ("HomeDomain", "Library/AddressBook", 2, None),
            (*ADDRESSBOOK_PATH, 1, Path(addressbook)),
        ]

    manifest_rows = []
    for inode, (domain, rel, flags, source) in enumerate(entries, start=1000):
        file_id = backup_file_id(domain, rel)
        size, mode = 0, 0o40755
        if source is not None:
            target = root / file_id[:2] / file_id
            target.parent.mkdir(exist_ok=True)
            target.unlink(missing_ok=True)
            if encrypted:
                target.write_bytes(_random_bytes(source.stat().st_size, rng))
            else:
                _copy_sqlite(source, target)
            size, mode = target.stat().st_size, 0o100644
        blob = _mbfile(rel, size, mode, mtime, inode)
        manifest_rows.append((file_id, domain, rel, flags, blob))

    manifest_db = root / "Manifest.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{manifest_db}{suffix}").unlink(missing_ok=True)
    with closing(sqlite3.connect(manifest_db, isolation_level=None)) as conn:
        conn.executescript(_BACKUP_SCHEMA)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO Files VALUES (?, ?, ?, ?, ?)", manifest_rows)
        conn.execute("COMMIT")
    if encrypted:
        manifest_db.write_bytes(_random_bytes(manifest_db.stat().st_size, rng))

    lockdown = {
        "DeviceName": "iPhone",
        "ProductType": "iPhone15,2",
        "ProductVersion": "17.5.1",
        "BuildVersion": "21F90",
        "UniqueDeviceID": udid,
        "SerialNumber": "F00000000000",
    }
    manifest: dict[str, object] = {
        "IsEncrypted": encrypted,
        "Version": "10.0",
        "Date": now,
        "SystemDomainsVersion": "24.0",
        "WasPasscodeSet": True,
        "Lockdown": lockdown,
        "Applications": {},
    }
    if encrypted:
        manifest["BackupKeyBag"] = _random_bytes(1024, rng)
        manifest["ManifestKey"] = (4).to_bytes(4, "little") + _random_bytes(40, rng)[:40]
    info = {
        "Device Name": "iPhone",
        "Display Name": "iPhone",
        "Product Name": "iPhone 14 Pro",
        "Product Type": "iPhone15,2",
        "Product Version": "17.5.1",
        "Build Version": "21F90",
        "Unique Identifier": udid.upper(),
        "Target Identifier": udid.upper(),
        "Target Type": "Device",
        "GUID": _uuid(rng).replace("-", ""),
        "Last Backup Date": now,
        "iTunes Version": "12.13.2.3",
    }
    status = {
        "IsFullBackup": False,
        "Version": "3.3",
        "UUID": _uuid(rng),
        "Date": now,
        "BackupState": "new",
        "SnapshotState": "finished",
    }
    for name, data, fmt in (
        ("Manifest.plist", manifest, plistlib.FMT_BINARY),
        ("Info.plist", info, plistlib.FMT_XML),
        ("Status.plist", status, plistlib.FMT_BINARY),
    ):
        (root / name).write_bytes(plistlib.dumps(data, fmt=fmt))
    return root
