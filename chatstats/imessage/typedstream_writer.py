"""NSArchiver typedstream writer for NSAttributedString (fixtures and the sample library).

Real chat.db blobs cannot ship with the project, so generated ones must carry the same
bytes Messages writes: one shared-string table and one object table, literals written once
and back-referenced afterwards, 0x81/0x82 length prefixes, attribute dictionaries numbered
in order of first use. The reader's fast path depends on that exact shape, and the test of
the real `AttributedBodyTextOnly` blob pins it. Format: shared/reference/typedstream.md.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

from chatstats.imessage.typedstream import PART_KEY, URL

__all__ = ["HEADER", "URL", "corrupt_variants", "encode_attributed_string", "utf16_len"]

HEADER = b"\x04\x0bstreamtyped\x81\xe8\x03"

_NEW = 0x84
_NIL = 0x85
_END = 0x86
_REF_BIAS = 110

# Class versions as they appear in Messages blobs.
_VERSIONS = {
    "NSMutableAttributedString": 0,
    "NSAttributedString": 0,
    "NSObject": 0,
    "NSMutableString": 1,
    "NSString": 1,
    "NSDictionary": 0,
    "NSArray": 0,
    "NSNumber": 0,
    "NSValue": 0,
    "NSURL": 0,
    "NSData": 0,
}

_pack_h = struct.Struct("<h").pack
_pack_i = struct.Struct("<i").pack
_pack_I = struct.Struct("<I").pack
_pack_q = struct.Struct("<q").pack
_pack_d = struct.Struct("<d").pack


def utf16_len(text: str) -> int:
    """Length in the units run lengths (and chat.db offsets) are counted in."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _freeze(value: Any) -> Any:
    """Hashable identity for attribute dicts, equal when the dicts are equal.

    Key order is ignored (NSDictionary equality), but the type is kept, so 1, True and 1.0
    differ: they archive as different NSNumber encodings.
    """
    if isinstance(value, Mapping):
        return ("dict", frozenset((_freeze(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("list", tuple(_freeze(v) for v in value))
    return (type(value).__name__, value)


class _Writer:
    def __init__(self, part_encoding: str) -> None:
        self.out = bytearray(HEADER)
        self.shared: dict[bytes, int] = {}
        self.n_objects = 0
        self.classes: dict[str, int] = {}
        self.cstrings: dict[bytes, int] = {}
        self.numbers: dict[tuple[str, str, Any], int] = {}
        self.part_encoding = part_encoding

    # -- primitives

    def int_(self, value: int) -> None:
        out = self.out
        if -110 <= value <= 127:
            out.append(value & 0xFF)
        elif -32768 <= value <= 32767:
            out.append(0x81)
            out += _pack_h(value)
        elif -(2**31) <= value < 2**31:
            out.append(0x82)
            out += _pack_i(value)
        elif -(2**63) <= value < 2**63:
            out.append(0x87)  # crabstep's 64-bit tag; no real sample needs it
            out += _pack_q(value)
        else:
            raise ValueError("integer does not fit in 64 bits")

    def uint(self, value: int) -> None:
        """Lengths and unsigned values; readers take 0x81/0x82 payloads as unsigned."""
        if value < 0:
            raise ValueError("negative length")
        if value < 2**31:
            self.int_(value)
        elif value < 2**32:
            self.out.append(0x82)
            self.out += _pack_I(value)
        else:
            raise ValueError("length does not fit in 32 bits")

    def ref(self, index: int) -> None:
        self.int_(index - _REF_BIAS)

    def shared_string(self, raw: bytes) -> None:
        index = self.shared.get(raw)
        if index is not None:
            self.ref(index)
            return
        self.shared[raw] = len(self.shared)
        self.out.append(_NEW)
        self.uint(len(raw))
        self.out += raw

    def types(self, encoding: str) -> None:
        self.shared_string(encoding.encode("ascii"))

    def cstring(self, raw: bytes) -> None:
        index = self.cstrings.get(raw)
        if index is not None:
            self.ref(index)
            return
        self.out.append(_NEW)
        self.cstrings[raw] = self.new_index()
        self.shared_string(raw)

    def new_index(self) -> int:
        index = self.n_objects
        self.n_objects += 1
        return index

    def class_chain(self, names: tuple[str, ...]) -> None:
        for name in names:
            index = self.classes.get(name)
            if index is not None:
                self.ref(index)
                return
            self.out.append(_NEW)
            self.classes[name] = self.new_index()
            self.shared_string(name.encode("utf-8"))
            self.int_(_VERSIONS.get(name, 0))
        self.out.append(_NIL)

    def begin(self, *names: str) -> None:
        self.out.append(_NEW)
        self.new_index()
        self.class_chain(names)

    # -- objects

    def object(self, value: Any, int_encoding: str = "q") -> None:
        if value is None:
            self.out.append(_NIL)
        elif isinstance(value, URL):
            self.url(value)
        elif isinstance(value, str):
            self.string(value, mutable=False)
        elif isinstance(value, bool):
            self.number(value, "c")
        elif isinstance(value, int):
            self.number(value, int_encoding)
        elif isinstance(value, float):
            self.number(value, "d")
        elif isinstance(value, bytes | bytearray):
            self.data(bytes(value))
        elif isinstance(value, Mapping):
            self.dictionary(value)
        elif isinstance(value, list | tuple):
            self.array(value)
        else:
            raise TypeError(f"cannot archive {type(value).__name__}")

    def string(self, text: str, *, mutable: bool, overrun: int = 0) -> None:
        raw = text.encode("utf-8")  # lone surrogates raise: NSString cannot archive them either
        if mutable:
            self.begin("NSMutableString", "NSString", "NSObject")
        else:
            self.begin("NSString", "NSObject")
        self.types("+")
        self.uint(len(raw) + overrun)
        self.out += raw
        self.out.append(_END)

    def number(self, value: bool | int | float, encoding: str) -> None:
        # Messages shares NSNumber objects (small ones are cached singletons in Foundation),
        # so an equal number later in the blob is an object back-reference.
        key = (type(value).__name__, encoding, value)
        index = self.numbers.get(key)
        if index is not None:
            self.ref(index)
            return
        self.out.append(_NEW)
        self.numbers[key] = self.new_index()
        self.class_chain(("NSNumber", "NSValue", "NSObject"))
        self.types("*")
        self.cstring(encoding.encode("ascii"))
        self.types(encoding)
        if encoding == "c":
            self.out.append(int(value) & 0xFF)
        elif encoding == "d":
            # Integral doubles are stored as plain integers, as in real data (1139.0).
            if (
                math.isfinite(value)
                and value == int(value)
                and -(2**31) <= value < 2**31
                and not (value == 0 and math.copysign(1.0, value) < 0)
            ):
                self.int_(int(value))
            else:
                self.out.append(0x83)
                self.out += _pack_d(value)
        else:
            if isinstance(value, float):
                raise TypeError("float value for an integer NSNumber")
            self.int_(int(value))
        self.out.append(_END)

    def url(self, value: URL) -> None:
        self.begin("NSURL", "NSObject")
        self.types("c")
        self.out.append(0)  # not relative: no base URL follows
        self.types("@")
        self.string(str(value), mutable=False)
        self.out.append(_END)

    def data(self, value: bytes) -> None:
        self.begin("NSData", "NSObject")
        self.types("i")
        self.int_(len(value))
        self.types(f"[{len(value)}c]")
        self.out += value
        self.out.append(_END)

    def dictionary(self, value: Mapping[Any, Any]) -> None:
        self.begin("NSDictionary", "NSObject")
        self.types("i")
        self.int_(len(value))
        for key, item in value.items():
            self.types("@")
            self.object(key)
            self.types("@")
            self.object(item, self.part_encoding if key == PART_KEY else "q")
        self.out.append(_END)

    def array(self, value: list[Any] | tuple[Any, ...]) -> None:
        self.begin("NSArray", "NSObject")
        self.types("i")
        self.int_(len(value))
        for item in value:
            self.types("@")
            self.object(item)
        self.out.append(_END)


def encode_attributed_string(
    text: str,
    runs: list[tuple[int, dict[str, object]]] | None = None,
    *,
    mutable: bool = True,
    part_encoding: str = "i",
    length_overrun: int = 0,
) -> bytes:
    """Archive `text` as Messages does; `runs` are (UTF-16 length, attributes) pairs.

    Equal attribute dicts share one dictionary number and are written once. Without
    `runs`, one run with `{__kIMMessagePartAttributeName: 0}` covers the text (none if the
    text is empty). Run lengths must add up to the UTF-16 length of `text`.

    `length_overrun` > 0 declares the text `length_overrun` bytes longer than it is, the
    shape some real Messages.app bodies have: the declared length runs into the runs and
    dictionaries that follow the text, or past the end of the blob. Every other byte is
    the honest blob's (the length prefix widens when the larger value needs it).
    """
    if part_encoding not in ("i", "q", "s", "l"):
        raise ValueError(f"unsupported part encoding {part_encoding!r}")
    if length_overrun < 0:
        raise ValueError("length_overrun must not be negative")
    total = utf16_len(text)
    if runs is None:
        runs = [(total, {PART_KEY: 0})] if total else []
    if sum(length for length, _ in runs) != total:
        raise ValueError("run lengths do not add up to the UTF-16 length of the text")
    w = _Writer(part_encoding)
    w.types("@")
    if mutable:
        w.begin("NSMutableAttributedString", "NSAttributedString", "NSObject")
    else:
        w.begin("NSAttributedString", "NSObject")
    w.types("@")
    w.string(text, mutable=mutable, overrun=length_overrun)
    numbers: dict[Any, int] = {}
    for length, attrs in runs:
        frozen = _freeze(attrs)
        number = numbers.get(frozen)
        w.types("iI")
        if number is None:
            number = numbers[frozen] = len(numbers) + 1
            w.int_(number)
            w.uint(length)
            w.types("@")
            w.dictionary(attrs)
        else:
            w.int_(number)
            w.uint(length)
    w.out.append(_END)
    return bytes(w.out)


def corrupt_variants(blob: bytes, rng: Any) -> bytes:
    """A damaged copy of `blob` (always different from it) for bad-input tests.

    `rng` is a `random.Random`. Damage kinds: truncation, flipped bytes, a wrong header,
    garbage inserted or appended, a length byte forced to a tag, a span deleted.
    """
    data = bytearray(blob)
    kind = rng.randrange(7) if data else 4
    if kind == 0 and len(data) > 1:
        del data[rng.randrange(1, len(data)) :]
    elif kind == 1:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            data[i] ^= rng.randint(1, 255)
    elif kind == 2:
        i = rng.randrange(min(16, len(data)))
        data[i] ^= rng.randint(1, 255)
    elif kind == 3 and len(data) > 1:
        i = rng.randrange(len(data))
        data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif kind == 4:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif kind == 5:
        i = rng.randrange(len(data))
        data[i] = rng.choice((0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x91))
    elif len(data) > 1:
        i = rng.randrange(len(data) - 1)
        del data[i : rng.randrange(i + 1, len(data) + 1)]
    out = bytes(data)
    if out == blob:  # a flip to the same tag byte, or a tiny blob: damage it for sure
        out = blob[:-1] if blob else b"\x00"
    return out
