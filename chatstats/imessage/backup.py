"""Find the Messages and Contacts databases inside a Finder/iTunes iPhone backup.

A backup stores each file under its SHA-1 file id (``<root>/<id[:2]>/<id>``, iOS 10+; flat in
``<root>`` before) and lists ids in ``Manifest.db``.  We look files up there and fall back to the
well-known id, because the id is a pure function of domain and path (reference §2.3).

Encrypted backups are refused with a message saying what to do: their ``Manifest.db`` and every
file are AES-encrypted, and decrypting them needs the backup password and a crypto library this
project does not ship.  Nothing is written into the backup; SQLite is opened read-only.
"""

from __future__ import annotations

import hashlib
import plistlib
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "ADDRESSBOOK_PATH",
    "SMS_PATH",
    "BackupError",
    "BackupFiles",
    "EncryptedBackupError",
    "file_id",
    "locate",
]

SMS_PATH = ("HomeDomain", "Library/SMS/sms.db")
ADDRESSBOOK_PATH = ("HomeDomain", "Library/AddressBook/AddressBook.sqlitedb")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_FILE_ID = re.compile(r"[0-9a-f]{40}")
_EXPECTED = (
    "expected an iPhone backup folder holding Manifest.plist and Manifest.db"
    " (~/Library/Application Support/MobileSync/Backup/<id>)"
)


class BackupError(Exception):
    """The backup cannot be used; the message is one line a user can act on."""


class EncryptedBackupError(BackupError):
    """The backup is encrypted; we do not decrypt (no password handling, no crypto library)."""


class BackupFiles(NamedTuple):
    root: Path
    sms_db: Path
    addressbook: Path | None


def file_id(domain: str, relative_path: str) -> str:
    """The SHA-1 name a backup gives ``relative_path`` of ``domain``."""
    return hashlib.sha1(f"{domain}-{relative_path}".encode()).hexdigest()


def locate(root: Path) -> BackupFiles:
    """Resolve a backup folder to its sms.db and (if present) AddressBook.sqlitedb.

    ``root`` may also be the folder of backups (``MobileSync/Backup``) or ``MobileSync`` when it
    holds exactly one backup; with several we cannot guess which phone the user means, so the
    error lists their ids.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise BackupError(f"{root} does not exist; {_EXPECTED}")
    if not root.is_dir():
        raise BackupError(f"{root} is a file; {_EXPECTED}")
    if not _is_backup(root):
        root = _single_child_backup(root)

    _check_manifest_plist(root)
    manifest = root / "Manifest.db"
    if manifest.exists():
        _check_manifest_db(root, manifest)

    sms = _find(root, manifest, SMS_PATH)
    if sms is None:
        raise BackupError(
            f"{root} contains no Messages database (HomeDomain {SMS_PATH[1]});"
            " the backup is incomplete or was made without Messages"
        )
    _check_sqlite(sms, f"{root}: the Messages database in this backup")
    return BackupFiles(root=root, sms_db=sms, addressbook=_find(root, manifest, ADDRESSBOOK_PATH))


def _is_backup(folder: Path) -> bool:
    return any(
        (folder / name).is_file() for name in ("Manifest.plist", "Manifest.db", "Manifest.mbdb")
    )


def _single_child_backup(root: Path) -> Path:
    parents = [root, root / "Backup"] if (root / "Backup").is_dir() else [root]
    try:
        found = sorted(
            (child for parent in parents for child in parent.iterdir() if child.is_dir()),
            key=lambda p: p.name,
        )
        backups = [child for child in found if _is_backup(child)]
    except PermissionError as exc:
        raise BackupError(
            f"{root}: permission denied listing backups (grant Full Disk Access)"
        ) from exc
    if len(backups) == 1:
        return backups[0]
    if not backups:
        raise BackupError(f"{root} is not an iPhone backup folder; {_EXPECTED}")
    ids = ", ".join(b.name for b in backups)
    raise BackupError(
        f"{root} holds {len(backups)} iPhone backups ({ids}); pass the folder of the one to"
        f" import, e.g. {backups[0]}"
    )


def _encrypted(root: Path, detail: str) -> EncryptedBackupError:
    return EncryptedBackupError(
        f"{root} is an encrypted iPhone backup ({detail}) and ChatStats cannot read encrypted"
        " backups; decrypt it first (e.g. the iphone_backup_decrypt package, or"
        " imessage-exporter --cleartext-password) or make an unencrypted backup"
        " (Finder: untick 'Encrypt local backup')"
    )


def _check_manifest_plist(root: Path) -> None:
    path = root / "Manifest.plist"
    if not path.exists():
        return
    try:
        with path.open("rb") as fh:
            manifest = plistlib.load(fh)
    except PermissionError as exc:
        raise BackupError(f"{path}: permission denied (grant Full Disk Access)") from exc
    except Exception as exc:  # plistlib raises expat/struct/index errors on damaged files
        raise BackupError(
            f"{path} is unreadable; the backup is incomplete or damaged ({type(exc).__name__})"
        ) from exc
    if isinstance(manifest, dict) and manifest.get("IsEncrypted"):
        raise _encrypted(root, "Manifest.plist IsEncrypted is true")


def _header(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(len(_SQLITE_MAGIC))
    except PermissionError as exc:
        raise BackupError(f"{path}: permission denied (grant Full Disk Access)") from exc
    except OSError as exc:
        raise BackupError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _check_manifest_db(root: Path, manifest: Path) -> None:
    header = _header(manifest)
    if not header:
        raise BackupError(f"{manifest} is empty; the backup is incomplete")
    if header != _SQLITE_MAGIC:
        raise _encrypted(root, "Manifest.db is not plain SQLite")


def _check_sqlite(path: Path, what: str) -> None:
    header = _header(path)
    if header != _SQLITE_MAGIC:
        state = "empty" if not header else "not a SQLite database"
        raise BackupError(f"{what} is {state} ({path.name}); the backup is damaged or incomplete")


def _manifest_file_id(manifest: Path, domain: str, relative_path: str) -> str | None:
    """The id Manifest.db records, or None when it has no usable row (we then fall back)."""
    if not manifest.exists():
        return None
    uri = f"{manifest.resolve().as_uri()}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as conn:
            conn.execute("PRAGMA query_only = 1")
            row = conn.execute(
                "SELECT fileID FROM Files WHERE domain = ? AND relativePath = ?"
                " ORDER BY flags = 1 DESC LIMIT 1",
                (domain, relative_path),
            ).fetchone()
    except sqlite3.Error:
        return None
    if row is None or not isinstance(row[0], str):
        return None
    fid = row[0].strip().lower()
    # The id becomes a path: accept only what a backup writes, never "../" or separators.
    return fid if _FILE_ID.fullmatch(fid) else None


def _stored_file(root: Path, fid: str) -> Path | None:
    for candidate in (root / fid[:2] / fid, root / fid):  # iOS 10+ layout, then the older flat one
        if candidate.is_file():
            return candidate
    return None


def _find(root: Path, manifest: Path, entry: tuple[str, str]) -> Path | None:
    listed = _manifest_file_id(manifest, *entry)
    if listed is not None:
        found = _stored_file(root, listed)
        if found is not None:
            return found
    return _stored_file(root, file_id(*entry))
