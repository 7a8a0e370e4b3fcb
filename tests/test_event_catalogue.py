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


def test_the_chatbot_workflow_events_are_catalogued_and_read_back_with_defaults():
    """A turn's five events, as an older daemon stored them (fewer fields) and as a dict of
    the wrong shape: defaults fill in, a wrong shape is refused, naming the field."""
    ids = {"thread_id": 4, "workflow_id": "wf-1"}
    started = catalogue.decode("workflow_started", {**ids, "user_message_id": 7})
    assert isinstance(started, catalogue.WorkflowStarted) and started.model is None
    response = catalogue.decode("model_response", {**ids, "step": 1, "outcome": "ok"})
    assert isinstance(response, catalogue.ModelResponse)
    assert (response.call_id, response.cost, response.latency_ms) == (None, None, None)
    tool = catalogue.decode("tool_called", {**ids, "step": 1, "tool": "search_messages"})
    assert isinstance(tool, catalogue.ToolCalled) and (tool.count, tool.error) == (0, None)
    done = catalogue.decode("workflow_completed", {**ids, "message_id": 8})
    assert isinstance(done, catalogue.WorkflowCompleted) and done.total_tokens == 0
    failed = catalogue.decode("workflow_failed", {**ids, "message_id": 8, "error_code": "x"})
    assert isinstance(failed, catalogue.WorkflowFailed)
    assert (failed.error_code, failed.partial, failed.response_time_ms) == ("x", False, None)
    with pytest.raises(ValueError, match=r"model_response.*step"):
        catalogue.check("model_response", {**ids, "outcome": "ok"})
    with pytest.raises(ValueError, match="workflow_started"):
        catalogue.check("workflow_started", {**ids, "user_message_id": "seven"})


def test_the_api_docs_list_each_workflow_events_fields():
    """docs/api.md's rows for the chatbot's events name exactly the payload's fields (the
    failed row: the completed row's fields plus its own)."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()

    def documented(tag: str) -> set[str]:
        (row,) = [ln for ln in text.splitlines() if ln.startswith(f"| `{tag}` |")]
        braces = re.findall(r"\{([^{}]*)\}", row.split("|")[3])
        return {f.strip() for f in ",".join(braces).split(",") if f.strip()}

    def fields(tag: str) -> set[str]:
        return {f.encode_name for f in msgspec.structs.fields(catalogue.CATALOGUE[tag])}

    for tag in ("workflow_started", "model_response", "tool_called", "workflow_completed"):
        assert documented(tag) == fields(tag), tag
    own = fields("workflow_failed") - fields("workflow_completed")
    assert documented("workflow_failed") == own == {"error_code", "partial"}
