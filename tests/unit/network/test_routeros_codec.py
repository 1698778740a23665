"""The simulator's wire codec and query evaluator (pure: no sockets)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from librouteros.protocol import encode_length as librouteros_encode_length
from librouteros.query import And, Key, Or

from ispbill.sim.routeros import (
    ProtocolViolation,
    QueryError,
    SentenceDecoder,
    decode_length,
    encode_length,
    encode_sentence,
    evaluate_query,
    length_width,
    parse_duration,
    split_attribute,
)

# (length, exact encoding) at both sides of every width boundary, written out by hand
# from the MikroTik table rather than computed.
BOUNDARIES = [
    (0x00, b"\x00"),
    (0x01, b"\x01"),
    (0x7F, b"\x7f"),
    (0x80, b"\x80\x80"),
    (0x3FFF, b"\xbf\xff"),
    (0x4000, b"\xc0\x40\x00"),
    (0x1FFFFF, b"\xdf\xff\xff"),
    (0x200000, b"\xe0\x20\x00\x00"),
    (0xFFFFFFF, b"\xef\xff\xff\xff"),
    (0x10000000, b"\xf0\x10\x00\x00\x00"),
    (0xFFFFFFFF, b"\xf0\xff\xff\xff\xff"),
]


@pytest.mark.parametrize(("length", "encoded"), BOUNDARIES, ids=[hex(n) for n, _ in BOUNDARIES])
def test_length_encoding_at_width_boundaries(length, encoded):
    assert encode_length(length) == encoded
    assert length_width(encoded[0]) == len(encoded)
    assert decode_length(encoded) == (length, len(encoded))
    assert decode_length(b"junk" + encoded + b"tail", 4) == (length, 4 + len(encoded))


@pytest.mark.parametrize(("length", "encoded"), BOUNDARIES[1:], ids=[hex(n) for n, _ in BOUNDARIES[1:]])
def test_truncated_length_asks_for_more(length, encoded):
    for cut in range(1, len(encoded)):
        assert decode_length(encoded[:cut]) is None


@pytest.mark.parametrize("length", [n for n, _ in BOUNDARIES if n < 0x10000000])
def test_agrees_with_librouteros_up_to_four_bytes(length):
    assert encode_length(length) == librouteros_encode_length(length)


@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_every_length_round_trips(length):
    encoded = encode_length(length)
    assert decode_length(encoded) == (length, len(encoded))


@pytest.mark.parametrize("bad", [-1, 0x100000000])
def test_unencodable_lengths(bad):
    with pytest.raises(ValueError):
        encode_length(bad)


@pytest.mark.parametrize("control", range(0xF8, 0x100))
def test_control_bytes_are_rejected(control):
    with pytest.raises(ProtocolViolation):
        length_width(control)
    with pytest.raises(ProtocolViolation):
        SentenceDecoder().feed(bytes([control, 0, 0, 0, 0]))


def test_five_byte_marker_must_be_f0():
    with pytest.raises(ProtocolViolation):
        decode_length(b"\xf1\x00\x00\x00\x01")


def _sentences(*sentences):
    return b"".join(encode_sentence(words) for words in sentences)


def test_decoder_reassembles_any_split():
    long_word = "=comment=" + "x" * 0x4000  # a three-byte length
    stream = _sentences(["/login", "=name=admin", "=password="], ["/ppp/secret/print", long_word, ".tag=7"])
    expected = [[b"/login", b"=name=admin", b"=password="], [b"/ppp/secret/print", long_word.encode(), b".tag=7"]]
    whole = SentenceDecoder().feed(stream)
    assert whole == expected
    decoder = SentenceDecoder()
    byte_by_byte = []
    for i in range(len(stream)):
        byte_by_byte += decoder.feed(stream[i : i + 1])
    assert byte_by_byte == expected
    assert not decoder.pending


def test_decoder_keeps_a_partial_sentence():
    decoder = SentenceDecoder()
    assert decoder.feed(encode_sentence(["/quit"])[:-1]) == []
    assert decoder.pending
    assert decoder.feed(b"\x00") == [[b"/quit"]]


def test_empty_sentence_and_utf8_words():
    assert SentenceDecoder().feed(b"\x00") == [[]]
    word = "=name=রহিম"
    raw = word.encode()
    assert SentenceDecoder().feed(encode_sentence([word])) == [[raw]]
    assert encode_sentence([word])[0] == len(raw)  # the length counts bytes, not characters


def test_word_limit():
    with pytest.raises(ProtocolViolation):
        SentenceDecoder(max_word=10).feed(encode_length(11))


@pytest.mark.parametrize(
    ("word", "pair"),
    [
        ("=name=alice", ("name", "alice")),
        ("=comment=a=b=c", ("comment", "a=b=c")),
        ("=comment=", ("comment", "")),
        ("=comment", ("comment", "")),  # RouterOS-api sends empty values like this
        ("=.id=*1F", (".id", "*1F")),
        ("=ret=", ("ret", "")),
    ],
)
def test_split_attribute(word, pair):
    assert split_attribute(word) == pair


ROW = {".id": "*1A", "name": "1001", "profile": "home-10M", "disabled": "false", "comment": "", "limit": "20"}


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([], True),
        (["?name"], True),
        (["?caller-id"], False),
        (["?-caller-id"], True),
        (["?-name"], False),
        (["?name=1001"], True),
        (["?=name=1001"], True),
        (["?=name=1002"], False),
        (["?comment="], True),  # present and empty
        (["?=profile=home-10M", "?name=1001"], True),  # AND by default
        (["?=profile=home-10M", "?name=9"], False),
        (["?=name=9", "?=name=1001", "?#|"], True),
        (["?=name=9", "?=name=1001", "?#&"], False),
        (["?=name=9", "?#!"], True),
        (["?=name=1001", "?#!"], False),
        (["?disabled=no"], True),  # booleans accept yes/no and true/false
        (["?disabled=true"], False),
        (["?<limit=100"], True),  # numbers compare as numbers, not text
        (["?>limit=3"], True),
        (["?<.id=*1B"], True),  # ids compare as hex
        (["?>.id=*1B"], False),
        (["?<name=1001"], False),
        (["?<nosuch=1"], False),
        # the stack: [A=false, B=true, C=false] with C on top
        (["?=name=9", "?name", "?=name=8", "?#1"], True),  # index at end: stack := [B]
        (["?=name=9", "?name", "?=name=8", "?#2"], False),  # stack := [A]
        (["?=name=9", "?name", "?=name=8", "?#1|", "?#!"], False),  # [A, B, C|B]: A false
        (["?name", "?name", "?=name=8", "?#1|"], True),  # [T, T, C|B = T]
        (["?=name=8", "?#.!|"], True),  # x or not x
        (["?name", "?#.&"], True),
    ],
)
def test_query_evaluation(words, expected):
    assert evaluate_query(words, ROW, bool_fields=frozenset({"disabled"})) is expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (Key("name") == "1001", True),
        (Key("name") != "1001", False),
        (Key("name").In("7", "1001", "8"), True),
        (Key("name").In("7", "8"), False),
        (And(Key("name") == "1001", Key("profile") == "home-10M"), True),
        (And(Key("name") == "1001", Key("profile") == "x", Key("comment") == ""), False),
        (Or(Key("name") == "x", Key("profile") == "y", Key("comment") == ""), True),
    ],
)
def test_queries_built_by_librouteros(query, expected):
    assert evaluate_query(list(query), ROW) is expected


@pytest.mark.parametrize("words", [["?#&"], ["?name", "?#|"], ["?#!"], ["?name", "?#5"], ["?name", "?#x"], ["?<name"]])
def test_bad_queries(words):
    with pytest.raises(QueryError):
        evaluate_query(words, ROW)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("1d2h", 93600), ("1w", 604800), ("00:05:00", 300), ("1d00:00:10", 86410), ("42", 42)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "5m garbage"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)
