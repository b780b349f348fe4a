"""Signatures of PROTOCOL.md 4: canonical JSON, trigger keys, channel tokens, the time window.

Every signature the original server checked hashed a string built with JavaScript's
`JSON.stringify`, so the hard part is re-serialising a parsed value exactly as V8 would
(`canonical_json`). `php_json` is the one other serialisation clients in the field sign with:
the PHP SDK hashes `json_encode($data)` while posting the data as a form.

Pure functions only: no I/O, no clock (callers pass `now`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping

__all__ = [
    "canonical_json",
    "channel_token",
    "js_key_order",
    "parse_json_like_js",
    "php_json",
    "sha256_hex",
    "signatures_equal",
    "timestamp_in_window",
    "trigger_key",
]

# Signatures older or newer than this many seconds are refused (PROTOCOL.md 4.2).
WINDOW_SECONDS = 600

_MAX_SAFE_INTEGER = 2**53
_MAX_ARRAY_INDEX = 2**32 - 2  # ECMA-262 array index: canonical numeric string < 2**32 - 1
_INDEX_RE = re.compile(r"0|[1-9][0-9]{0,9}")

# -- strings ---------------------------------------------------------------------------------

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                  "\t": "\\t"}
# JSON.stringify escapes `"`, `\`, control characters and lone surrogates (ES2019), nothing else.
# A high+low surrogate pair held as two code points is one astral character in UTF-16: join it.
_JS_ESCAPE_RE = re.compile('[\\\\"\x00-\x1f]|[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]')
# json_encode (default flags) also escapes `/` and every non-ASCII character.
_PHP_ESCAPE_RE = re.compile('[\\\\"/\x00-\x1f]|[^\x00-\x7f]')


def _js_escape(match: re.Match[str]) -> str:
    s = match.group()
    if len(s) == 2:  # a surrogate pair: the character it encodes, unescaped
        return chr(0x10000 + ((ord(s[0]) - 0xD800) << 10) + (ord(s[1]) - 0xDC00))
    return _SHORT_ESCAPES.get(s) or f"\\u{ord(s):04x}"


def _php_escape(match: re.Match[str]) -> str:
    s = match.group()
    if s == "/":
        return "\\/"
    short = _SHORT_ESCAPES.get(s)
    if short:
        return short
    cp = ord(s)
    if cp > 0xFFFF:  # astral: a UTF-16 surrogate pair, as PHP writes it
        cp -= 0x10000
        return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"
    return f"\\u{cp:04x}"


# -- numbers ---------------------------------------------------------------------------------

_REPR_RE = re.compile(r"(\d+)(?:\.(\d+))?(?:e([+-]\d+))?")


def _float_digits(x: float) -> tuple[str, int]:
    """Shortest round-trip digits `d` and point position `n` of a finite x > 0: x = 0.d * 10**n.

    repr() gives the same shortest digits as ECMA-262 Number::toString and PHP's
    serialize_precision=-1; only the layout around them differs.
    """
    m = _REPR_RE.fullmatch(repr(x))
    assert m is not None, x
    whole, frac, exp = m.group(1), m.group(2) or "", int(m.group(3) or 0)
    digits = whole + frac
    n = len(whole) + exp
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    return stripped.rstrip("0"), n


def _js_number(x: int | float) -> str:
    """ECMA-262 Number::toString, applied to the double JSON.parse would have produced."""
    if isinstance(x, int):
        if -_MAX_SAFE_INTEGER <= x <= _MAX_SAFE_INTEGER:
            return str(x)  # exact as a double, and far below 1e21
        try:
            x = float(x)  # a JS double rounds the literal the same way
        except OverflowError:
            return "null"  # JSON.parse gives Infinity, which JSON.stringify writes as null
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"  # -0 too
    if x < 0:
        return "-" + _js_number(-x)
    d, n = _float_digits(x)
    k = len(d)
    if k <= n <= 21:
        return d + "0" * (n - k)
    if 0 < n <= 21:
        return d[:n] + "." + d[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + d
    e = n - 1
    mantissa = d if k == 1 else d[0] + "." + d[1:]
    return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _php_number(x: int | float) -> str:
    """PHP json_encode of a number: ints as-is, floats via php_gcvt(precision 17, mode 0)."""
    if isinstance(x, int) and -(2**63) <= x < 2**63:
        return str(x)
    try:
        x = float(x)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        return "0"  # json_encode fails on INF/NAN; with partial output it writes 0
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    if x < 0:
        return "-" + _php_number(-x)
    d, n = _float_digits(x)
    if (n < -3) if n < 0 else (n > 17):
        e = n - 1
        return f"{d[0]}.{d[1:] or '0'}e{'+' if e >= 0 else '-'}{abs(e)}"
    if n <= 0:
        return "0." + "0" * -n + d
    if len(d) <= n:
        return d + "0" * (n - len(d))  # no ".0": PRESERVE_ZERO_FRACTION is not a default flag
    return d[:n] + "." + d[n:]


# -- serialisers -----------------------------------------------------------------------------


def _is_array_index(key: str) -> bool:
    return _INDEX_RE.fullmatch(key) is not None and int(key) <= _MAX_ARRAY_INDEX


def js_key_order(obj: Mapping[str, object]) -> list[str]:
    """The order JavaScript enumerates an object's keys in (OrdinaryOwnPropertyKeys).

    Array-index keys ("0".."4294967294", no leading zeros) first, ascending; then the other
    keys in insertion order.
    """
    keys = list(obj)
    indices = [k for k in keys if _is_array_index(k)]
    if not indices:
        return keys
    indices.sort(key=int)
    return indices + [k for k in keys if not _is_array_index(k)]


def canonical_json(value: object) -> str:
    """`JSON.stringify(value)` as V8 writes it (PROTOCOL.md 4.2 CANON, 4.1 JSON_STRINGIFY).

    `value` is what a JSON parser produced (dict/list/str/int/float/bool/None); the result must
    match the original server byte for byte, since it is hashed into signatures.
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return '"' + _JS_ESCAPE_RE.sub(_js_escape, value) + '"'
    if isinstance(value, int | float):
        return _js_number(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(
            canonical_json(k) + ":" + canonical_json(value[k]) for k in js_key_order(value)
        ) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _php_is_list(obj: dict[str, object]) -> bool:
    # PHP turns "0", "1", ... keys into integers; an array keyed 0..n-1 in order is a JSON list.
    return all(k == str(i) for i, k in enumerate(obj))


def php_json(value: object) -> str:
    """PHP `json_encode($value)` with default flags, for the PHP SDK's signature (PROTOCOL 4.2).

    The SDK signs `json_encode($data)` but posts `http_build_query($data)`: `/` is escaped,
    non-ASCII is `\\uXXXX`, an empty (or 0..n-1 keyed) array is a JSON list, keys keep PHP's
    insertion order (no integer-key reordering).
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return '"' + _PHP_ESCAPE_RE.sub(_php_escape, value) + '"'
    if isinstance(value, int | float):
        return _php_number(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(php_json(v) for v in value) + "]"
    if isinstance(value, dict):
        if _php_is_list(value):
            return "[" + ",".join(php_json(v) for v in value.values()) + "]"
        return "{" + ",".join(php_json(str(k)) + ":" + php_json(v) for k, v in value.items()) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _reject_constant(name: str) -> object:
    raise ValueError(f"invalid JSON literal {name}")  # Python accepts NaN/Infinity, JS does not


def _parse_int(literal: str) -> int | float:
    # int() refuses more than 4300 digits; such a literal is +-Infinity as a double anyway.
    return int(literal) if len(literal) <= 400 else float(literal)


# One decoder for every call: json.loads with hooks would build one (and its scanner) each time.
_JS_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_parse_int)


def parse_json_like_js(text: str | bytes) -> object:
    """`JSON.parse(text)`: duplicate keys keep the last value at the first key's position.

    Raises ValueError on anything JSON.parse would reject. Bytes must be UTF-8 (no UTF-16/32
    sniffing as json.loads would do).
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")  # UnicodeDecodeError is a ValueError
    try:
        # A plain dict per object already gives JS's duplicate-key rule; no hook needed.
        return _JS_DECODER.decode(text)  # a leading BOM is refused, as JSON.parse does
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


# -- signatures ------------------------------------------------------------------------------


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Node hashes strings as WTF-16 -> UTF-8: pairs join, lone surrogates become U+FFFD.
        fixed = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return fixed.encode("utf-8")


def sha256_hex(text: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 bytes of `text` (PROTOCOL.md 4)."""
    return hashlib.sha256(_utf8(text)).hexdigest()


def channel_token(socket_id: str, channel: str, data: object | None, secret: str) -> str:
    """The token a client must send to subscribe to a private channel (PROTOCOL.md 4.1).

    `data` is the presence value exactly as the client sent it (usually a JSON *string*, which
    gets JSON-encoded again); None means the client sent no `data`.
    """
    parts = [socket_id, channel.lower()]
    if data is not None:
        parts.append(canonical_json(data))
    parts.append(secret)
    return sha256_hex(":".join(parts))


def trigger_key(channel: str, event: str, timestamp: int, body_canon: str, secret: str) -> str:
    """The `auth_key` of a trigger request (PROTOCOL.md 4.2); `body_canon` is already serialised."""
    return sha256_hex(f"{channel.lower()}:{event}:{timestamp}:{body_canon}:{secret}")


def signatures_equal(a: str, b: str) -> bool:
    """Constant-time comparison (PROTOCOL.md 4); a non-ASCII value is simply unequal."""
    try:
        a_bytes, b_bytes = a.encode("ascii"), b.encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(a_bytes, b_bytes)


def timestamp_in_window(timestamp: int, now: float, window: int = WINDOW_SECONDS) -> bool:
    """False when `timestamp` is `window` seconds or more away from `now`, either way (4.2).

    The original rounded the clock with Math.round(ms / 1000): halves round up.
    """
    now_seconds = math.floor(now + 0.5)
    return abs(now_seconds - timestamp) < window
