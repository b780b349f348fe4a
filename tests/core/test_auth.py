"""pushy_shard.core.auth against PROTOCOL.md 4 (signatures) and JavaScript's JSON.stringify."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import shutil
import subprocess
import sys

import pytest

from pushy_shard.core.auth import (
    canonical_json,
    channel_token,
    js_key_order,
    parse_json_like_js,
    php_json,
    sha256_hex,
    signatures_equal,
    timestamp_in_window,
    trigger_key,
)

SOCKET_ID = "1a2b3c4d-0000-4000-8000-000000000001"


# -- 4.1 private-channel token ---------------------------------------------------------------


def test_4_1_worked_example_with_presence_data() -> None:
    token = channel_token(SOCKET_ID, "private-Room", '{"name":"alice"}', "secret")
    assert token == "5c77cf464d0ef513291ccb78fca6184e6f291953a4d43069e17c77cb7750feb2"


def test_4_1_worked_example_without_data() -> None:
    token = channel_token(SOCKET_ID, "private-Room", None, "secret")
    assert token == "e2fe0d53a1015bc3d1cf140e1a677340b1ebcb9dd681b813b5fa430fc6e581b5"


def test_4_1_presence_string_is_json_encoded_again() -> None:
    expected = sha256_hex(f'{SOCKET_ID}:private-room:"{{\\"name\\":\\"alice\\"}}":secret')
    assert channel_token(SOCKET_ID, "PRIVATE-ROOM", '{"name":"alice"}', "secret") == expected


def test_4_1_non_string_data_is_stringified_once() -> None:
    expected = sha256_hex(f'{SOCKET_ID}:private-room:{{"name":"alice"}}:secret')
    assert channel_token(SOCKET_ID, "private-room", {"name": "alice"}, "secret") == expected


# -- 4.2 trigger auth_key --------------------------------------------------------------------


def test_4_2_worked_example_empty_body() -> None:
    key = trigger_key("hello", "test", 123456789, canonical_json({}), "secret")
    assert key == "fc7da7a7f1e50f242f6b57975ea4914aba1e6c31b56165948cd3d090b7ff0625"


def test_4_2_worked_example_with_body() -> None:
    body = canonical_json(parse_json_like_js('{ "msg": "hi", "n": 2 }'))
    assert body == '{"msg":"hi","n":2}'
    key = trigger_key("hello", "test", 123456789, body, "secret")
    assert key == "345b7c0b34943befaffeb5fc8be8dac49377f3a4b0b19d42da4a7c0d09290fa4"


def test_4_2_channel_is_lowercased_event_is_not() -> None:
    assert trigger_key("HeLLo", "test", 1, "{}", "s") == trigger_key("hello", "test", 1, "{}", "s")
    assert trigger_key("hello", "Test", 1, "{}", "s") != trigger_key("hello", "test", 1, "{}", "s")


# -- 4.2 CANON: JSON.stringify ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("é€😀", '"é€😀"'),
        ("a/b", '"a/b"'),
        ('q"b\\s', '"q\\"b\\\\s"'),
        ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
        ("\x00\x01\x1f\x7f", '"\\u0000\\u0001\\u001f\x7f"'),
        ("\u2028\u2029", '"\u2028\u2029"'),
        ("\ud800", '"\\ud800"'),  # lone surrogates are escaped (ES2019 well-formed stringify)
        ("x\udc00y\udbff", '"x\\udc00y\\udbff"'),
        ("\ud83d\ude00", '"😀"'),  # a pair held as two code points is one character
        ([1, [2, [3, []]], {}], '[1,[2,[3,[]]],{}]'),
        ({"a": [True, False, None]}, '{"a":[true,false,null]}'),
        (1.0, "1"),
        (-0.0, "0"),
        (0, "0"),
        (-5, "-5"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (123456789012345680000.0, "123456789012345680000"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (0.000001, "0.000001"),
        (0.0000015, "0.0000015"),
        (123e-20, "1.23e-18"),
        (1.5, "1.5"),
        (-1.25e-300, "-1.25e-300"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (float("nan"), "null"),
        (float("inf"), "null"),
        (float("-inf"), "null"),
        (12345678901234567890, "12345678901234567000"),
        (2**53, "9007199254740992"),
        (2**53 + 1, "9007199254740992"),  # a double cannot hold it
        (-(2**53) - 3, "-9007199254740996"),
        (10**21, "1e+21"),
        (10**400, "null"),  # Infinity as a double
    ],
)
def test_canonical_json_vectors(value: object, expected: str) -> None:
    assert canonical_json(value) == expected


def test_canonical_json_integer_like_keys_come_first() -> None:
    assert canonical_json({"b": 1, "2": 2, "1": 3}) == '{"1":3,"2":2,"b":1}'


def test_canonical_json_non_index_keys_keep_insertion_order() -> None:
    value = {"b": 1, "01": 2, "-1": 3, "1.5": 4, "4294967295": 5, "4294967294": 6, "0": 7}
    assert canonical_json(value) == (
        '{"0":7,"4294967294":6,"b":1,"01":2,"-1":3,"1.5":4,"4294967295":5}'
    )
    assert js_key_order(value) == ["0", "4294967294", "b", "01", "-1", "1.5", "4294967295"]


def test_canonical_json_rejects_non_json_values() -> None:
    with pytest.raises(TypeError):
        canonical_json({1, 2})


# -- JSON.parse ------------------------------------------------------------------------------


def test_parse_duplicate_keys_keep_last_value_at_first_position() -> None:
    value = parse_json_like_js('{"a":1,"b":2,"a":3}')
    assert value == {"a": 3, "b": 2}
    assert canonical_json(value) == '{"a":3,"b":2}'


@pytest.mark.parametrize(
    "text",
    ["", "{", "NaN", "[Infinity]", "[-Infinity]", "{'a':1}", "[1,]", '"\x01"', "01", "\ufeff{}"],
)
def test_parse_rejects_what_json_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_json_like_js(text)


def test_parse_bytes_must_be_utf8() -> None:
    assert parse_json_like_js('{"é":1}'.encode()) == {"é": 1}
    with pytest.raises(ValueError):
        parse_json_like_js('{"a":1}'.encode("utf-16"))
    with pytest.raises(ValueError):
        parse_json_like_js(b'{"a":"\xff"}')


def test_parse_numbers_like_doubles() -> None:
    assert canonical_json(parse_json_like_js("[12345678901234567890]")) == "[12345678901234567000]"
    assert canonical_json(parse_json_like_js("[" + "9" * 5000 + "]")) == "[null]"
    assert canonical_json(parse_json_like_js("[1e400,-0,-0.0]")) == "[null,0,0]"


def test_parse_deep_nesting_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_json_like_js("[" * 100_000 + "]" * 100_000)


def _random_json_text(rnd: random.Random, depth: int = 0) -> str:
    """Raw JSON text, so number literals and escapes reach both parsers untouched."""
    kind = rnd.randrange(10 if depth < 4 else 6)
    if kind == 0:
        return rnd.choice(["true", "false", "null"])
    if kind in (1, 2):
        return rnd.choice([
            "0", "-0", "-0.0", "1", "1.0", "1e21", "1E21", "1e20", "123e-20", "1e-7", "1.5e-7",
            "0.000001", "0.0000001", "12345678901234567890", "9007199254740993", "1e308",
            "1e309", "-1e-400", "5e-324", "0.1", "100", "2.5e+3", "-123.456e-5",
        ] + [repr(rnd.uniform(-1e6, 1e6)), str(rnd.randrange(-(10**25), 10**25)),
             f"{rnd.randrange(1, 10)}.{rnd.randrange(10**8)}e{rnd.randrange(-30, 30)}",
             repr(rnd.random() * 10 ** rnd.randrange(-25, 25))])
    if kind in (3, 4, 5):
        return _random_string(rnd)
    if kind in (6, 7):
        items = [_random_json_text(rnd, depth + 1) for _ in range(rnd.randrange(5))]
        return "[" + ",".join(items) + "]"
    members = []
    for _ in range(rnd.randrange(6)):
        key = rnd.choice(["a", "b", "0", "1", "2", "10", "01", "-1", "4294967294", "4294967295",
                          "__proto__", "é", "a/b", _random_string(rnd)[1:-1]])
        members.append(json.dumps(key, ensure_ascii=rnd.random() < 0.5) + ":"
                       + _random_json_text(rnd, depth + 1))
    return "{" + ",".join(members) + "}"


def _random_string(rnd: random.Random) -> str:
    pieces = [
        "a", "Z", " ", "/", "\\/", '\\"', "\\\\", "\\n", "\\t", "\\b", "\\f", "\\r", "\\u0000",
        "\\u001f", "\\u007f", "\x7f", "é", "€", "😀", "\\ud83d\\ude00", "\\ud800", "\\udfff",
        "\\ud83d", "\u2028", "\\u00e9", "<", "&",
    ]
    return '"' + "".join(rnd.choice(pieces) for _ in range(rnd.randrange(8))) + '"'


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH: no JS reference")
def test_canonical_json_matches_node_json_stringify() -> None:
    rnd = random.Random(20240601)
    texts = [_random_json_text(rnd) for _ in range(250)]
    script = (
        "const t=JSON.parse(require('fs').readFileSync(0,'utf8'));"
        "process.stdout.write(JSON.stringify(t.map(s=>JSON.stringify(JSON.parse(s)))))"
    )
    out = subprocess.run(
        ["node", "-e", script], input=json.dumps(texts), capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout
    expected = json.loads(out)
    assert len(expected) == len(texts)
    for text, want in zip(texts, expected, strict=True):
        assert canonical_json(parse_json_like_js(text)) == want, text


# -- 4.2 the PHP SDK's json_encode variant ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a/b", '"a\\/b"'),
        ("é", '"\\u00e9"'),
        ("😀", '"\\ud83d\\ude00"'),
        ("€\x01\n\x7f", '"\\u20ac\\u0001\\n\x7f"'),
        ({}, "[]"),
        ([], "[]"),
        ({"a": {}, "b": []}, '{"a":[],"b":[]}'),
        ({"0": "x", "1": "y"}, '["x","y"]'),  # PHP array keyed 0..n-1
        ({"1": "x", "0": "y"}, '{"1":"x","0":"y"}'),  # not a list, and no reordering
        ({"b": 1, "2": 2}, '{"b":1,"2":2}'),
        ({"msg": "hi", "n": "2"}, '{"msg":"hi","n":"2"}'),
        (True, "true"),
        (None, "null"),
        (1.0, "1"),  # no .0 without JSON_PRESERVE_ZERO_FRACTION
        (0.1, "0.1"),
        (0.0001, "0.0001"),
        (0.00001, "1.0e-5"),
        (1e17, "1.0e+17"),
        (1e16, "10000000000000000"),
        (1.5e300, "1.5e+300"),
        (-0.0, "-0"),
        (2**63, "9.223372036854776e+18"),  # beyond int64: a PHP float
    ],
)
def test_php_json_vectors(value: object, expected: str) -> None:
    assert php_json(value) == expected


# -- 4 hashing and comparison ----------------------------------------------------------------


def test_sha256_hex_is_utf8() -> None:
    assert sha256_hex("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert sha256_hex("é") == hashlib.sha256("é".encode()).hexdigest()


def test_sha256_hex_lone_surrogate_hashes_as_replacement_character() -> None:
    # Node's crypto writes a lone surrogate as U+FFFD; a split pair as the joined character.
    assert sha256_hex("a\ud800b") == sha256_hex("a\ufffdb")
    assert sha256_hex("\ud83d\ude00") == sha256_hex("😀")


def test_signatures_equal() -> None:
    key = "fc7da7a7f1e50f242f6b57975ea4914aba1e6c31b56165948cd3d090b7ff0625"
    assert signatures_equal(key, key)
    assert not signatures_equal(key, key.upper())
    assert not signatures_equal(key, key[:-1])
    assert not signatures_equal(key, "")
    assert not signatures_equal("é", "é")
    assert not signatures_equal(key, "\ud800")


def test_signatures_equal_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert signatures_equal("abc", "abc")
    assert calls == [(b"abc", b"abc")]


# -- 4.2 the 600 s window --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "ok"), [(0, True), (599, True), (-599, True), (600, False), (-600, False)]
)
def test_window_edges(offset: int, ok: bool) -> None:
    now = 1_700_000_000.0
    assert timestamp_in_window(int(now) + offset, now) is ok


def test_window_rounds_the_clock_half_up() -> None:
    # Math.round(ms / 1000): 1000.5 s is 1001, so 1601 is 600 away and 401 is 600 away.
    assert not timestamp_in_window(1601, 1000.5)
    assert timestamp_in_window(402, 1000.5)
    assert not timestamp_in_window(401, 1000.5)
    assert timestamp_in_window(1599, 1000.4)
    assert not timestamp_in_window(400, 1000.4)


# -- purity ----------------------------------------------------------------------------------


def test_core_imports_no_io_framework() -> None:
    code = (
        "import sys, pushy_shard.core.auth, pushy_shard.core.trigger; "
        "print([m for m in ('asyncio', 'aiohttp', 'zmq') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
