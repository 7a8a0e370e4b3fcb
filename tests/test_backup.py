"""Locating sms.db and AddressBook.sqlitedb in Finder-style iPhone backups."""

from __future__ import annotations

import plistlib
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from chatstats.imessage.addressbook import read_store
from chatstats.imessage.backup import (
    BackupError,
    BackupFiles,
    EncryptedBackupError,
    file_id,
    locate,
)
from chatstats.sample.addressbook import FixturePerson, write_backup, write_ios_store

SMS_ID = "3d0d7e5fb2ce288813306e4d4636395e047a3d28"
AB_ID = "31bb7ba8914766d4ba40d6dfb6113c8b614be442"
UDID = "00008110-000A1B2C3D4E5F60"


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path]:
    sms = tmp_path / "src" / "sms.db"
    sms.parent.mkdir()
    with closing(sqlite3.connect(sms)) as conn:
        conn.execute("CREATE TABLE message (ROWID INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO message (text) VALUES ('hello')")
        conn.commit()
    ab = tmp_path / "src" / "AddressBook.sqlitedb"
    write_ios_store(ab, [FixturePerson("Ann", "Lee", phones=["(415) 555-0123"])])
    return sms, ab


def _manifest(root: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    with closing(sqlite3.connect(root / "Manifest.db")) as conn:
        conn.execute(sql, params)
        conn.commit()


def test_well_known_file_ids() -> None:
    assert file_id("HomeDomain", "Library/SMS/sms.db") == SMS_ID
    assert file_id("HomeDomain", "Library/AddressBook/AddressBook.sqlitedb") == AB_ID


def test_locate_via_manifest(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    root = write_backup(tmp_path / "Backup" / UDID, *sources)
    for name in ("Info.plist", "Manifest.plist", "Status.plist", "Manifest.db"):
        assert (root / name).is_file()
    found = locate(root)
    assert found == BackupFiles(root, root / "3d" / SMS_ID, root / "31" / AB_ID)
    with closing(sqlite3.connect(f"{found.sms_db.as_uri()}?mode=ro", uri=True)) as conn:
        assert conn.execute("SELECT text FROM message").fetchall() == [("hello",)]
    assert found.addressbook is not None
    assert [p.identifiers for p in read_store(found.addressbook)] == [("+14155550123",)]


def test_manifest_location_wins_over_well_known_id(
    tmp_path: Path, sources: tuple[Path, Path]
) -> None:
    root = write_backup(tmp_path / UDID, *sources)
    moved = "ab" + "0" * 38
    (root / "ab").mkdir()
    (root / "3d" / SMS_ID).rename(root / "ab" / moved)
    _manifest(root, "UPDATE Files SET fileID = ? WHERE fileID = ?", (moved, SMS_ID))
    assert locate(root).sms_db == root / "ab" / moved


def test_fallback_without_manifest_rows(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    root = write_backup(tmp_path / UDID, *sources)
    _manifest(root, "DELETE FROM Files")
    found = locate(root)
    assert found.sms_db == root / "3d" / SMS_ID
    assert found.addressbook == root / "31" / AB_ID


def test_fallback_ignores_unsafe_manifest_ids(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    root = write_backup(tmp_path / UDID, *sources)
    _manifest(root, "UPDATE Files SET fileID = '../../etc/passwd' WHERE fileID = ?", (SMS_ID,))
    assert locate(root).sms_db == root / "3d" / SMS_ID


def test_fallback_without_manifest_db_and_flat_layout(
    tmp_path: Path, sources: tuple[Path, Path]
) -> None:
    root = write_backup(tmp_path / UDID, sources[0], None)
    (root / "Manifest.db").unlink()
    (root / "3d" / SMS_ID).rename(root / SMS_ID)  # pre-iOS 10 backups keep files flat
    found = locate(root)
    assert found.sms_db == root / SMS_ID
    assert found.addressbook is None


def test_encrypted_backup(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    root = write_backup(tmp_path / UDID, *sources, encrypted=True)
    assert not (root / "Manifest.db").read_bytes().startswith(b"SQLite format 3")
    with pytest.raises(EncryptedBackupError) as info:
        locate(root)
    message = str(info.value)
    assert "encrypted" in message and "decrypt it first" in message
    assert "unencrypted backup" in message
    assert "\n" not in message


def test_encrypted_manifest_db_even_if_plist_says_otherwise(
    tmp_path: Path, sources: tuple[Path, Path]
) -> None:
    root = write_backup(tmp_path / UDID, *sources, encrypted=True)
    plist = root / "Manifest.plist"
    data = plistlib.loads(plist.read_bytes())
    data["IsEncrypted"] = False
    plist.write_bytes(plistlib.dumps(data))
    with pytest.raises(EncryptedBackupError, match=r"Manifest\.db"):
        locate(root)
    assert issubclass(EncryptedBackupError, BackupError)


def test_missing_sms_db(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    root = write_backup(tmp_path / UDID, *sources)
    (root / "3d" / SMS_ID).unlink()
    with pytest.raises(BackupError, match="no Messages database"):
        locate(root)


def test_damaged_sms_db(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    root = write_backup(tmp_path / UDID, *sources)
    (root / "3d" / SMS_ID).write_bytes(b"")
    with pytest.raises(BackupError, match="empty"):
        locate(root)


def test_damaged_manifest_plist(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    root = write_backup(tmp_path / UDID, *sources)
    (root / "Manifest.plist").write_bytes(b"<plist><dict><key>")
    with pytest.raises(BackupError, match=r"Manifest\.plist is unreadable"):
        locate(root)


def test_not_a_backup(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    with pytest.raises(BackupError, match=r"expected an iPhone backup folder.*Manifest\.plist"):
        locate(tmp_path / "src")
    with pytest.raises(BackupError, match="is a file"):
        locate(sources[0])
    with pytest.raises(BackupError, match="does not exist"):
        locate(tmp_path / "nope")


def test_folder_of_backups(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    mobile_sync = tmp_path / "MobileSync"
    parent = mobile_sync / "Backup"
    only = write_backup(parent / UDID, *sources)
    # One backup inside: nothing to choose, so it is used (from Backup/ or from MobileSync/).
    assert locate(parent).root == only
    assert locate(mobile_sync).root == only
    second = write_backup(parent / "00008030-0011223344556677", sources[0], None)
    with pytest.raises(BackupError) as info:
        locate(parent)
    message = str(info.value)
    assert f"2 iPhone backups ({second.name}, {only.name})" in message
    assert "pass the folder" in message


def test_write_backup_keeps_rows_only_in_wal(tmp_path: Path) -> None:
    sms = tmp_path / "chat.db"
    writer = sqlite3.connect(sms)
    try:
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("CREATE TABLE message (text TEXT)")
        writer.execute("INSERT INTO message VALUES ('only in wal')")
        writer.commit()
        root = write_backup(tmp_path / UDID, sms, None)
    finally:
        writer.close()
    with closing(sqlite3.connect(locate(root).sms_db)) as conn:
        assert conn.execute("SELECT text FROM message").fetchall() == [("only in wal",)]
