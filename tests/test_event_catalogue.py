"""The typed event catalogue: what emitters may put on the log, and how stored events read back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from chatstats.db import Database
from chatstats.events import catalogue
from chatstats.events.bus import EventBus, append

pytestmark = pytest.mark.anyio


@pytest.fixture
async def bus(tmp_path: Path):
    db = Database(tmp_path / "events.db")
    await db.open()
    try:
        yield EventBus(db, poll_seconds=None)
    finally:
        db.close()


async def test_a_payload_is_stored_as_its_type_and_fields_and_reads_back_typed(bus):
    sent = catalogue.ConversationSealed(chat_id=3, conversation_id=9, message_count=4)
    event_id = await bus.publish("chat:3", sent)
    (event,) = await bus.read(event_id - 1, timeout=0)
    assert event.type == "conversation_sealed"
    assert event.data == {
        "chat_id": 3,
        "conversation_id": 9,
        "last_message_time": None,
        "message_count": 4,
    }
    assert event.payload == sent


async def test_a_catalogued_type_given_as_a_dict_must_fit_its_shape(bus):
    with pytest.raises(ValueError, match=r"messages_synced.*chat_id"):
        await bus.publish("chat:1", "messages_synced", {"new_message_ids": [1]})
    with pytest.raises(ValueError, match="run_complete"):
        await bus.publish("global", "run_complete", {"run_id": "r", "total": "many"})
    assert await bus.last_id() == 0  # nothing half-written


async def test_a_dict_in_the_catalogued_shape_gets_its_defaults(bus):
    event_id = await bus.publish("chat:1", "messages_synced", {"chat_id": 1})
    (event,) = await bus.read(event_id - 1, timeout=0)
    assert event.data == {
        "chat_id": 1,
        "new_message_ids": [],
        "changed_message_ids": [],
        "conversation_ids": [],
    }


async def test_types_outside_the_catalogue_pass_through_and_decode_to_none(bus):
    event_id = await bus.publish("global", "tick", {"n": 1})
    (event,) = await bus.read(event_id - 1, timeout=0)
    assert event.data == {"n": 1} and event.payload is None


def test_a_stored_event_from_before_a_field_existed_still_decodes(tmp_path):
    """An older daemon wrote `analysis_completed` without the run counters (and a task
    `status` without `attempt`): they read back with the new fields' defaults."""
    old = {
        "chat_id": 1,
        "conversation_id": 2,
        "pass": "basic",
        "pass_version": 1,
        "status": "failed",
    }
    payload = catalogue.decode("analysis_completed", old)
    assert isinstance(payload, catalogue.AnalysisCompleted)
    assert (payload.pass_, payload.status, payload.total, payload.analysis_id) == (
        "basic",
        "failed",
        None,
        None,
    )
    status = catalogue.decode(
        "status", {"task_id": 1, "conversation_id": 2, "chat_id": 3, "pass": "p", "status": "x"}
    )
    assert isinstance(status, catalogue.TaskStatus) and status.attempt is None


def test_a_stored_row_that_no_longer_fits_reads_as_untyped_not_as_an_error():
    assert catalogue.decode("conversation_sealed", {"chat_id": "three"}) is None


def test_payload_and_type_together_are_refused(tmp_path):
    conn = sqlite3.connect(":memory:")
    with pytest.raises(TypeError):
        append(
            conn,
            catalogue.RunSeeded(run_id="r", total=1, pending=1),
            scope="global",
            type="run_seeded",
        )


def test_every_catalogued_type_has_a_distinct_tag_and_encodes_without_text_fields():
    tags = [cls.__struct_config__.tag for cls in catalogue.EventPayload.__args__]
    assert len(tags) == len(set(tags)) == len(catalogue.CATALOGUE)
    for tag, cls in catalogue.CATALOGUE.items():
        fields = {f.encode_name for f in msgspec.structs.fields(cls)}
        # Ids, counts, states: never message text, titles or names.
        assert not fields & {"text", "title", "name", "content", "body"}, tag
