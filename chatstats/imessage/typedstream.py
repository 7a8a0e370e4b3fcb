"""Reader for `message.attributedBody`: NSArchiver typedstreams of NSAttributedString.

The import decodes one blob per message, so `extract_text` first tries a fixed-prefix
fast path that covers what Messages writes almost always, and only falls back to the
generic parser for anything else. Every malformed input ends in `TypedStreamError`, so
callers can fall back to `message.text` with a single `except`. Error messages carry
offsets, never message content. Format notes: shared/reference/typedstream.md.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple
from urllib.parse import urljoin

__all__ = [
    "FILE_TRANSFER_GUID_KEY",
    "PART_KEY",
    "URL",
    "ArchivedObject",
    "AttributedString",
    "Run",
    "TypedStreamError",
    "attachment_guids",
    "extract_text",
    "parse",
]

PART_KEY = "__kIMMessagePartAttributeName"
FILE_TRANSFER_GUID_KEY = "__kIMFileTransferGUIDAttributeName"


class TypedStreamError(ValueError):
    """The blob is not a typedstream we can read; callers fall back to `message.text`."""


class URL(str):
    """An NSURL value; a str subclass so it stays distinguishable from NSString on round trips."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"URL({str.__repr__(self)})"


class Run(NamedTuple):
    start: int  # Python str index (converted from UTF-16 units)
    end: int
    attrs: dict[str, object]


class AttributedString(NamedTuple):
    text: str
    runs: list[Run]


class ArchivedObject(NamedTuple):
    """An object of a class we have no decoder for, kept as its raw groups."""

    classes: tuple[str, ...]  # most derived first
    groups: list[tuple[str, list[object]]]


# --------------------------------------------------------------------------- constants

_HEADER = b"\x04\x0bstreamtyped\x81\xe8\x03"
_SIGNATURE = b"\x04\x0bstreamtyped"

_I16 = 0x81
_I32 = 0x82
_FLOAT = 0x83
_NEW = 0x84
_NIL = 0x85
_END = 0x86
_I64 = 0x87  # crabstep extension for 64-bit NSNumbers
_REF_BIAS = 110

_MAX_DEPTH = 40  # objects nested in objects; real bodies nest 4 deep at most
_MAX_TYPE_DEPTH = 16
_MAX_CHAIN = 64

_s16 = struct.Struct("<h").unpack_from
_u16 = struct.Struct("<H").unpack_from
_s32 = struct.Struct("<i").unpack_from
_u32 = struct.Struct("<I").unpack_from
_s64 = struct.Struct("<q").unpack_from
_u64 = struct.Struct("<Q").unpack_from
_f32 = struct.Struct("<f").unpack_from
_f64 = struct.Struct("<d").unpack_from

# What Messages writes before the text length, byte for byte (checked against the writer in
# tests): header, root object with its class chain, backing-string object with its chain,
# then the literal "+" type string.
_MUTABLE_PREFIX = (
    _HEADER + b"\x84\x01@"
    b"\x84\x84\x84\x19NSMutableAttributedString\x00"
    b"\x84\x84\x12NSAttributedString\x00"
    b"\x84\x84\x08NSObject\x00\x85"
    b"\x92\x84\x84\x84\x0fNSMutableString\x01"
    b"\x84\x84\x08NSString\x01\x95"
    b"\x84\x01+"
)
_PLAIN_PREFIX = (
    _HEADER + b"\x84\x01@"
    b"\x84\x84\x84\x12NSAttributedString\x00"
    b"\x84\x84\x08NSObject\x00\x85"
    b"\x92\x84\x84\x84\x08NSString\x01\x94"
    b"\x84\x01+"
)
_MUTABLE_LEN = len(_MUTABLE_PREFIX)
_PLAIN_LEN = len(_PLAIN_PREFIX)
_RUNS_START = b"\x84\x02iI"


# --------------------------------------------------------------------------- fast path


def _fast_text(blob: bytes) -> str | None:
    """Text of a blob in Messages' usual shape, or None to send it to the full parser.

    The prefix pins every byte before the length, so the text cannot be misread; the
    END byte after the slice, the start of the runs (or the closing END) and strict UTF-8
    catch lengths that do not fit. Anything unexpected returns None, never a guess.
    """
    if type(blob) is not bytes:
        return None
    if blob.startswith(_MUTABLE_PREFIX):
        p = _MUTABLE_LEN
    elif blob.startswith(_PLAIN_PREFIX):
        p = _PLAIN_LEN
    else:
        return None
    size = len(blob)
    if p + 3 > size:
        return None
    head = blob[p]
    if head < 0x80:
        start = p + 1
        end = start + head
    elif head == _I16:
        start = p + 3
        end = start + (blob[p + 1] | blob[p + 2] << 8)
    elif head == _I32:
        start = p + 5
        if start > size:
            return None
        end = start + int.from_bytes(blob[p + 1 : start], "little")
    else:
        return None
    if (
        end + 1 < size
        and blob[end] == _END
        and blob[-1] == _END
        and (blob[end + 1 : end + 5] == _RUNS_START or end + 2 == size)
    ):
        try:
            return blob[start:end].decode("utf-8")
        except UnicodeDecodeError:
            pass
    return _fast_overrun_text(blob, start, end)


def _fast_overrun_text(blob: bytes, start: int, end: int) -> str | None:
    """Text of a usual-shape blob whose length prefix overruns the string, or None.

    Messages.app writes some bodies whose declared length runs past the text, into the
    runs or past the blob. The END that closes the string is never valid UTF-8 where a
    character may start, so the first byte a strict decoder rejects is where the text
    ends; the same checks as for an honest length then vouch for what follows it.
    """
    size = len(blob)
    try:
        blob[start:end].decode("utf-8")  # slicing stops at the blob's end: never past it
    except UnicodeDecodeError as exc:
        stop = start + exc.start
    else:
        return None  # no byte the text cannot hold: a length too short, or a truncation
    if stop + 1 >= size or blob[stop] != _END or blob[-1] != _END:
        return None
    if blob[stop + 1 : stop + 5] != _RUNS_START and stop + 2 != size:
        return None
    return blob[start:stop].decode("utf-8")


# --------------------------------------------------------------------------- type encodings

_SCALARS = frozenset("cCBsSiIlLqQfd*@#:%+!")
_QUALIFIERS = frozenset("rnNoORV")
_TYPE_CACHE: dict[bytes, tuple[object, ...]] = {}


def _min_size(spec: object) -> int:
    if type(spec) is str:
        return 0 if spec == "!" else 1  # "!" is an ignored field with no bytes
    if spec[0] == "[":  # type: ignore[index]
        return spec[1] * _min_size(spec[2])  # type: ignore[index]
    return sum(_min_size(f) for f in spec[1])  # type: ignore[index,misc]


def _parse_one(s: str, pos: int, depth: int) -> tuple[object, int]:
    if depth > _MAX_TYPE_DEPTH:
        raise TypedStreamError("type encoding nested too deeply")
    c = s[pos]
    if c in _SCALARS:
        return c, pos + 1
    if c in _QUALIFIERS:
        return _parse_one(s, pos + 1, depth + 1)
    if c == "[":
        j = pos + 1
        while s[j].isdigit():
            j += 1
        if j == pos + 1:
            raise TypedStreamError("array type without a count")
        count = int(s[pos + 1 : j])
        elem, j = _parse_one(s, j, depth + 1)
        if s[j] != "]":
            raise TypedStreamError("unterminated array type")
        if count and _min_size(elem) == 0:
            raise TypedStreamError("array of empty elements")
        return ("[", count, elem), j + 1
    if c == "{":
        j = pos + 1
        while s[j] not in "=}":
            j += 1
        fields = []
        if s[j] == "=":
            j += 1
            while s[j] != "}":
                field, j = _parse_one(s, j, depth + 1)
                fields.append(field)
        return ("{", tuple(fields)), j + 1
    raise TypedStreamError(f"unsupported type code {c!r}")


def _type_specs(raw: bytes) -> tuple[object, ...]:
    specs = _TYPE_CACHE.get(raw)
    if specs is None:
        s = raw.decode("ascii")
        out = []
        pos = 0
        while pos < len(s):
            spec, pos = _parse_one(s, pos, 0)
            out.append(spec)
        if not out:
            raise TypedStreamError("empty type encoding")
        specs = tuple(out)
        if len(raw) <= 64:  # hostile input must not grow the cache without bound
            if len(_TYPE_CACHE) >= 4096:
                _TYPE_CACHE.clear()
            _TYPE_CACHE[raw] = specs
    return specs


# --------------------------------------------------------------------------- full parser


class _Chain:
    """Object-table entry for a class: its name, its superclasses' names, its decoder."""

    __slots__ = ("decode", "names")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.decode = _decoder_for(names)


class _CStr(bytes):
    """Object-table entry for a C string, kept apart from NSData values (also bytes)."""

    __slots__ = ()


_PENDING = object()  # object-table slot of an object whose contents are still being read

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


class _Parser:
    __slots__ = ("data", "depth", "objects", "pos", "shared", "size")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.pos = 0
        self.shared: list[bytes] = []
        self.objects: list[object] = []
        self.depth = 0

    # -- integers

    def _int(self) -> int:
        data = self.data
        pos = self.pos
        head = data[pos]
        if head < 0x80:
            self.pos = pos + 1
            return head
        if head >= 0x92:
            self.pos = pos + 1
            return head - 256
        if head == _I16:
            self.pos = pos + 3
            return _s16(data, pos + 1)[0]
        if head == _I32:
            self.pos = pos + 5
            return _s32(data, pos + 1)[0]
        if head == _I64:
            self.pos = pos + 9
            return _s64(data, pos + 1)[0]
        raise TypedStreamError(f"unexpected tag 0x{head:02x} at offset {pos}")

    def _uint(self) -> int:
        data = self.data
        pos = self.pos
        head = data[pos]
        if head < 0x80 or head >= 0x92:
            self.pos = pos + 1
            return head
        if head == _I16:
            self.pos = pos + 3
            return _u16(data, pos + 1)[0]
        if head == _I32:
            self.pos = pos + 5
            return _u32(data, pos + 1)[0]
        if head == _I64:
            self.pos = pos + 9
            return _u64(data, pos + 1)[0]
        raise TypedStreamError(f"unexpected tag 0x{head:02x} at offset {pos}")

    def _ref(self) -> int:
        index = self._int() + _REF_BIAS
        if index < 0:
            raise TypedStreamError(f"negative reference before offset {self.pos}")
        return index

    def _float(self, code: str) -> float:
        data = self.data
        pos = self.pos
        if data[pos] == _FLOAT:
            if code == "f":
                self.pos = pos + 5
                return _f32(data, pos + 1)[0]
            self.pos = pos + 9
            return _f64(data, pos + 1)[0]
        return float(self._int())

    def _bytes(self, n: int) -> bytes:
        pos = self.pos
        end = pos + n
        if end > self.size:
            raise TypedStreamError(f"length {n} at offset {pos} runs past the end")
        self.pos = end
        return self.data[pos:end]

    # -- strings

    def _text(self) -> str | None:
        """An NSString's `+` payload as text, bounded by its END when the length overruns.

        Messages.app writes some strings whose length prefix runs past the text (into the
        runs, or past the blob). An honest length always yields valid UTF-8, and the END
        (0x86) after the text can never start a UTF-8 character; so when the declared
        bytes do not decode, the text ends at the first rejected byte if that byte is the
        END, and the object reader goes on from there as it would after an honest length.
        """
        data = self.data
        pos = self.pos
        if data[pos] == _NIL:
            self.pos = pos + 1
            return None
        n = self._uint()
        start = self.pos
        end = start + n
        raw = data[start:end]  # slicing stops at the blob's end: never past it
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            stop = start + exc.start
            if data[stop] != _END:
                raise TypedStreamError(f"NSString at offset {start} is not UTF-8") from None
            self.pos = stop
            return raw[: exc.start].decode("utf-8")
        if end > self.size:
            raise TypedStreamError(f"length {n} at offset {start} runs past the end")
        self.pos = end
        return text

    def _shared(self) -> bytes | None:
        head = self.data[self.pos]
        if head == _NEW:
            self.pos += 1
            value = self._bytes(self._uint())
            self.shared.append(value)
            return value
        if head == _NIL:
            self.pos += 1
            return None
        return self.shared[self._ref()]

    def _cstring(self) -> _CStr | None:
        head = self.data[self.pos]
        if head == _NEW:
            self.pos += 1
            raw = self._shared()
            if raw is None:
                raise TypedStreamError("nil C string contents")
            value = _CStr(raw)
            self.objects.append(value)
            return value
        if head == _NIL:
            self.pos += 1
            return None
        value = self.objects[self._ref()]  # type: ignore[assignment]
        if type(value) is not _CStr:
            raise TypedStreamError("C string reference to a non-string")
        return value

    # -- classes and objects

    def _class_chain(self) -> _Chain | None:
        data = self.data
        objects = self.objects
        head = data[self.pos]
        if head >= 0x92:  # the usual case: a class already in the table
            self.pos += 1
            entry = objects[head - 0x92]
            if type(entry) is not _Chain:
                raise TypedStreamError("class reference to a non-class")
            return entry
        names: list[str] = []
        slots: list[int] = []
        while True:
            head = data[self.pos]
            if head == _NEW:
                self.pos += 1
                raw = self._shared()
                if raw is None:
                    raise TypedStreamError("nil class name")
                names.append(raw.decode("utf-8"))
                self._int()  # class version: no class we decode changes layout by version
                slots.append(len(objects))
                objects.append(_PENDING)
                if len(names) > _MAX_CHAIN:
                    raise TypedStreamError("class chain too long")
            elif head == _NIL:
                self.pos += 1
                tail: tuple[str, ...] = ()
                break
            else:
                entry = objects[self._ref()]
                if type(entry) is not _Chain:
                    raise TypedStreamError("class reference to a non-class")
                tail = entry.names
                break
        if not names:
            return _Chain(tail) if tail else None
        for k, slot in enumerate(slots):
            objects[slot] = _Chain((*names[k:], *tail))
        return objects[slots[0]]  # type: ignore[return-value]

    def _object(self) -> object:
        data = self.data
        head = data[self.pos]
        objects = self.objects
        if head != _NEW:
            if head == _NIL:
                self.pos += 1
                return None
            value = objects[self._ref()]
            if value is _PENDING or type(value) is _Chain or type(value) is _CStr:
                raise TypedStreamError("object reference to a class or an unfinished object")
            return value
        self.pos += 1
        slot = len(objects)
        objects.append(_PENDING)
        chain = self._class_chain()
        if chain is None:
            raise TypedStreamError("object without a class")
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise TypedStreamError("objects nested too deeply")
        shared = self.shared
        is_string = chain.decode is _decode_string
        groups: list[tuple[bytes, list[object]]] = []
        while True:
            head = data[self.pos]
            if head >= 0x92:  # the usual case: a type string already in the table
                self.pos += 1
                raw = shared[head - 0x92]
            elif head == _END:
                break
            else:
                raw = self._shared()  # type: ignore[assignment]
                if raw is None:
                    raise TypedStreamError("nil type encoding")
            if is_string and raw == b"+":
                groups.append((raw, [self._text()]))
                continue
            specs = _TYPE_CACHE.get(raw) or _type_specs(raw)
            if len(specs) == 1:
                groups.append((raw, [self._value(specs[0])]))
            else:
                groups.append((raw, [self._value(spec) for spec in specs]))
        self.pos += 1
        self.depth -= 1
        value = chain.decode(chain.names, groups)
        objects[slot] = value
        return value

    def _value(self, spec: object) -> object:
        if type(spec) is str:
            if spec == "@":
                return self._object()
            if spec in "isql":
                return self._int()
            if spec in "ISQL":
                return self._uint()
            if spec == "+":
                if self.data[self.pos] == _NIL:
                    self.pos += 1
                    return None
                return self._bytes(self._uint())
            if spec == "*":
                return self._cstring()
            if spec in "cCB":
                value = self.data[self.pos]
                self.pos += 1
                if spec == "c":
                    return value - 256 if value > 127 else value
                return value if spec == "C" else value != 0
            if spec in "fd":
                return self._float(spec)
            if spec == "#":
                chain = self._class_chain()
                return None if chain is None else chain.names
            if spec == "!":
                return None
            return self._shared()  # ":" selector or "%" atom
        if spec[0] == "[":  # type: ignore[index]
            count: int
            elem: object
            _, count, elem = spec  # type: ignore[misc]
            if elem == "c" or elem == "C":
                return self._bytes(count)
            if count * _min_size(elem) > self.size - self.pos:
                raise TypedStreamError(f"array of {count} runs past the end")
            return [self._value(elem) for _ in range(count)]
        return tuple(self._value(field) for field in spec[1])  # type: ignore[index]

    def root(self) -> object:
        data = self.data
        if not data.startswith(_SIGNATURE):
            raise TypedStreamError("not a little-endian typedstream (bad header)")
        self.pos = len(_SIGNATURE)
        self._int()  # system version: 1000 in every Messages blob, not load-bearing
        raw = self._shared()
        if raw != b"@":
            raise TypedStreamError("root value is not an object")
        value = self._object()
        if self.pos != self.size:
            raise TypedStreamError(f"{self.size - self.pos} trailing bytes after the root object")
        return value


# --------------------------------------------------------------------------- class decoders


def _only_objects(groups: list[tuple[bytes, list[object]]]) -> list[object]:
    out: list[object] = []
    for raw, values in groups:
        if raw.strip(b"@"):
            raise TypedStreamError("collection element is not an object")
        out.extend(values)
    return out


def _count(group: tuple[bytes, list[object]]) -> int:
    raw, values = group
    if raw not in (b"i", b"I", b"q", b"Q", b"l", b"L") or len(values) != 1:
        raise TypedStreamError("collection without a count")
    return values[0]  # type: ignore[return-value]


def _decode_string(chain, groups):
    if len(groups) != 1 or groups[0][0] != b"+" or len(groups[0][1]) != 1:
        raise TypedStreamError("unexpected NSString layout")
    text = groups[0][1][0]
    if text is None:
        raise TypedStreamError("nil NSString contents")
    return text  # decoded strictly by `_Parser._text`: invalid UTF-8 never becomes text


def _decode_number(chain, groups):
    if len(groups) != 2 or groups[0][0] != b"*" or len(groups[1][1]) != 1:
        raise TypedStreamError("unexpected NSNumber layout")
    encoding = groups[0][1][0]
    if encoding != groups[1][0]:
        raise TypedStreamError("NSNumber value does not match its encoding")
    value = groups[1][1][0]
    if encoding == b"c" and value in (0, 1):
        return bool(value)  # +[NSNumber numberWithBool:] archives as "c"
    if type(value) not in (int, bool, float):
        raise TypedStreamError("NSNumber value is not a number")
    return value


def _decode_dictionary(chain, groups):
    if not groups:
        raise TypedStreamError("NSDictionary without a count")
    count = _count(groups[0])
    items = _only_objects(groups[1:])
    if len(items) != 2 * count:
        raise TypedStreamError("NSDictionary count does not match its entries")
    return dict(zip(items[::2], items[1::2], strict=True))


def _decode_array(chain, groups):
    if not groups:
        raise TypedStreamError("collection without a count")
    count = _count(groups[0])
    items = _only_objects(groups[1:])
    if len(items) != count:
        raise TypedStreamError("collection count does not match its elements")
    return items


def _decode_url(chain, groups):
    flags = groups[0] if groups else (b"", [])
    if flags[0] not in (b"c", b"C", b"B") or len(flags[1]) != 1:
        raise TypedStreamError("unexpected NSURL layout")
    parts = _only_objects(groups[1:])
    if len(parts) != (2 if flags[1][0] else 1):
        raise TypedStreamError("unexpected NSURL layout")
    if not all(type(p) in (str, URL) for p in parts):
        raise TypedStreamError("NSURL parts are not strings")
    if len(parts) == 2:
        return URL(urljoin(parts[0], parts[1]))  # type: ignore[type-var]
    return URL(parts[0])


def _decode_data(chain, groups):
    if not groups:
        raise TypedStreamError("NSData without a length")
    length = _count(groups[0])
    if length == 0 and len(groups) == 1:
        return b""
    if len(groups) != 2 or len(groups[1][1]) != 1:
        raise TypedStreamError("unexpected NSData layout")
    value = groups[1][1][0]
    if type(value) is not bytes or len(value) != length:
        raise TypedStreamError("NSData length does not match its bytes")
    return value


def _decode_attributed(chain, groups) -> AttributedString:
    if not groups or groups[0][0] != b"@" or len(groups[0][1]) != 1:
        raise TypedStreamError("attributed string without its string")
    text = groups[0][1][0]
    if type(text) is not str:
        raise TypedStreamError("attributed string backing is not a string")
    dicts: dict[int, dict[object, object]] = {}
    lengths: list[int] = []
    numbers: list[int] = []
    i = 1
    n = len(groups)
    while i < n:
        raw, values = groups[i]
        if raw != b"iI":
            raise TypedStreamError("unexpected group in attributed string runs")
        number, length = values
        i += 1
        if number not in dicts:
            if i >= n or groups[i][0] != b"@" or len(groups[i][1]) != 1:
                raise TypedStreamError("new attribute number without its dictionary")
            attrs = groups[i][1][0]
            if attrs is None:
                attrs = {}
            elif type(attrs) is not dict:
                raise TypedStreamError("attributes are not a dictionary")
            dicts[number] = attrs
            i += 1
        numbers.append(number)
        lengths.append(length)
    bounds = _python_bounds(text, lengths)
    runs = []
    start = 0
    for number, end in zip(numbers, bounds, strict=True):
        runs.append(Run(start, end, dict(dicts[number])))  # type: ignore[arg-type]
        start = end
    return AttributedString(text, runs)


def _python_bounds(text: str, lengths: list[int]) -> list[int]:
    """Map cumulative UTF-16 run ends to Python indexes (astral chars are two units)."""
    astral = [] if text.isascii() else [m.start() for m in _ASTRAL.finditer(text)]
    total = len(text) + len(astral)
    out = []
    units = 0
    k = 0  # astral characters before the current boundary
    n_astral = len(astral)
    for length in lengths:
        units += length
        if units > total:
            raise TypedStreamError("attribute runs longer than the text")
        while k < n_astral and astral[k] + k < units:
            if astral[k] + k + 1 == units:
                raise TypedStreamError("attribute run ends inside a surrogate pair")
            k += 1
        out.append(units - k)
    if units != total:
        raise TypedStreamError("attribute runs do not cover the text")
    return out


_DECODERS = {
    "NSString": _decode_string,
    "NSMutableString": _decode_string,
    "NSAttributedString": _decode_attributed,
    "NSMutableAttributedString": _decode_attributed,
    "NSNumber": _decode_number,
    "NSDictionary": _decode_dictionary,
    "NSMutableDictionary": _decode_dictionary,
    "NSArray": _decode_array,
    "NSMutableArray": _decode_array,
    "NSSet": _decode_array,
    "NSMutableSet": _decode_array,
    "NSURL": _decode_url,
    "NSData": _decode_data,
    "NSMutableData": _decode_data,
}


def _decode_unknown(names: tuple[str, ...], groups: list[tuple[bytes, list[object]]]) -> object:
    return ArchivedObject(names, [(raw.decode("ascii"), values) for raw, values in groups])


def _decoder_for(names: tuple[str, ...]):
    for name in names:
        decoder = _DECODERS.get(name)
        if decoder is not None:
            return decoder
    return _decode_unknown


# --------------------------------------------------------------------------- public API


def parse(blob: bytes) -> AttributedString:
    """Decode the whole blob; any defect raises TypedStreamError, never a guess."""
    if type(blob) is bytes:
        data = blob
    elif isinstance(blob, bytes | bytearray | memoryview):
        data = bytes(blob)
    else:
        raise TypedStreamError(f"expected bytes, got {type(blob).__name__}")
    try:
        value = _Parser(data).root()
    except TypedStreamError:
        raise
    except Exception as exc:  # IndexError, struct.error, UnicodeDecodeError, RecursionError...
        # Every defect must reach callers as TypedStreamError; the cause stays chained.
        raise TypedStreamError(f"malformed typedstream ({type(exc).__name__})") from exc
    if type(value) is not AttributedString:
        raise TypedStreamError("root object is not an NSAttributedString")
    return value


def extract_text(blob: bytes) -> str:
    """Apple's text exactly (U+FFFC placeholders included); the import's hot path."""
    text = _fast_text(blob)
    if text is not None:
        return text
    return parse(blob).text


def attachment_guids(blob: bytes) -> list[str]:
    """`attachment.guid`s in the order their placeholders appear in the text."""
    guids = []
    for run in parse(blob).runs:
        guid = run.attrs.get(FILE_TRANSFER_GUID_KEY)
        if type(guid) is str:
            guids.append(guid)
    return guids
