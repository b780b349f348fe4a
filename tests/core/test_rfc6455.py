"""WebSocket frames (RFC 6455), grouped by the section each test checks: the server's
encoder and the incremental reader of client frames."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushy_shard.core.rfc6455 import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Binary,
    Close,
    Event,
    FrameReader,
    Ping,
    Pong,
    Text,
    apply_mask,
    close_frame,
    close_reply,
    encode_frame,
)
from pushy_shard.core.sockjs import ws_text_frame
from pushy_shard.errors import FrameError

MASK = b"\x12\x34\x56\x78"
LIMIT = 1024


def client(opcode: int, payload: bytes, **kw: object) -> bytes:
    """A client frame: masked unless told otherwise."""
    kw.setdefault("mask", MASK)
    return encode_frame(opcode, payload, **kw)  # type: ignore[arg-type]


def read(*chunks: bytes, limit: int = LIMIT) -> list[Event]:
    reader = FrameReader(limit)
    return [event for chunk in chunks for event in reader.feed(chunk)]


def failure(*chunks: bytes, limit: int = LIMIT) -> tuple[int, str]:
    with pytest.raises(FrameError) as info:
        read(*chunks, limit=limit)
    return info.value.code, info.value.reason


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# -- 5.2 base framing ------------------------------------------------------------------------


class TestBaseFraming:
    @pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
    def test_length_encodings_round_trip(self, size: int) -> None:
        payload = bytes(i % 251 for i in range(size))
        (event,) = read(client(OP_BINARY, payload), limit=1 << 20)
        assert event == Binary(payload)

    def test_server_frames_are_unmasked_and_minimal(self) -> None:
        assert encode_frame(OP_TEXT, b"hi") == b"\x81\x02hi"
        assert encode_frame(OP_TEXT, b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
        assert encode_frame(OP_TEXT, b"x" * 65536)[:10] == b"\x81\x7f" + struct.pack("!Q", 65536)
        assert ws_text_frame(b"abc") == encode_frame(OP_TEXT, b"abc")

    def test_several_frames_in_one_chunk(self) -> None:
        data = client(OP_TEXT, b"a") + client(OP_PING, b"p") + client(OP_TEXT, b"b")
        assert read(data) == [Text("a"), Ping(b"p"), Text("b")]

    def test_reserved_bits_fail(self) -> None:
        for rsv in (1, 2, 4):
            assert failure(client(OP_TEXT, b"a", rsv=rsv))[0] == 1002

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    def test_reserved_opcodes_fail(self, opcode: int) -> None:
        assert failure(client(opcode, b""))[0] == 1002

    def test_64_bit_length_with_the_top_bit_fails(self) -> None:
        frame = bytes((0x82, 0x80 | 127)) + struct.pack("!Q", 1 << 63) + MASK
        assert failure(frame)[0] == 1002

    def test_error_comes_before_the_payload_arrives(self) -> None:
        # the header alone is enough to refuse: nothing is buffered for a doomed frame
        header = encode_frame(OP_BINARY, b"x" * 2000, mask=MASK)[:8]
        assert failure(header) == (1009, "Message too big")


# -- 5.3 client-to-server masking --------------------------------------------------------------


class TestMasking:
    def test_unmasked_client_frame_fails(self) -> None:
        assert failure(encode_frame(OP_TEXT, b"a")) == (1002, "Client frames must be masked")

    @given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
    def test_mask_is_its_own_inverse(self, data: bytes, mask: bytes) -> None:
        assert apply_mask(apply_mask(data, mask), mask) == data
        assert apply_mask(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data))


# -- 5.4 fragmentation -------------------------------------------------------------------------


class TestFragmentation:
    def test_text_reassembled(self) -> None:
        frames = (client(OP_TEXT, b"he", fin=False) + client(OP_CONTINUATION, b"l", fin=False)
                  + client(OP_CONTINUATION, b"lo"))
        assert read(frames) == [Text("hello")]

    def test_control_frames_between_fragments(self) -> None:
        frames = (client(OP_TEXT, b"a", fin=False) + client(OP_PING, b"1")
                  + client(OP_CONTINUATION, b"b"))
        assert read(frames) == [Ping(b"1"), Text("ab")]

    def test_utf8_split_across_fragments(self) -> None:
        data = "é".encode()
        frames = client(OP_TEXT, data[:1], fin=False) + client(OP_CONTINUATION, data[1:])
        assert read(frames) == [Text("é")]

    def test_continuation_without_a_message_fails(self) -> None:
        assert failure(client(OP_CONTINUATION, b"a"))[0] == 1002

    def test_new_message_inside_a_fragmented_one_fails(self) -> None:
        assert failure(client(OP_TEXT, b"a", fin=False) + client(OP_TEXT, b"b"))[0] == 1002

    def test_reassembled_message_over_the_limit_fails(self) -> None:
        frames = client(OP_TEXT, b"a" * 600, fin=False) + client(OP_CONTINUATION, b"a" * 600)
        assert failure(frames) == (1009, "Message too big")

    def test_message_at_the_limit_passes(self) -> None:
        frames = client(OP_TEXT, b"a" * 512, fin=False) + client(OP_CONTINUATION, b"a" * 512)
        assert read(frames) == [Text("a" * LIMIT)]


# -- 5.5 control frames ----------------------------------------------------------------------------


class TestControlFrames:
    def test_ping_and_pong(self) -> None:
        assert read(client(OP_PING, b"x"), client(OP_PONG, b"y")) == [Ping(b"x"), Pong(b"y")]

    def test_control_frame_over_125_bytes_fails(self) -> None:
        assert failure(client(OP_PING, b"x" * 126)) == (1002, "Control frame too long")

    def test_fragmented_control_frame_fails(self) -> None:
        assert failure(client(OP_PING, b"x", fin=False)) == (1002, "Fragmented control frame")

    def test_close_with_code_and_reason(self) -> None:
        frame = client(OP_CLOSE, struct.pack("!H", 1000) + "bye é".encode())
        assert read(frame) == [Close(1000, "bye é")]

    def test_close_without_payload(self) -> None:
        assert read(client(OP_CLOSE, b"")) == [Close(None, "")]

    def test_nothing_is_read_after_close(self) -> None:
        reader = FrameReader(LIMIT)
        assert list(reader.feed(client(OP_CLOSE, b"") + client(OP_TEXT, b"late"))) == [
            Close(None, "")]
        assert list(reader.feed(client(OP_TEXT, b"later"))) == []

    @pytest.mark.parametrize("payload", [b"\x03", struct.pack("!H", 1005),
                                         struct.pack("!H", 999), struct.pack("!H", 2000),
                                         struct.pack("!H", 5000)])
    def test_bad_close_payloads_fail(self, payload: bytes) -> None:
        assert failure(client(OP_CLOSE, payload))[0] == 1002

    def test_close_reason_must_be_utf8(self) -> None:
        assert failure(client(OP_CLOSE, struct.pack("!H", 1000) + b"\xff"))[0] == 1007

    def test_server_close_frames(self) -> None:
        assert close_frame(1009, "Message too big") == b"\x88\x11\x03\xf1Message too big"
        assert len(close_frame(1000, "x" * 300)) == 2 + 125  # cut to fit a control frame
        assert close_reply(Close(1001, "bye")) == b"\x88\x02\x03\xe9"
        assert close_reply(Close(None, "")) == b"\x88\x00"


# -- 8.1 UTF-8 ---------------------------------------------------------------------------------


class TestText:
    def test_invalid_utf8_fails_with_1007(self) -> None:
        assert failure(client(OP_TEXT, b"\xc3\x28")) == (1007, "Invalid UTF-8 text")

    def test_binary_is_not_decoded(self) -> None:
        assert read(client(OP_BINARY, b"\xff")) == [Binary(b"\xff")]


# -- properties ------------------------------------------------------------------------------------

frames = st.one_of(
    st.builds(lambda t: (OP_TEXT, t.encode()), st.text(max_size=300)),
    st.builds(lambda b: (OP_BINARY, b), st.binary(max_size=300)),
    st.builds(lambda b: (OP_PING, b), st.binary(max_size=125)),
    st.builds(lambda b: (OP_PONG, b), st.binary(max_size=125)),
)


def expected_event(opcode: int, payload: bytes) -> Event:
    if opcode == OP_TEXT:
        return Text(payload.decode())
    return {OP_BINARY: Binary, OP_PING: Ping, OP_PONG: Pong}[opcode](payload)


class TestProperties:
    @settings(max_examples=300)
    @given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
    def test_any_bytes_in_any_chunking_raise_only_frame_errors(self, data: bytes,
                                                               cuts: list[int]) -> None:
        try:
            read(*split(data, cuts))
        except FrameError as exc:
            assert exc.code in (1002, 1007, 1009)

    @settings(max_examples=300)
    @given(st.lists(frames, min_size=1, max_size=6), st.binary(min_size=4, max_size=4),
           st.lists(st.integers(0, 2000), max_size=10))
    def test_encoded_frames_round_trip_under_any_chunking(
        self, messages: list[tuple[int, bytes]], mask: bytes, cuts: list[int]
    ) -> None:
        data = b"".join(encode_frame(op, payload, mask=mask) for op, payload in messages)
        assert read(*split(data, cuts)) == [expected_event(*m) for m in messages]

    @settings(max_examples=200)
    @given(st.text(max_size=400), st.lists(st.integers(1, 50), min_size=1, max_size=8),
           st.lists(st.integers(0, 600), max_size=10))
    def test_fragmented_text_round_trips(self, text: str, sizes: list[int],
                                         cuts: list[int]) -> None:
        payload = text.encode()
        pieces, start = [], 0
        for size in sizes[:-1]:
            pieces.append(payload[start:start + size])
            start += size
        pieces.append(payload[start:])
        data = b"".join(
            encode_frame(OP_TEXT if i == 0 else OP_CONTINUATION, piece,
                         fin=i == len(pieces) - 1, mask=MASK)
            for i, piece in enumerate(pieces))
        assert read(*split(data, cuts)) == [Text(text)]
