"""typedstream reader and writer: the real-blob anchor, round trips, and hostile input."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatstats.imessage import typedstream as ts
from chatstats.imessage.typedstream import (
    FILE_TRANSFER_GUID_KEY,
    PART_KEY,
    URL,
    AttributedString,
    Run,
    TypedStreamError,
    _fast_text,
    attachment_guids,
    extract_text,
    parse,
)
from chatstats.imessage.typedstream_writer import (
    _Writer,
    corrupt_variants,
    encode_attributed_string,
    utf16_len,
)

# The real `AttributedBodyTextOnly` blob (233 bytes), written out from the walk-through in
# shared/reference/typedstream.md §5, one line per listed offset.
REAL_TEXT_ONLY = (
    b"\x04\x0bstreamtyped\x81\xe8\x03"  # 00 header
    b"\x84\x01@"  # 10 S0 "@"
    b"\x84"  # 13 O0 attributed string
    b"\x84\x84\x19NSMutableAttributedString\x00"  # 14 O1
    b"\x84\x84\x12NSAttributedString\x00"  # 31 O2
    b"\x84\x84\x08NSObject\x00"  # 47 O3
    b"\x85"  # 53 end of chain
    b"\x92"  # 54 type ref S0
    b"\x84"  # 55 O4 NSMutableString
    b"\x84\x84\x0fNSMutableString\x01"  # 56 O5
    b"\x84\x84\x08NSString\x01"  # 69 O6
    b"\x95"  # 75 superclass O3
    b"\x84\x01+"  # 76 S6 "+"
    b"\x0aNoter test"  # 79
    b"\x86"  # 84
    b"\x84\x02iI"  # 85 S7
    b"\x01\x0a"  # 89 run
    b"\x92"  # 8B
    b"\x84"  # 8C O7 NSDictionary
    b"\x84\x84\x0cNSDictionary\x00"  # 8D O8
    b"\x95"  # 9D
    b"\x84\x01i"  # 9E S9
    b"\x01"  # A1 count
    b"\x92\x84\x98\x98"  # A2 key
    b"\x1d__kIMMessagePartAttributeName"  # A6
    b"\x86"  # C4
    b"\x92\x84"  # C5 O10 NSNumber
    b"\x84\x84\x08NSNumber\x00"  # C7 O11
    b"\x84\x84\x07NSValue\x00"  # D3 O12
    b"\x95"  # DE
    b"\x84\x01*"  # DF S12
    b"\x84\x9b"  # E2 O13 C string "i"
    b"\x9b\x00"  # E4 value 0
    b"\x86"  # E6 end NSNumber
    b"\x86"  # E7 end NSDictionary
    b"\x86"  # E8 end attributed string
)

LENGTHS = [0, 1, 127, 128, 129, 255, 256, 32767, 32768, 40000, 70000]


def _check(blob: bytes, text: str) -> AttributedString:
    assert extract_text(blob) == text
    result = parse(blob)
    assert result.text == text
    return result


# --------------------------------------------------------------------------- the real blob


def test_real_blob_layout_matches_walkthrough_offsets():
    assert len(REAL_TEXT_ONLY) == 233
    for offset, expected in [(0x10, 0x84), (0x53, 0x85), (0x54, 0x92), (0x75, 0x95)]:
        assert REAL_TEXT_ONLY[offset] == expected
    assert REAL_TEXT_ONLY[0x79:0x84] == b"\x0aNoter test"
    assert REAL_TEXT_ONLY[0xA2:0xA6] == b"\x92\x84\x98\x98"
    assert REAL_TEXT_ONLY[0xE2:0xE9] == b"\x84\x9b\x9b\x00\x86\x86\x86"


def test_writer_reproduces_real_blob_byte_for_byte():
    assert encode_attributed_string("Noter test") == REAL_TEXT_ONLY
    assert encode_attributed_string("Noter test", [(10, {PART_KEY: 0})]) == REAL_TEXT_ONLY


def test_reader_decodes_real_blob():
    assert _fast_text(REAL_TEXT_ONLY) == "Noter test"
    assert extract_text(REAL_TEXT_ONLY) == "Noter test"
    assert parse(REAL_TEXT_ONLY) == AttributedString("Noter test", [Run(0, 10, {PART_KEY: 0})])
    assert attachment_guids(REAL_TEXT_ONLY) == []


def test_fast_path_prefixes_match_writer():
    assert encode_attributed_string("x").startswith(ts._MUTABLE_PREFIX)
    assert encode_attributed_string("x", mutable=False).startswith(ts._PLAIN_PREFIX)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("mutable", [True, False])
@pytest.mark.parametrize("n", LENGTHS)
def test_round_trip_lengths(n, mutable):
    text = ("abcdefghij" * (n // 10 + 1))[:n]
    blob = encode_attributed_string(text, mutable=mutable)
    prefix = ts._MUTABLE_PREFIX if mutable else ts._PLAIN_PREFIX
    head = blob[len(prefix)]
    if n < 128:
        assert head == n
    elif n < 32768:
        assert head == 0x81 and struct.unpack_from("<h", blob, len(prefix) + 1)[0] == n
    else:
        assert head == 0x82 and struct.unpack_from("<i", blob, len(prefix) + 1)[0] == n
    assert _fast_text(blob) == text
    result = _check(blob, text)
    assert result.runs == ([Run(0, n, {PART_KEY: 0})] if n else [])


@pytest.mark.parametrize("n_bytes", [126, 128, 130, 254, 256, 32768])
def test_round_trip_multibyte_lengths(n_bytes):
    text = "é" * (n_bytes // 2)  # two UTF-8 bytes, one UTF-16 unit each
    blob = encode_attributed_string(text)
    assert _fast_text(blob) == text
    assert _check(blob, text).runs == [Run(0, len(text), {PART_KEY: 0})]


def test_astral_and_combining_run_offsets():
    parts = ["👍🏽", " e\u0301 ", "🇫🇷", " 𝔉𝔯𝔞𝔨 ", "🅱️"]
    text = "".join(parts)
    runs = [(utf16_len(p), {PART_KEY: i}) for i, p in enumerate(parts)]
    blob = encode_attributed_string(text, runs)
    result = _check(blob, text)
    expected, start = [], 0
    for i, p in enumerate(parts):
        expected.append(Run(start, start + len(p), {PART_KEY: i}))
        start += len(p)
    assert result.runs == expected
    assert [text[r.start : r.end] for r in result.runs] == parts


@pytest.mark.parametrize(
    "text",
    [
        "Ȅ",  # C8 84: NEW tag as a continuation byte
        "Ɔ",  # C6 86: END_OF_OBJECT
        "ᆄ\x02iI",  # E1 86 84 02 69 49: looks like "end of string, new 'iI'"
        "𐆄",  # F0 90 86 84
        "a\x01+b",  # the quick readers' "01 2B" anchor
        "\x84\x86\x85\x81\x82",  # C1 controls, encoded as C2 xx
        "x" * 200 + "Ȅ\x01+ᆄ" * 50,
        "\ufffc",
        "\ufffc\ufffc text \ufffc",
        "\r\n\t\x00",
    ],
)
@pytest.mark.parametrize("mutable", [True, False])
def test_marker_like_bytes_inside_text(text, mutable):
    blob = encode_attributed_string(text, mutable=mutable)
    assert _fast_text(blob) == text
    _check(blob, text)


def test_attachments_guids_in_order():
    uuid = "0A1B2C3D-0000-4000-8000-0123456789AB"
    text = "\ufffc\ufffcLook at these"
    runs = [
        (
            1,
            {
                PART_KEY: 0,
                FILE_TRANSFER_GUID_KEY: f"at_0_{uuid}",
                "__kIMFilenameAttributeName": "a.heic",
                "__kIMInlineMediaWidthAttributeName": 1139.0,
                "__kIMInlineMediaHeightAttributeName": 640,
            },
        ),
        (1, {PART_KEY: 1, FILE_TRANSFER_GUID_KEY: f"at_1_{uuid}"}),
        (13, {PART_KEY: 2}),
    ]
    blob = encode_attributed_string(text, runs, part_encoding="q")
    assert attachment_guids(blob) == [f"at_0_{uuid}", f"at_1_{uuid}"]
    result = _check(blob, text)
    assert [(r.start, r.end) for r in result.runs] == [(0, 1), (1, 2), (2, 15)]
    assert result.runs[0].attrs == runs[0][1]
    assert isinstance(result.runs[0].attrs["__kIMInlineMediaWidthAttributeName"], float)
    assert b"\x81\x73\x04" in blob  # integral double stored as a tagged integer (real data)


def test_mention_reuses_dictionary_number_and_number_object():
    d1 = {PART_KEY: 0}
    d2 = {"__kIMMentionConfirmedMention": "+15558675309", PART_KEY: 0}
    blob = encode_attributed_string("Test Dad ", [(5, d1), (3, d2), (1, dict(d1))])
    # the third run repeats dictionary #1: "iI" back-reference, number 1, length 1, no dict
    # after NSNumber(0) as an object back-reference ("@", object #10) and the end of dict #2
    assert blob.endswith(b"\x92\x9c\x86\x99\x01\x01\x86")
    result = _check(blob, "Test Dad ")
    assert result.runs == [Run(0, 5, d1), Run(5, 8, d2), Run(8, 9, d1)]
    assert result.runs[0].attrs is not result.runs[2].attrs


def test_link_url_and_other_value_types():
    attrs = {
        PART_KEY: 0,
        "__kIMLinkAttributeName": URL("https://example.com/a?b=c"),
        "__kIMLinkIsRichLinkAttributeName": True,
        "__kIMDataDetectedAttributeName": b"bplist00\x00\x84\x86",
        "__kIMOneTimeCodeAttributeName": {"code": "123456", "displayCode": "123 456"},
        "list": [1, "two", 3.5, None, False],
        "big": 2**40,
        "negative": -70000,
        "float": -0.0,
        "empty_data": b"",
    }
    text = "https://example.com/a?b=c"
    blob = encode_attributed_string(text, [(len(text), attrs)])
    got = _check(blob, text).runs[0].attrs
    assert got == attrs
    assert type(got["__kIMLinkAttributeName"]) is URL
    assert got["__kIMLinkIsRichLinkAttributeName"] is True
    assert str(got["float"]) == "-0.0"


@pytest.mark.parametrize("encoding", ["i", "q"])
@pytest.mark.parametrize("mutable", [True, False])
def test_part_encoding(encoding, mutable):
    blob = encode_attributed_string(
        "hi", [(1, {PART_KEY: 0}), (1, {PART_KEY: 1})], mutable=mutable, part_encoding=encoding
    )
    # the C string "q" is new; "i" is a back-reference to the shared "i" of the count group
    assert (b"\x84\x01*\x84\x84\x01q" in blob) is (encoding == "q")
    assert (b"\x84\x01*\x84\x84" in blob) is (encoding == "q")
    assert _check(blob, "hi").runs == [Run(0, 1, {PART_KEY: 0}), Run(1, 2, {PART_KEY: 1})]
    assert (b"NSMutableString" in blob) is mutable


def test_many_shared_strings_and_objects_use_multibyte_references():
    # Distinct NSData lengths give distinct "[Nc]" type strings; repeating them and the
    # numbers in a second dictionary forces references past index 110 and past 237 (0x81).
    first = {
        PART_KEY: 0,
        **{f"d{i}": bytes(i + 1) for i in range(300)},
        **{f"n{i}": 1000 + i for i in range(300)},
    }
    second = {
        PART_KEY: 1,
        **{f"e{i}": bytes(i + 1) for i in range(300)},
        **{f"m{i}": 1000 + i for i in range(300)},
    }
    blob = encode_attributed_string("ab", [(1, first), (1, second)])

    class Recording(ts._Parser):
        __slots__ = ("refs",)

        def _ref(self) -> int:
            head = self.data[self.pos]
            index = super()._ref()
            self.refs.append((head, index))
            return index

    parser = Recording(blob)
    parser.refs = []
    result = parser.root()
    assert len(parser.shared) > 300 and len(parser.objects) > 1000
    # single-byte references past index 109 (0x00..0x7F) and 0x81-tagged ones past 237
    assert any(head < 0x80 and index >= 110 for head, index in parser.refs)
    assert any(head == 0x81 and index > 237 for head, index in parser.refs)
    assert result == parse(blob)
    assert result.runs == [Run(0, 1, first), Run(1, 2, second)]


def _blob_with_custom_value(write_value) -> bytes:
    """A body whose only run carries {"thing": <value written by write_value>}."""
    w = _Writer("i")
    w.types("@")
    w.begin("NSAttributedString", "NSObject")
    w.types("@")
    w.string("ab", mutable=False)
    w.types("iI")
    w.int_(1)
    w.uint(2)
    w.types("@")
    w.begin("NSDictionary", "NSObject")
    w.types("i")
    w.int_(2)
    for key in (PART_KEY, "thing"):
        w.types("@")
        w.object(key)
        w.types("@")
        if key == PART_KEY:
            w.object(0, "i")
        else:
            write_value(w)
    w.out += b"\x86\x86"
    return bytes(w.out)


def test_unknown_class_is_walked_generically():
    def write(w):
        w.begin("MyThing", "NSObject")
        w.types("{CGPoint=dd}")
        w.out += b"\x83" + struct.pack("<d", 1.5)
        w.int_(2)
        w.types("[3i]")
        for v in (1, -2, 300):
            w.int_(v)
        w.types("%")
        w.shared_string(b"atom")
        w.types("!")
        w.types("#")
        w.class_chain(("NSString", "NSObject"))
        w.types(":")
        w.shared_string(b"sel:")
        w.types("cCB")
        w.out += b"\xff\xff\x01"
        w.types("f")
        w.out += b"\x83" + struct.pack("<f", 0.5)
        w.types("@")
        w.out.append(0x85)  # nil object
        w.out.append(0x86)

    blob = _blob_with_custom_value(write)
    thing = parse(blob).runs[0].attrs["thing"]
    assert thing == ts.ArchivedObject(
        ("MyThing", "NSObject"),
        [
            ("{CGPoint=dd}", [(1.5, 2.0)]),
            ("[3i]", [[1, -2, 300]]),
            ("%", [b"atom"]),
            ("!", [None]),
            ("#", [("NSString", "NSObject")]),
            (":", [b"sel:"]),
            ("cCB", [-1, 255, True]),
            ("f", [0.5]),
            ("@", [None]),
        ],
    )
    assert extract_text(blob) == "ab"


def test_nil_string_contents_and_unfinished_self_reference_are_errors():
    def nil_string(w):
        w.begin("NSString", "NSObject")
        w.types("+")
        w.out += b"\x85\x86"

    def self_reference(w):
        w.begin("NSArray", "NSObject")
        w.types("i")
        w.int_(1)
        w.types("@")
        w.ref(w.n_objects - 2)  # the array itself, still being read
        w.out.append(0x86)

    for write in (nil_string, self_reference):
        with pytest.raises(TypedStreamError):
            parse(_blob_with_custom_value(write))


def test_writer_rejects_bad_runs():
    with pytest.raises(ValueError):
        encode_attributed_string("abc", [(2, {PART_KEY: 0})])
    with pytest.raises(ValueError):
        encode_attributed_string("😀", [(1, {PART_KEY: 0})])


# --------------------------------------------------------------------------- fast path


def test_fast_path_taken_for_common_shapes():
    for blob in [
        REAL_TEXT_ONLY,
        encode_attributed_string(""),
        encode_attributed_string("", mutable=False),
        encode_attributed_string("x" * 70000),
        encode_attributed_string(
            "\ufffc hi",
            [(1, {PART_KEY: 0, FILE_TRANSFER_GUID_KEY: "g"}), (3, {PART_KEY: 1})],
            part_encoding="q",
        ),
    ]:
        assert _fast_text(blob) is not None
        assert _fast_text(blob) == parse(blob).text


def test_fast_path_declines_odd_shapes_and_fallback_still_decodes():
    blob = encode_attributed_string("hello")
    other_version = blob.replace(b"\x81\xe8\x03", b"\x81\xe9\x03", 1)
    assert _fast_text(other_version) is None
    assert extract_text(other_version) == "hello"
    # same string written with an explicit 0x81 length for a short text: valid, not "common"
    p = len(ts._MUTABLE_PREFIX)
    wide = blob[:p] + b"\x81\x05\x00" + blob[p + 1 :]
    assert _fast_text(wide) == "hello"
    assert parse(wide).text == "hello"
    for odd in [
        b"",
        b"\x04\x0bstreamtyped",
        blob[: p + 6],  # truncated inside the text
        blob[: p + 7],  # truncated right after the text
        blob[:p] + b"\x04" + blob[p + 1 :],  # length one short: byte after is not END
        blob[:p] + b"\x06" + blob[p + 1 : p + 6] + blob[p + 7 :],  # overrun, END missing
        blob[:p] + b"\x90" + blob[p + 1 :],  # a tag where the length belongs
        blob.replace(b"hello", b"hell\xff"),  # invalid UTF-8
        bytearray(blob),
        "not bytes",
        None,
    ]:
        assert _fast_text(odd) is None  # type: ignore[arg-type]
    with pytest.raises(TypedStreamError):
        extract_text(blob.replace(b"hello", b"hell\xff"))
    # The fast path vouches for the text only: damage after it is the full parser's business.
    assert extract_text(blob[:-1]) == "hello"
    with pytest.raises(TypedStreamError):
        parse(blob[:-1])
    assert extract_text(bytearray(blob)) == "hello"  # type: ignore[arg-type]
    assert extract_text(memoryview(blob)) == "hello"  # type: ignore[arg-type]


# --------------------------------------------------------------------------- overrunning length


def _declared(blob: bytes, mutable: bool = True) -> tuple[int, int]:
    """(offset of the text, declared byte length) read from the backing string's prefix."""
    p = len(ts._MUTABLE_PREFIX if mutable else ts._PLAIN_PREFIX)
    head = blob[p]
    if head < 0x80:
        return p + 1, head
    if head == 0x81:
        return p + 3, struct.unpack_from("<H", blob, p + 1)[0]
    assert head == 0x82
    return p + 5, struct.unpack_from("<I", blob, p + 1)[0]


def test_writer_overrun_changes_only_the_length():
    honest = encode_attributed_string("Noter test")
    blob = encode_attributed_string("Noter test", length_overrun=5)
    assert blob == honest[:0x79] + b"\x0f" + honest[0x7A:]
    assert _declared(blob) == (0x7A, 15)
    wide = encode_attributed_string("x" * 120, length_overrun=10)  # 130 needs the 0x81 form
    assert _declared(wide) == (len(ts._MUTABLE_PREFIX) + 3, 130)
    assert wide[len(ts._MUTABLE_PREFIX) + 3 :].startswith(b"x" * 120 + b"\x86\x84\x02iI")
    with pytest.raises(ValueError):
        encode_attributed_string("x", length_overrun=-1)


@pytest.mark.parametrize("mutable", [True, False])
@pytest.mark.parametrize(
    "text", ["Noter test", "", "Ɔ ᆄ\x02iI Ȅ", "😀 e\u0301", "x" * 127, "y" * 300]
)
def test_every_overrun_recovers_text_and_runs(text, mutable):
    """Every overrun from one byte to past the end of the blob: the declared end lands in
    the run group, on the dictionary's END bytes, on the last byte, and beyond."""
    honest = encode_attributed_string(text, mutable=mutable)
    expected = parse(honest)
    for overrun in [*range(1, len(honest) + 8), 2**16, 2**31 - 1 - len(text.encode())]:
        blob = encode_attributed_string(text, mutable=mutable, length_overrun=overrun)
        start, declared = _declared(blob, mutable)
        assert declared == len(text.encode()) + overrun
        assert blob[start:].startswith(text.encode() + b"\x86")
        assert _fast_text(blob) == text, overrun
        assert extract_text(blob) == text, overrun
        assert parse(blob) == expected, overrun


def test_overrun_real_blob_with_2gib_lengths():
    """The real blob with its length set to 2 GiB: the text and run come back, and nothing
    is read (or allocated) past the blob."""
    for length in (b"\x82\xff\xff\xff\x7f", b"\x82\xff\xff\xff\xff"):
        blob = REAL_TEXT_ONLY[:0x79] + length + REAL_TEXT_ONLY[0x7A:]
        assert _fast_text(blob) == "Noter test"
        assert parse(blob) == AttributedString("Noter test", [Run(0, 10, {PART_KEY: 0})])


def test_overrun_attachments_mentions_and_links_keep_their_runs():
    uuid = "0A1B2C3D-0000-4000-8000-0123456789AB"
    text = "\ufffc\ufffcHey Dad see https://example.com"
    runs = [
        (1, {PART_KEY: 0, FILE_TRANSFER_GUID_KEY: f"at_0_{uuid}", "w": 1139.0}),
        (1, {PART_KEY: 1, FILE_TRANSFER_GUID_KEY: f"at_1_{uuid}"}),
        (4, {PART_KEY: 2}),
        (3, {PART_KEY: 2, "__kIMMentionConfirmedMention": "+15558675309"}),
        (5, {PART_KEY: 2}),
        (19, {PART_KEY: 2, "__kIMLinkAttributeName": URL("https://example.com")}),
    ]
    for mutable in (True, False):
        honest = encode_attributed_string(text, runs, mutable=mutable, part_encoding="q")
        for overrun in (1, 40, len(honest), 10**6):
            blob = encode_attributed_string(
                text, runs, mutable=mutable, part_encoding="q", length_overrun=overrun
            )
            assert parse(blob) == parse(honest)
            assert extract_text(blob) == text
            assert attachment_guids(blob) == [f"at_0_{uuid}", f"at_1_{uuid}"]


def test_overrun_with_damaged_runs_keeps_the_text_for_extract_only():
    """The text is bounded by its END, so it is recovered even when the runs after it do
    not parse (as for an honest length); `parse` still reports the damage."""
    blob = encode_attributed_string("hello there", length_overrun=30)
    runs_damaged = blob.replace(b"\x84\x01i\x01", b"\x84\x01i\x02")  # dict count
    truncated = blob[:-1]  # the closing END gone
    for bad in (runs_damaged, truncated):
        assert extract_text(bad) == "hello there"
        with pytest.raises(TypedStreamError):
            parse(bad)
        with pytest.raises(TypedStreamError):
            attachment_guids(bad)


def test_overrun_in_a_nested_string_is_recovered_too():
    """An attribute's NSString value with an overrunning length is bounded the same way."""

    def write(w):
        w.begin("NSString", "NSObject")
        w.types("+")
        w.uint(len(b"guid-1") + 9)
        w.out += b"guid-1\x86"

    blob = _blob_with_custom_value(write)
    assert parse(blob).runs[0].attrs == {PART_KEY: 0, "thing": "guid-1"}


def test_a_plus_payload_outside_nsstring_is_never_cut_at_an_end_byte():
    """Only NSString payloads are bounded by their END: an unknown class's `+` bytes may
    hold 0x86 and keep their declared length."""

    def write(w):
        w.begin("MyThing", "NSObject")
        w.types("+")
        w.uint(3)
        w.out += b"a\x86b"
        w.out.append(0x86)

    blob = _blob_with_custom_value(write)
    thing = parse(blob).runs[0].attrs["thing"]
    assert thing == ts.ArchivedObject(("MyThing", "NSObject"), [("+", [b"a\x86b"])])


# --------------------------------------------------------------------------- bad input


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x04",
        REAL_TEXT_ONLY[:16],
        REAL_TEXT_ONLY[:100],
        b"\x04\x0btypedstream\x81\xe8\x03" + REAL_TEXT_ONLY[16:],
        REAL_TEXT_ONLY + b"\x00",
        # 2 GiB lengths with the END after the text gone: nothing bounds the text
        REAL_TEXT_ONLY[:0x79] + b"\x82\xff\xff\xff\x7f" + REAL_TEXT_ONLY[0x7A:0x84],
        REAL_TEXT_ONLY[:0x79] + b"\x82\xff\xff\xff\xff" + REAL_TEXT_ONLY[0x7A:0x84] + b"\x00",
        REAL_TEXT_ONLY[:0x79] + b"\x14" + REAL_TEXT_ONLY[0x7A:0x84] + REAL_TEXT_ONLY[0x85:],
        REAL_TEXT_ONLY.replace(b"Noter test", b"Noter \xfftest"),  # not UTF-8 before the END
        REAL_TEXT_ONLY[:0x54] + b"\x81\x00\x80" + REAL_TEXT_ONLY[0x55:],  # negative reference
        REAL_TEXT_ONLY[:0x54] + b"\x7f" + REAL_TEXT_ONLY[0x55:],  # reference past the table
        REAL_TEXT_ONLY[:0x75] + b"\x92" + REAL_TEXT_ONLY[0x76:],  # class ref to an object
        REAL_TEXT_ONLY.replace(b"\x01\x0a\x92", b"\x01\x0b\x92"),  # run longer than text
        REAL_TEXT_ONLY.replace(b"\x01\x0a\x92", b"\x01\x09\x92"),  # runs short of the text
        REAL_TEXT_ONLY.replace(b"\x84\x01i\x01", b"\x84\x01i\x02"),  # dict count mismatch
        REAL_TEXT_ONLY.replace(b"\x84\x01i\x01", b"\x84\x04[9z]"),  # unknown type code
        encode_attributed_string("a", [(1, {PART_KEY: 0, "deep": _nested(100)})]),
        encode_attributed_string("😀", [(2, {PART_KEY: 0})]).replace(b"\x01\x02", b"\x01\x01"),
    ],
)
def test_malformed_inputs_raise_typedstream_error(blob):
    with pytest.raises(TypedStreamError):
        parse(blob)
    with pytest.raises(TypedStreamError):
        extract_text(blob) if _fast_text(blob) is None else parse(blob)
    with pytest.raises(TypedStreamError):
        attachment_guids(blob)


def test_hostile_type_encodings():
    base = REAL_TEXT_ONLY.replace(b"\x84\x01i\x01", b"\x84%s\x01")
    for types in [
        b"[" * 40 + b"1c" + b"]" * 40,
        b"[99999999999c]",
        b"[999999{x}]",
        b"[999999999999999999999999999999i]",
        b"9" * 5000,
        b"{a=",
        b"\xff",
    ]:
        blob = base.replace(
            b"%s",
            bytes([len(types)]) + types
            if len(types) < 128
            else b"\x81" + struct.pack("<h", len(types)) + types,
        )
        with pytest.raises(TypedStreamError):
            parse(blob)


def test_non_bytes_input():
    for value in [None, "text", 12]:
        with pytest.raises(TypedStreamError):
            extract_text(value)  # type: ignore[arg-type]
        with pytest.raises(TypedStreamError):
            parse(value)  # type: ignore[arg-type]


def test_corrupt_variants_always_differ():
    rng = random.Random(7)
    for _ in range(500):
        bad = corrupt_variants(REAL_TEXT_ONLY, rng)
        assert bad != REAL_TEXT_ONLY
        _only_str_or_error(bad)


# --------------------------------------------------------------------------- properties

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_str_or_error(blob: bytes) -> None:
    fast = _fast_text(blob)
    try:
        text = extract_text(blob)
    except TypedStreamError:
        text = None
    else:
        assert type(text) is str
    try:
        full = parse(blob)
    except TypedStreamError:
        full = None
    else:
        assert type(full.text) is str
        # whatever the fast path returns must be what the full parser reads
        assert fast is None or fast == full.text
        assert text == full.text
    try:
        guids = attachment_guids(blob)
    except TypedStreamError:
        pass
    else:
        assert all(type(g) is str for g in guids)


@FAST
@given(st.text())
def test_property_text_round_trip(text):
    for mutable in (True, False):
        blob = encode_attributed_string(text, mutable=mutable)
        assert _fast_text(blob) == text
        assert extract_text(blob) == text
        expected = [Run(0, len(text), {PART_KEY: 0})] if text else []
        assert parse(blob) == AttributedString(text, expected)


@FAST
@given(st.text(min_size=1), st.data())
def test_property_runs_round_trip(text, data):
    cuts = sorted(data.draw(st.sets(st.integers(1, len(text)), max_size=6)) | {len(text)})
    runs, expected, start = [], [], 0
    for end in cuts:
        attrs = {PART_KEY: data.draw(st.integers(0, 2))}
        if data.draw(st.booleans()):
            attrs[FILE_TRANSFER_GUID_KEY] = data.draw(st.sampled_from(["g1", "g2"]))
        runs.append((utf16_len(text[start:end]), attrs))
        expected.append(Run(start, end, attrs))
        start = end
    blob = encode_attributed_string(
        text, runs, mutable=data.draw(st.booleans()), part_encoding=data.draw(st.sampled_from("iq"))
    )
    assert parse(blob) == AttributedString(text, expected)
    assert extract_text(blob) == text
    assert attachment_guids(blob) == [
        r.attrs[FILE_TRANSFER_GUID_KEY] for r in expected if FILE_TRANSFER_GUID_KEY in r.attrs
    ]


@FAST
@given(st.text(), st.integers(1, 2**32 - 1), st.booleans(), st.data())
def test_property_overrun_round_trip(text, overrun, mutable, data):
    """Any text, any overrun that fits the 32-bit length: text and runs round-trip."""
    overrun = min(overrun, 2**32 - 1 - len(text.encode()))
    runs = None
    if text and data.draw(st.booleans()):
        cut = data.draw(st.integers(1, len(text)))
        runs = [(utf16_len(text[:cut]), {PART_KEY: 0})]
        if cut < len(text):
            runs.append((utf16_len(text[cut:]), {PART_KEY: 1, FILE_TRANSFER_GUID_KEY: "g"}))
    honest = encode_attributed_string(text, runs, mutable=mutable)
    blob = encode_attributed_string(text, runs, mutable=mutable, length_overrun=overrun)
    assert _fast_text(blob) == text
    assert extract_text(blob) == text
    assert parse(blob) == parse(honest)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(blob):
    _only_str_or_error(blob)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_after_valid_prefix(tail):
    _only_str_or_error(ts._MUTABLE_PREFIX + tail)
    _only_str_or_error(REAL_TEXT_ONLY[:0x85] + tail)
    # an overrunning length: the text's end is searched for in random bytes
    _only_str_or_error(ts._MUTABLE_PREFIX + b"\x82\xff\xff\xff\x7f" + tail)
    _only_str_or_error(ts._PLAIN_PREFIX + b"\x7f" + tail)
    _only_str_or_error(REAL_TEXT_ONLY[:0x79] + b"\x81\x00\x01" + REAL_TEXT_ONLY[0x7A:0x85] + tail)


_SEEDS = [
    REAL_TEXT_ONLY,
    encode_attributed_string("Ȅ ᆄ\x02iI 😀", mutable=False, part_encoding="q"),
    encode_attributed_string(
        "\ufffcx",
        [
            (
                1,
                {
                    PART_KEY: 0,
                    FILE_TRANSFER_GUID_KEY: "at_0_X",
                    "w": 1.5,
                    "u": URL("tel:1"),
                    "d": b"\x86",
                },
            ),
            (1, {PART_KEY: 1}),
        ],
    ),
    encode_attributed_string("y" * 300),
    # overrunning lengths: into the runs, onto an END inside them, past the blob's end
    encode_attributed_string("Noter test", length_overrun=3),
    encode_attributed_string("Ɔ ᆄ\x02iI 😀", mutable=False, part_encoding="q", length_overrun=60),
    encode_attributed_string(
        "\ufffcx",
        [(1, {PART_KEY: 0, FILE_TRANSFER_GUID_KEY: "at_0_X", "d": b"\x86"}), (1, {PART_KEY: 1})],
        length_overrun=10**6,
    ),
    encode_attributed_string("z" * 200, length_overrun=2**31 - 201),
]


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_fuzz_mutated_valid_blobs(seed, flips, cut):
    data = bytearray(seed)
    for pos, value in flips:
        data[pos % len(data)] = value
    if cut is not None:
        del data[cut % len(data) :]
    _only_str_or_error(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_SEEDS), st.randoms(use_true_random=False))
def test_fuzz_corrupt_variants(seed, rng):
    _only_str_or_error(corrupt_variants(seed, rng))
