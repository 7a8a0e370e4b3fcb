"""Analysis passes as files: one TOML file in `prompts/` per pass, with its prompt and schema.

Adding a pass is adding a file (then backfilling it), so a file is untrusted input: each is
checked field by field and a broken one is reported, naming the file and the field, and
skipped. It never takes the daemon down, and the other passes keep running.

The output schema is JSON Schema because that is what the model is asked to follow
(`response_format` of type `json_schema`). The answer is checked with a msgspec type built
from the same schema, so what the model is told and what is accepted cannot drift apart.
Only the subset of JSON Schema that structured output uses is understood; anything else is an
error at load time rather than a silently unchecked answer.
"""

from __future__ import annotations

import datetime
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import msgspec

from chatstats import log

logger = log.get(__name__)

TRIGGERS = ("live", "sealed")
STORES = ("commitments",)
PLACEHOLDERS = ("transcript", "message_count", "start_time", "end_time")

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def prompts_dir() -> Path:
    """Pass files ship inside the wheel as chatstats/_prompts, or sit at the repo root."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_prompts"
    return packaged if packaged.is_dir() else here.parent / "prompts"


class PassFileError(Exception):
    """A pass file that cannot be used; the message names the file and the field."""

    def __init__(self, file: str, message: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file = file
        self.message = message


# ---------------------------------------------------------------------------------------------
# The file's shape. Unknown keys are errors: a misspelt `enabeld` must not pass unnoticed.


class _PromptSection(msgspec.Struct, forbid_unknown_fields=True):
    system: str
    user: str


class _PassFile(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    version: int
    category: str
    priority: int
    trigger: str
    enabled: bool
    prompt: _PromptSection
    schema: dict[str, Any]
    description: str = ""
    stores: str | None = None
    max_transcript_tokens: int = 6000
    max_output_tokens: int | None = None


# ---------------------------------------------------------------------------------------------
# What the commitments table needs from an answer (checked against a pass's schema at load).


class Commitment(msgspec.Struct, frozen=True):
    kind: Literal["promise", "request"]
    who: str | None
    what: str
    due: datetime.date | None = None
    status: Literal["open", "done", "cancelled", "unknown"] = "unknown"


class CommitmentsResult(msgspec.Struct, frozen=True):
    commitments: list[Commitment]


_COMMITMENT_ENUMS = {
    "kind": {"promise", "request"},
    "status": {"open", "done", "cancelled", "unknown"},
}


@dataclass(frozen=True, slots=True)
class Pass:
    name: str
    version: int
    category: str
    priority: int
    trigger: str
    enabled: bool
    description: str
    system: str
    user: str
    schema: dict[str, Any]
    output_type: Any
    stores: str | None
    max_transcript_tokens: int
    max_output_tokens: int | None
    file: str

    def render(
        self, transcript: str, *, message_count: int, start_time: str, end_time: str
    ) -> list[dict[str, str]]:
        """The chat messages for the model. The transcript goes in last, so text inside it
        that looks like a placeholder is never substituted."""
        user = self.user
        for key, value in (
            ("message_count", str(message_count)),
            ("start_time", start_time),
            ("end_time", end_time),
        ):
            user = user.replace("{" + key + "}", value)
        user = user.replace("{transcript}", transcript)
        return [
            {"role": "system", "content": self.system.strip()},
            {"role": "user", "content": user.strip()},
        ]

    def check(self, data: Any) -> Any:
        """The answer as this pass's msgspec type; raises msgspec.ValidationError if it does
        not match the schema. Accepts parsed JSON (dict) or raw JSON text."""
        if isinstance(data, str | bytes):
            return msgspec.json.decode(data, type=self.output_type)
        return msgspec.convert(data, self.output_type)

    def normalised(self, data: Any) -> Any:
        """Checked and turned back into plain JSON values, ready to store."""
        return msgspec.to_builtins(self.check(data))

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "category": self.category,
            "priority": self.priority,
            "trigger": self.trigger,
            "enabled": self.enabled,
            "description": self.description,
            "stores": self.stores,
            "file": self.file,
        }


@dataclass(frozen=True, slots=True)
class PassSet:
    """Every pass that loaded, and one error per file that did not."""

    passes: dict[str, Pass]
    errors: list[PassFileError]

    def get(self, name: str) -> Pass | None:
        return self.passes.get(name)

    def enabled(self, trigger: str | None = None) -> list[Pass]:
        out = [p for p in self.passes.values() if p.enabled]
        if trigger is not None:
            out = [p for p in out if p.trigger == trigger]
        return sorted(out, key=lambda p: (p.priority, p.name))

    def all(self) -> list[Pass]:
        return sorted(self.passes.values(), key=lambda p: (p.priority, p.name))


def load_file(path: Path) -> Pass:
    """One pass from its file, or PassFileError naming the file and what is wrong with it."""
    fname = path.name
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PassFileError(fname, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PassFileError(fname, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise PassFileError(fname, f"not valid TOML: {exc}") from None
    try:
        spec = msgspec.convert(raw, _PassFile)
    except msgspec.ValidationError as exc:
        raise PassFileError(fname, _field_message(str(exc))) from None

    if not _NAME.fullmatch(spec.name):
        raise PassFileError(fname, "`name` must be lower case letters, digits and _")
    if spec.name != path.stem:
        raise PassFileError(fname, f"`name` is {spec.name!r} but the file is {path.stem}.toml")
    if spec.version < 1:
        raise PassFileError(fname, "`version` must be 1 or more")
    if spec.trigger not in TRIGGERS:
        raise PassFileError(fname, f"`trigger` must be one of {', '.join(TRIGGERS)}")
    if spec.stores is not None and spec.stores not in STORES:
        raise PassFileError(fname, f"`stores` must be one of {', '.join(STORES)} or absent")
    if not 100 <= spec.max_transcript_tokens <= 1_000_000:
        raise PassFileError(fname, "`max_transcript_tokens` must be from 100 to 1000000")
    if spec.max_output_tokens is not None and spec.max_output_tokens < 1:
        raise PassFileError(fname, "`max_output_tokens` must be 1 or more")
    if not spec.prompt.system.strip():
        raise PassFileError(fname, "`prompt.system` is empty")
    if "{transcript}" not in spec.prompt.user:
        raise PassFileError(fname, "`prompt.user` must contain the {transcript} placeholder")
    if spec.schema.get("type") != "object":
        raise PassFileError(fname, '`schema` must describe an object (type = "object")')
    try:
        output_type = build_type(spec.schema, spec.name)
        msgspec.json.Decoder(output_type)  # rejects unions msgspec cannot decode
    except (SchemaError, TypeError) as exc:
        raise PassFileError(fname, f"`schema`: {exc}") from None
    if spec.stores == "commitments":
        problem = _commitments_problem(spec.schema)
        if problem:
            raise PassFileError(fname, f'`schema` does not fit stores = "commitments": {problem}')
    return Pass(
        name=spec.name,
        version=spec.version,
        category=spec.category,
        priority=spec.priority,
        trigger=spec.trigger,
        enabled=spec.enabled,
        description=spec.description.strip(),
        system=spec.prompt.system,
        user=spec.prompt.user,
        schema=spec.schema,
        output_type=output_type,
        stores=spec.stores,
        max_transcript_tokens=spec.max_transcript_tokens,
        max_output_tokens=spec.max_output_tokens,
        file=fname,
    )


def load(directory: Path | None = None) -> PassSet:
    """Every `*.toml` in the directory. Broken files are logged and listed, never raised."""
    directory = directory or prompts_dir()
    passes: dict[str, Pass] = {}
    errors: list[PassFileError] = []
    if not directory.is_dir():
        errors.append(PassFileError(str(directory), "pass directory not found"))
        logger.error("pass_directory_missing")
        return PassSet(passes, errors)
    for path in sorted(directory.glob("*.toml")):
        try:
            p = load_file(path)
        except PassFileError as exc:
            errors.append(exc)
            # The message names fields and schema keywords from our own files, never user data.
            logger.error("pass_file_invalid", file=exc.file, error=exc.message)
            continue
        passes[p.name] = p
    return PassSet(passes, errors)


def _field_message(text: str) -> str:
    """msgspec says "... - at `$.prompt.user`"; say it as a field name."""
    m = re.match(r"(.*) - at `\$\.?(.*)`$", text)
    if m:
        return f"field `{m.group(2) or '(top level)'}`: {m.group(1)}"
    m = re.match(r"Object missing required field `(.*)`", text)
    if m:
        return f"missing required field `{m.group(1)}`"
    return text


# ---------------------------------------------------------------------------------------------
# JSON Schema (the structured-output subset) → msgspec type.


class SchemaError(ValueError):
    pass


_SCALARS: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}
_ANNOTATIONS = {"description", "title", "examples", "default", "$comment"}
_CONSTRAINTS = {
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_length",
    "maxItems": "max_length",
    "minimum": "ge",
    "maximum": "le",
    "pattern": "pattern",
}
_FORMATS = {"date": datetime.date, "date-time": datetime.datetime}


def build_type(schema: Any, name: str, at: str = "$") -> Any:
    """A msgspec type accepting exactly the JSON values the schema describes."""
    if not isinstance(schema, dict):
        raise SchemaError(f"at {at}: expected a table")
    known = {"type", "enum", "properties", "required", "additionalProperties", "items", "format"}
    unknown = set(schema) - known - _ANNOTATIONS - set(_CONSTRAINTS)
    if unknown:
        raise SchemaError(f"at {at}: unsupported keyword(s) {', '.join(sorted(unknown))}")
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise SchemaError(f"at {at}: enum must be a non-empty list")
        if not all(isinstance(v, str | int | type(None)) for v in values):
            raise SchemaError(f"at {at}: enum values must be strings, integers or null")
        members = [v for v in values if v is not None]
        out: Any = Literal[tuple(members)] if members else type(None)
        if None in values and members:
            out = out | None
        return out
    kinds = schema.get("type")
    if kinds is None:
        raise SchemaError(f"at {at}: missing type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list) or not kinds:
        raise SchemaError(f"at {at}: type must be a name or a list of names")
    options = [_one_type(schema, k, name, at) for k in kinds]
    if len(options) == 1:
        return options[0]
    return Union[tuple(options)]  # noqa: UP007 (built at run time from a list)


def _one_type(schema: dict[str, Any], kind: Any, name: str, at: str) -> Any:
    if kind == "object":
        return _object_type(schema, name, at)
    if kind == "array":
        if "items" not in schema:
            raise SchemaError(f"at {at}: an array needs items")
        item = build_type(schema["items"], name, f"{at}[]")
        return _constrained(list[item], schema, at)  # type: ignore[valid-type]
    if kind == "string" and "format" in schema:
        fmt = schema["format"]
        if fmt not in _FORMATS:
            raise SchemaError(f"at {at}: unsupported format {fmt!r}")
        return _FORMATS[fmt]
    if kind in _SCALARS:
        base = _SCALARS[kind]
        return base if base is type(None) else _constrained(base, schema, at)
    raise SchemaError(f"at {at}: unsupported type {kind!r}")


def _constrained(base: Any, schema: dict[str, Any], at: str) -> Any:
    from typing import Annotated

    kwargs = {_CONSTRAINTS[k]: v for k, v in schema.items() if k in _CONSTRAINTS}
    if not kwargs:
        return base
    try:
        return Annotated[base, msgspec.Meta(**kwargs)]
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"at {at}: {exc}") from None


def _object_type(schema: dict[str, Any], name: str, at: str) -> Any:
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        raise SchemaError(f"at {at}: properties must be a table")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError(f"at {at}: required must be a list of names")
    missing = [r for r in required if r not in props]
    if missing:
        raise SchemaError(f"at {at}: required names unknown properties: {', '.join(missing)}")
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        raise SchemaError(f"at {at}: only additionalProperties = true or false is supported")
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for key, sub in props.items():
        if not _NAME.fullmatch(key) and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SchemaError(f"at {at}: property name {key!r} is not an identifier")
        t = build_type(sub, name, f"{at}.{key}")
        if key in required:
            fields.append((key, t))
        else:
            fields.append((key, t | None, None))
    # Required fields first: a struct cannot put a defaulted field before a required one.
    fields.sort(key=lambda f: len(f) == 3)
    struct_name = f"{name}_{at.replace('$', 'out').replace('.', '_').replace('[]', '_item')}"
    return msgspec.defstruct(struct_name, fields, forbid_unknown_fields=not extra)


def _commitments_problem(schema: dict[str, Any]) -> str | None:
    """Why answers to this schema could not fill the commitments table (None: they can)."""
    outer = schema.get("properties", {}).get("commitments")
    if not isinstance(outer, dict) or outer.get("type") != "array":
        return "needs a `commitments` array"
    items = outer.get("items", {})
    props = items.get("properties", {}) if isinstance(items, dict) else {}
    for key in ("kind", "who", "what", "due", "status"):
        if key not in props:
            return f"commitment items need `{key}`"
    for key, allowed in _COMMITMENT_ENUMS.items():
        values = props[key].get("enum")
        if not values or not set(values) <= allowed:
            return f"`{key}` must be an enum within {sorted(allowed)}"
    if "what" not in items.get("required", []):
        return "`what` must be required"
    return None


def commitments_of(normalised: Any) -> list[Commitment]:
    """The commitments in an answer already checked against a `stores = "commitments"` pass."""
    return msgspec.convert(normalised, CommitmentsResult).commitments
