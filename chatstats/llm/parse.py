"""Turning a model's answer into data, with errors that name the shape, never the text."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from chatstats.llm.errors import InvalidOutput

T = TypeVar("T")

_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)


def parse_json(content: str | None) -> object:
    """JSON from a model's answer; a ```json fence around it (local models add one) is fine."""
    if content is None or not content.strip():
        raise InvalidOutput("the model returned no content", detail="InvalidOutput empty")
    text = content
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return msgspec.json.decode(text.strip())
    except msgspec.DecodeError:
        raise InvalidOutput(
            "the model's answer is not valid JSON", detail="InvalidOutput not_json"
        ) from None


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_UNKNOWN_FIELD = re.compile(r"unknown field `[^`]*`")


def validate(data: object, type_: type[T]) -> T:
    """Convert parsed JSON into `type_`, raising InvalidOutput with only the failing path."""
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        # msgspec quotes offending values ("Invalid enum value 'x'"): those are model
        # output, so keep only the shape of the complaint and its JSON path.
        reason = _UNKNOWN_FIELD.sub("unknown field", _QUOTED.sub("…", str(exc)))
        raise InvalidOutput(
            f"the model's answer does not match the schema: {reason}",
            detail="InvalidOutput schema",
        ) from None
