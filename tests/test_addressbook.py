"""Contacts readers, against real SQLite files written like Contacts writes them."""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from chatstats.imessage import addressbook
from chatstats.imessage.addressbook import (
    ABPerson,
    AddressBookError,
    find_macos_stores,
    read_people,
    read_store,
)
from chatstats.sample.addressbook import (
    FixturePerson,
    write_ios_store,
    write_macos_store,
    write_macos_tree,
)

ANN = FixturePerson(
    "Ann", "Lee", phones=["(415) 555-0123", "+44 7700 900123"], emails=["Ann.Lee@Example.COM"]
)
BOB = FixturePerson("Bob", "Stone", phones=["415.555.0199"])
ME = FixturePerson("Mia", "Self", phones=["+1 212 555 0100"], emails=["mia@icloud.com"], is_me=True)


def _by_name(people: list[ABPerson]) -> dict[str | None, ABPerson]:
    return {p.name: p for p in people}


def _exec(path: Path, *sql: str) -> None:
    with closing(sqlite3.connect(path)) as conn:
        for statement in sql:
            conn.execute(statement)
        conn.commit()


def test_macos_store_people_and_identifiers(tmp_path: Path) -> None:
    store = tmp_path / "AddressBook-v22.abcddb"
    write_macos_store(store, [ANN, BOB, ME], rng=random.Random(1))
    assert store.stat().st_mode & 0o777 == 0o600
    people = _by_name(read_store(store))
    assert set(people) == {"Ann Lee", "Bob Stone", "Mia Self"}
    ann = people["Ann Lee"]
    # One person with phone + e-mail is one ABPerson carrying both, normalised.
    assert ann.identifiers == ("+14155550123", "+447700900123", "ann.lee@example.com")
    assert people["Bob Stone"].identifiers == ("+14155550199",)
    assert ann.key.startswith("mac:") and ann.key.endswith(":ABPerson")
    assert not ann.is_me
    assert people["Mia Self"].is_me
    assert len({p.key for p in people.values()}) == 3


def test_keys_are_stable_across_reads(tmp_path: Path) -> None:
    store = tmp_path / "AddressBook-v22.abcddb"
    write_macos_store(store, [ANN, BOB])
    assert [p.key for p in read_store(store)] == [p.key for p in read_store(store)]


def test_name_fallbacks(tmp_path: Path) -> None:
    store = tmp_path / "AddressBook-v22.abcddb"
    write_macos_store(
        store,
        [
            FixturePerson("Cher", None, phones=["4155550101"]),
            FixturePerson(None, None, nickname="Doc", phones=["4155550102"]),
            FixturePerson(None, None, organization="Acme Pizza", phones=["4155550103"]),
            FixturePerson(" ", None, phones=["22395"]),
        ],
    )
    names = [p.name for p in read_store(store)]
    assert names == ["Cher", "Doc", "Acme Pizza", None]


def test_email_case_and_phone_forms_meet_across_stores(tmp_path: Path) -> None:
    a = tmp_path / "a" / "AddressBook-v22.abcddb"
    b = tmp_path / "b" / "AddressBook-v22.abcddb"
    write_macos_store(a, [FixturePerson("Ann", "Lee", emails=["ANN@example.com"])])
    write_macos_store(b, [FixturePerson("ann  lee", None, emails=["ann@EXAMPLE.com"])])
    people, errors = read_people([a, b])
    assert errors == []
    assert len(people) == 1
    assert people[0].identifiers == ("ann@example.com",)


def test_person_in_two_sources_is_merged(tmp_path: Path) -> None:
    root = tmp_path / "AddressBook"
    icloud_ann = FixturePerson("Ann", "Lee", phones=["(415) 555-0123"], emails=["ann@icloud.com"])
    work_ann = FixturePerson("Ann", "Lee", phones=["+14155550123"], emails=["ann@work.example"])
    namesake = FixturePerson("Ann", "Lee", phones=["+1 646 555 0000"])  # another Ann Lee
    stores = write_macos_tree(
        root,
        {"ICLOUD-UUID": [icloud_ann, BOB], "EXCHANGE-UUID": [work_ann, namesake]},
        top_level=[ME],
    )
    assert stores == find_macos_stores(root)
    people, errors = read_people(stores)
    assert errors == []
    anns = [p for p in people if p.name == "Ann Lee"]
    assert len(anns) == 2
    merged = next(p for p in anns if p.aliases)
    assert set(merged.identifiers) == {"+14155550123", "ann@icloud.com", "ann@work.example"}
    assert len(merged.identifiers) == 3
    assert len(merged.aliases) == 1
    separate = {p.key for p in read_store(stores[1])} | {p.key for p in read_store(stores[2])}
    assert {merged.key, *merged.aliases} <= separate
    assert merged.key == min(merged.key, *merged.aliases)
    # Order of paths does not change the merged identity.
    again, _ = read_people(list(reversed(stores)))
    assert {p.key for p in again} == {p.key for p in people}
    assert sum(p.is_me for p in people) == 1


def test_shared_number_with_different_names_is_not_merged(tmp_path: Path) -> None:
    store = tmp_path / "AddressBook-v22.abcddb"
    write_macos_store(
        store,
        [
            FixturePerson("Pat", "Home", phones=["415 555 0111"]),
            FixturePerson("Sam", "Home", phones=["415 555 0111"]),
        ],
    )
    people, _ = read_people([store])
    assert len(people) == 2


def test_find_macos_stores(tmp_path: Path) -> None:
    root = tmp_path / "AddressBook"
    assert find_macos_stores(root) == []
    write_macos_tree(root, {"B": [BOB], "A": [ANN]})
    (root / "Sources" / "EMPTY").mkdir()
    found = find_macos_stores(root)
    assert [p.parent.name for p in found] == ["A", "B"]
    assert find_macos_stores(root / "Sources") == found
    assert find_macos_stores(found[0]) == [found[0]]
    write_macos_store(root / "AddressBook-v22.abcddb", [ME])
    assert find_macos_stores(root)[0] == root / "AddressBook-v22.abcddb"


def test_rows_only_in_the_wal_are_read(tmp_path: Path) -> None:
    store = tmp_path / "AddressBook-v22.abcddb"
    write_macos_store(store, [ANN])
    writer = sqlite3.connect(store)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute(
            "INSERT INTO ZABCDRECORD (Z_PK, Z_ENT, ZFIRSTNAME, ZUNIQUEID)"
            " VALUES (99, 22, 'Wally', 'W:ABPerson')"
        )
        writer.commit()
        assert (tmp_path / "AddressBook-v22.abcddb-wal").stat().st_size > 0
        assert "Wally" in {p.name for p in read_store(store)}
    finally:
        writer.close()


def test_subentities_included_groups_excluded(tmp_path: Path) -> None:
    store = tmp_path / "AddressBook-v22.abcddb"
    write_macos_store(store, [ANN])
    _exec(
        store,
        "INSERT INTO ZABCDRECORD (Z_PK, Z_ENT, ZFIRSTNAME, ZUNIQUEID)"
        " VALUES (50, 23, 'Sub', 'S:ABPerson')",  # ABCDSubscribedContact
        "INSERT INTO ZABCDRECORD (Z_PK, Z_ENT, ZNAME, ZORGANIZATION, ZUNIQUEID)"
        " VALUES (51, 19, 'Friends', 'Odd', 'G:ABGroup')",  # a group
    )
    assert {p.name for p in read_store(store)} == {"Ann Lee", "Sub"}


def test_older_schema_without_address_normalized(tmp_path: Path) -> None:
    store = tmp_path / "AddressBook-v22.abcddb"
    write_macos_store(store, [ANN])
    _exec(store, "ALTER TABLE ZABCDEMAILADDRESS DROP COLUMN ZADDRESSNORMALIZED")
    (ann,) = read_store(store)
    assert "ann.lee@example.com" in ann.identifiers


def test_schema_without_primarykey_or_me_columns(tmp_path: Path) -> None:
    store = tmp_path / "AddressBook-v22.abcddb"
    write_macos_store(store, [ANN, FixturePerson(None, None, organization="Acme"), ME])
    _exec(
        store,
        "DROP TABLE Z_PRIMARYKEY",
        "DROP TABLE Z_METADATA",
        "ALTER TABLE ZABCDRECORD DROP COLUMN ZCONTAINERWHERECONTACTISME",
        "ALTER TABLE ZABCDRECORD DROP COLUMN ZME",
        "ALTER TABLE ZABCDRECORD DROP COLUMN ZNICKNAME",
        "DROP TABLE ZABCDEMAILADDRESS",
    )
    people = read_store(store)
    # Container and info rows carry no person/company name, so only the cards remain.
    assert [p.name for p in people] == ["Ann Lee", "Acme", "Mia Self"]
    assert not any(p.is_me for p in people)
    assert people[0].identifiers == ("+14155550123", "+447700900123")


def test_ios_store(tmp_path: Path) -> None:
    store = tmp_path / "AddressBook.sqlitedb"
    write_ios_store(store, [ANN, ME, FixturePerson(None, None, organization="Acme")])
    people = read_store(store)
    assert [p.name for p in people] == ["Ann Lee", "Mia Self", "Acme"]
    ann, me, _ = people
    assert ann.identifiers == ("+14155550123", "+447700900123", "ann.lee@example.com")
    assert me.is_me and not ann.is_me
    assert ann.key.startswith("ios:")
    assert len({p.key for p in people}) == 3


def test_old_ios_schema_without_guid(tmp_path: Path) -> None:
    store = tmp_path / "AddressBook.sqlitedb"
    _exec(
        store,
        "CREATE TABLE ABPerson (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, First TEXT, Last TEXT)",
        "CREATE TABLE ABMultiValue (UID INTEGER PRIMARY KEY, record_id INTEGER,"
        " property INTEGER, identifier INTEGER, label INTEGER, value TEXT)",
        "INSERT INTO ABPerson VALUES (7, 'Old', 'Phone')",
        "INSERT INTO ABMultiValue VALUES (1, 7, 3, 0, NULL, '415-555-0123')",
        "INSERT INTO ABMultiValue VALUES (2, 7, 5, 0, NULL, 'not a phone: postal address')",
    )
    (person,) = read_store(store)
    assert person.name == "Old Phone"
    assert person.identifiers == ("+14155550123",)
    assert person.key.startswith("ios:") and person.key.endswith(":row7")


def test_bad_stores_raise_and_read_people_keeps_good_ones(tmp_path: Path) -> None:
    good = tmp_path / "good" / "AddressBook-v22.abcddb"
    write_macos_store(good, [ANN])
    other = tmp_path / "other.sqlite"
    _exec(other, "CREATE TABLE notes (x)")
    garbage = tmp_path / "garbage.abcddb"
    garbage.write_bytes(b"\x00\x01 definitely not sqlite" * 50)
    empty = tmp_path / "empty.abcddb"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.abcddb"
    for bad, reason in [
        (other, "not a Contacts database"),
        (garbage, "not a SQLite database"),
        (empty, "empty"),
        (missing, "not found"),
        (tmp_path, "folder"),
    ]:
        with pytest.raises(AddressBookError, match=reason) as info:
            read_store(bad)
        assert info.value.path == bad
        assert str(info.value).startswith(str(bad))
    people, errors = read_people([other, good, garbage, missing])
    assert [p.name for p in people] == ["Ann Lee"]
    assert [e.path for e in errors] == [other, garbage, missing]


def test_corrupt_sqlite_is_an_addressbook_error(tmp_path: Path) -> None:
    store = tmp_path / "AddressBook-v22.abcddb"
    write_macos_store(store, [ANN, BOB])
    data = bytearray(store.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)  # keep the header, wreck the pages
    store.write_bytes(bytes(data))
    with pytest.raises(AddressBookError):
        read_store(store)


def test_locked_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(addressbook, "BUSY_TIMEOUT_MS", 50)
    store = tmp_path / "AddressBook-v22.abcddb"
    write_macos_store(store, [ANN])
    _exec(store, "PRAGMA journal_mode = DELETE")
    writer = sqlite3.connect(store, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        with pytest.raises(AddressBookError, match="locked"):
            read_store(store)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert [p.name for p in read_store(store)] == ["Ann Lee"]


def test_same_store_twice_keeps_keys_unique(tmp_path: Path) -> None:
    a = tmp_path / "a.abcddb"
    write_macos_store(a, [ANN, BOB])
    b = tmp_path / "b.abcddb"
    b.write_bytes(a.read_bytes())  # e.g. a copy: same Core Data store UUID
    _exec(b, "UPDATE ZABCDRECORD SET ZFIRSTNAME = 'Robert' WHERE ZFIRSTNAME = 'Bob'")
    people, _ = read_people([a, b])
    keys = [p.key for p in people]
    assert len(keys) == len(set(keys)) == 3  # Ann merged, Bob and Robert kept apart
