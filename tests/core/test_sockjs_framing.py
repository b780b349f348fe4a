"""SockJS 0.3.3 framing (PROTOCOL.md 1) and the WebSocket text frames the front writes.

The escapable set is `escapable_by_server` of the sockjs-protocol suite (JsonEncoding tests),
plus the surrogates; the frame layout is RFC 6455 section 5.2.
"""

from __future__ import annotations

import json
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushy_shard.core.sockjs import (
    ANOTHER_CONNECTION,
    EVENTSOURCE_PRELUDE,
    GO_AWAY,
    HEARTBEAT_FRAME,
    OPEN_FRAME,
    XHR_STREAMING_PRELUDE,
    callback_name,
    close_frame,
    decode_client_frame,
    decode_jsonp_send,
    decode_send_payload,
    eventsource_frame,
    htmlfile_frame,
    htmlfile_prelude,
    http_chunk,
    js_string,
    jsonp_frame,
    message_frame,
    quote,
    quote_bytes,
    ws_text_frame,
    xhr_frame,
)
from pushy_shard.errors import (
    BrokenJSON,
    CallbackRequired,
    InvalidCallback,
    PayloadExpected,
    SockJSFrameError,
    SockJSRequestError,
)

# sockjs-protocol-0.3.3.py, JsonEncoding: what a server must never send raw.
ESCAPABLE_BY_SERVER = re.compile(
    "[\x00-\x1f\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff\ud800-\udfff]"
)


def utf16_normal(text: str) -> str:
    """Join surrogate pairs held as two code points, as a JavaScript string would see them."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


# -- framing: o, h, a[...], c[...] (PROTOCOL.md 1) -------------------------------------------


class TestQuote:
    @pytest.mark.parametrize(
        ("message", "expected"),
        [
            ("hello", b'"hello"'),
            ("", b'""'),
            ('say "hi" \\o/', b'"say \\"hi\\" \\\\o/"'),
            ("line\nbreak\ttab", b'"line\\nbreak\\ttab"'),
            ("\x00", b'"\\u0000"'),
            ("\x01\x1f", b'"\\u0001\\u001f"'),
            ("\u200c\u200f", b'"\\u200c\\u200f"'),
            ("a\u2028b\u2029c", b'"a\\u2028b\\u2029c"'),
            ("\u202f", b'"\\u202f"'),
            ("\u2060\u206f", b'"\\u2060\\u206f"'),
            ("\ufff0\ufffd\uffff", b'"\\ufff0\\ufffd\\uffff"'),
            ("\ud800", b'"\\ud800"'),
            ("x\udfffy", b'"x\\udfffy"'),
            ("\ud83d\ude00", b'"\\ud83d\\ude00"'),  # a pair held as two code points
        ],
    )
    def test_exact_bytes(self, message: str, expected: bytes) -> None:
        assert quote(message) == expected

    @pytest.mark.parametrize("message", ["é", "中文", "😀", "\u00ad\u200b\u2030\ufeff", "\x7f\x80"])
    def test_other_unicode_is_written_raw(self, message: str) -> None:
        assert quote(message) == b'"' + message.encode() + b'"'

    def test_escapes_come_back_on_json_parsing(self) -> None:
        message = "\x00\u2028\ufff0 é \ud800"
        assert json.loads(quote(message)) == message

    def test_quote_bytes(self) -> None:
        assert quote_bytes("a\u2028é".encode()) == b'"a\\u2028\xc3\xa9"'
        assert quote_bytes(b'{"event":"e"}') == b'"{\\"event\\":\\"e\\"}"'

    def test_quote_bytes_accepts_surrogatepass_bytes(self) -> None:
        # what protocol.dumps produces for a lone surrogate
        assert quote_bytes("\ud800".encode("utf-8", "surrogatepass")) == b'"\\ud800"'

    @settings(max_examples=500, deadline=None)
    @given(st.text(alphabet=st.characters(exclude_categories=())))
    def test_any_text_round_trips_with_no_escapable_character_raw(self, message: str) -> None:
        out = quote(message)
        text = out.decode("utf-8")  # strict: valid UTF-8 whatever the input
        assert ESCAPABLE_BY_SERVER.search(text) is None
        assert utf16_normal(json.loads(text)) == utf16_normal(message)


class TestFrames:
    def test_open_and_heartbeat(self) -> None:
        assert (OPEN_FRAME, HEARTBEAT_FRAME) == (b"o", b"h")

    def test_message_frame(self) -> None:
        assert message_frame([quote("a"), quote("b\u2028")]) == b'a["a","b\\u2028"]'
        assert message_frame((quote("x"),)) == b'a["x"]'
        assert message_frame([]) == b"a[]"

    def test_message_frame_is_a_json_array_of_the_messages(self) -> None:
        messages = ['{"event":"e","data":1}', "é", "\x00"]
        frame = message_frame([quote(m) for m in messages])
        assert frame[:1] == b"a"
        assert json.loads(frame[1:]) == messages

    def test_close_frames(self) -> None:
        assert GO_AWAY == b'c[3000,"Go away!"]'
        assert close_frame(3000, "Go away!") == GO_AWAY
        assert ANOTHER_CONNECTION == b'c[2010,"Another connection still open"]'
        assert close_frame(1002, 'say "no"') == b'c[1002,"say \\"no\\""]'


class TestDecodeClientFrame:
    @pytest.mark.parametrize(
        ("payload", "messages"),
        [
            ('["a","b"]', ["a", "b"]),
            (b'["a","b"]', ["a", "b"]),
            ('["{\\"command\\":\\"x\\"}"]', ['{"command":"x"}']),
            ("[]", []),
            ('"single"', ["single"]),
            (b'"single"', ["single"]),
            ('["\\u2028", "\\u00e9"]', ["\u2028", "é"]),
            # JSON.stringify escapes a lone surrogate; orjson refuses it, the frame is valid
            ('["a\\ud800", "\\udfff"]', ["a\ud800", "\udfff"]),
            (b'"\\ud800"', ["\ud800"]),
            ('  ["spaces"]  ', ["spaces"]),
            ("", []),
            (b"", []),
        ],
    )
    def test_messages(self, payload: str | bytes, messages: list[str]) -> None:
        assert decode_client_frame(payload) == messages

    @pytest.mark.parametrize(
        "payload",
        ["[", "x", "['a']", '["a",]', '["a"', "  ", b"\xff", '"unterminated', "[" * 100_000,
         '["\\ud800",]'],
    )
    def test_invalid_json(self, payload: str | bytes) -> None:
        with pytest.raises(SockJSFrameError, match="broken JSON encoding"):
            decode_client_frame(payload)

    @pytest.mark.parametrize(
        "payload",
        ["[1]", '["a",null]', '["a",["b"]]', '[{"a":"b"}]', "{}", '{"a":"b"}', "1", "null", "true"],
    )
    def test_not_strings(self, payload: str) -> None:
        with pytest.raises(SockJSFrameError, match="array of strings"):
            decode_client_frame(payload)

    def test_frame_error_is_a_value_error(self) -> None:
        assert issubclass(SockJSFrameError, ValueError)


# -- RFC 6455 5.2: server-to-client text frames ----------------------------------------------


def parse_ws_frame(frame: bytes) -> tuple[bool, int, int, bool, int, bytes]:
    """(fin, rsv, opcode, masked, payload length, payload) of one complete frame."""
    b0, b1 = frame[0], frame[1]
    fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 0x7, b0 & 0x0F
    masked, length = bool(b1 & 0x80), b1 & 0x7F
    offset = 2
    if length == 126:
        (length,) = struct.unpack("!H", frame[2:4])
        offset = 4
        assert length >= 126  # minimal encoding
    elif length == 127:
        (length,) = struct.unpack("!Q", frame[2:10])
        offset = 10
        assert length >= 1 << 16 and length < 1 << 63  # minimal, most significant bit 0
    payload = frame[offset:]
    assert len(payload) == length
    return fin, rsv, opcode, masked, length, payload


class TestWsTextFrame:
    @pytest.mark.parametrize(
        ("size", "header_len"),
        [(0, 2), (1, 2), (125, 2), (126, 4), (127, 4), (65535, 4), (65536, 10), (70000, 10)],
    )
    def test_header(self, size: int, header_len: int) -> None:
        payload = bytes(i % 251 for i in range(size))
        frame = ws_text_frame(payload)
        assert len(frame) == header_len + size
        fin, rsv, opcode, masked, length, body = parse_ws_frame(frame)
        assert fin is True
        assert rsv == 0
        assert opcode == 0x1  # text
        assert masked is False  # server frames are never masked
        assert length == size
        assert body == payload

    def test_exact_small_frames(self) -> None:
        assert ws_text_frame(b"") == b"\x81\x00"
        assert ws_text_frame(b"o") == b"\x81\x01o"
        assert ws_text_frame(GO_AWAY) == b"\x81\x12" + GO_AWAY


# -- HTTP transports: what each writes (sockjs-protocol-0.3.3.py, per transport) -------------

HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.%s;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"""


class TestTransportFrames:
    def test_xhr(self) -> None:
        assert xhr_frame(OPEN_FRAME) == b"o\n"
        assert xhr_frame(b'a["x"]') == b'a["x"]\n'

    def test_eventsource(self) -> None:
        assert eventsource_frame(OPEN_FRAME) == b"data: o\r\n\r\n"
        # EventSource.test_transport: CR, LF, NUL arrive JSON-escaped, never raw
        frame = message_frame([quote("  \x00\n\r ")])
        assert eventsource_frame(frame) == b'data: a["  \\u0000\\n\\r "]\r\n\r\n'

    def test_htmlfile(self) -> None:
        assert htmlfile_frame(OPEN_FRAME) == b'<script>\np("o");\n</script>\r\n'
        assert htmlfile_frame(b'a["x"]') == b'<script>\np("a[\\"x\\"]");\n</script>\r\n'

    def test_htmlfile_frame_cannot_end_its_script(self) -> None:
        frame = message_frame([quote("</script><script>alert(1)</script>")])
        out = htmlfile_frame(frame)
        assert out.count(b"</script>") == 1 and out.endswith(b"</script>\r\n")
        assert json.loads(out[len(b"<script>\np("):-len(b");\n</script>\r\n")]) == frame.decode()

    def test_jsonp(self) -> None:
        assert jsonp_frame("callback", OPEN_FRAME) == b'/**/callback("o");\r\n'
        assert jsonp_frame("x", b'a["b"]') == b'/**/x("a[\\"b\\"]");\r\n'
        assert jsonp_frame("x", GO_AWAY) == b'/**/x("c[3000,\\"Go away!\\"]");\r\n'

    def test_js_string_keeps_unicode_and_escapes(self) -> None:
        frame = message_frame([quote("é\u2028")])
        assert json.loads(js_string(frame)) == frame.decode()
        assert "é".encode() in js_string(frame)

    def test_htmlfile_prelude(self) -> None:
        prelude = htmlfile_prelude("callback")
        assert prelude.decode().strip() == HTMLFILE_HEAD % "callback"
        assert len(prelude) > 1024 and prelude.endswith(b"\r\n\r\n")

    def test_preludes(self) -> None:
        assert XHR_STREAMING_PRELUDE == b"h" * 2048 + b"\n"
        assert EVENTSOURCE_PRELUDE == b"\r\n"

    @pytest.mark.parametrize("data", [b"", b"o\n", b"x" * 300])
    def test_http_chunk(self, data: bytes) -> None:
        chunk = http_chunk(data)
        size, _, rest = chunk.partition(b"\r\n")
        assert int(size, 16) == len(data) and rest == data + b"\r\n"


class TestCallback:
    @pytest.mark.parametrize("name", ["callback", "x", "_jp.a1b2", "a-b_c.d", "A" * 32])
    def test_accepted(self, name: str) -> None:
        assert callback_name(name) == name

    @pytest.mark.parametrize("name", [None, ""])
    def test_required(self, name: str | None) -> None:
        with pytest.raises(CallbackRequired, match='"callback" parameter required'):
            callback_name(name)

    @pytest.mark.parametrize("name", ["a b", "x(1)", "alert();x", "</script>", "é", "A" * 33,
                                      "a\nb"])
    def test_refused(self, name: str) -> None:
        with pytest.raises(InvalidCallback):
            callback_name(name)


class TestSendPayload:
    @pytest.mark.parametrize(
        ("body", "messages"),
        [(b'["a"]', ["a"]), (b"[]", []), (b'["a","b"]', ["a", "b"]), ('["é"]', ["é"]),
         (b'["\\ud800"]', ["\ud800"]), (b' [ "x" ] ', ["x"])],
    )
    def test_xhr_send(self, body: bytes | str, messages: list[str]) -> None:
        assert decode_send_payload(body) == messages

    @pytest.mark.parametrize("body", [b"", b'"a"', b"{}", b"[1]", b'["a",null]', b"null"])
    def test_payload_expected(self, body: bytes) -> None:
        with pytest.raises(PayloadExpected, match=r"Payload expected\."):
            decode_send_payload(body)

    @pytest.mark.parametrize("body", [b'["x', b"x", b"\xff", b"[", b'["a",]'])
    def test_broken_json(self, body: bytes) -> None:
        with pytest.raises(BrokenJSON, match=r"Broken JSON encoding\."):
            decode_send_payload(body)

    def test_jsonp_send_form_and_raw(self) -> None:
        assert decode_jsonp_send(b"d=%5B%22x%22%5D", form=True) == ["x"]
        assert decode_jsonp_send(b'["%61bc"]', form=False) == ["%61bc"]
        assert decode_jsonp_send(b"d=%5B%22%C3%A9%22%5D&e=1", form=True) == ["é"]

    @pytest.mark.parametrize("body", [b"", b"d=", b"p=p"])
    def test_jsonp_send_payload_expected(self, body: bytes) -> None:
        with pytest.raises(PayloadExpected):
            decode_jsonp_send(body, form=True)

    @pytest.mark.parametrize("body", [b"d=%5B%22x", b"d=%FF"])
    def test_jsonp_send_broken(self, body: bytes) -> None:
        with pytest.raises(BrokenJSON):
            decode_jsonp_send(body, form=True)

    def test_request_errors_are_value_errors_with_their_answer(self) -> None:
        for error in (PayloadExpected, BrokenJSON, CallbackRequired, InvalidCallback):
            assert issubclass(error, SockJSRequestError) and issubclass(error, ValueError)
            assert str(error()) == error.message
