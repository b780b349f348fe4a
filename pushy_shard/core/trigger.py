"""Parse and verify one trigger request (PROTOCOL.md 4.2, 4.3), without any I/O.

The front hands over what it read from HTTP (path channel, query, body bytes, Content-Type)
and the clock; it gets back a `Trigger` to route, or a `TriggerError` to answer with.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from pushy_shard.core.auth import (
    canonical_json,
    js_key_order,
    parse_json_like_js,
    php_json,
    signatures_equal,
    timestamp_in_window,
    trigger_key,
)
from pushy_shard.errors import (
    BodyTooLarge,
    InvalidBody,
    InvalidCredentials,
    MissingParameters,
    TimestampOutOfBounds,
    UnsupportedContentType,
)

__all__ = ["Trigger", "parse_form", "verify_trigger"]


@dataclass(frozen=True, slots=True)
class Trigger:
    """A verified trigger: deliver `event`/`data` to `channel`, skipping `socket_id`."""

    channel: str  # as in the URL path (already URL-decoded by the caller)
    event: str
    timestamp: int
    data: object  # the parsed body (dict for forms / {} for empty)
    socket_id: str | None  # exclude this connection; None when absent/empty
    signature: str = field(default="", repr=False, compare=False)  # auth_key: replay checks


# -- application/x-www-form-urlencoded, as Node's `qs` 6.5 (default options) parses it ---------

_DEPTH = 5  # bracket segments kept; the rest of the key is one literal segment
_ARRAY_LIMIT = 20  # a[21]=x makes an object key "21", not a 22-slot array
_PARAMETER_LIMIT = 1000  # parameters after the 1000th are ignored
# Object.prototype's own properties: qs drops a parameter naming one (allowPrototypes=false).
_PROTO_KEYS = frozenset({
    "constructor", "__defineGetter__", "__defineSetter__", "hasOwnProperty", "__lookupGetter__",
    "__lookupSetter__", "isPrototypeOf", "propertyIsEnumerable", "toString", "valueOf",
    "__proto__", "toLocaleString",
})
_SEGMENT_RE = re.compile(r"\[[^\[\]]*\]")
_PERCENT_OK_RE = re.compile(r"(?:[^%]|%[0-9A-Fa-f]{2})*")
_INDEX_RE = re.compile(r"0|[1-9][0-9]*")


class _Hole:
    """An unset slot of a sparse JS array; `compact` removes them at the end."""

    __slots__ = ()


_HOLE = _Hole()


def _decode(s: str) -> str:
    """qs's decoder: `+` is space, then decodeURIComponent; if that throws, `s` unchanged."""
    if "%" not in s:
        return s.replace("+", " ")
    if _PERCENT_OK_RE.fullmatch(s) is None:
        return s  # a malformed % escape: URIError, qs keeps the raw text
    try:
        return urllib.parse.unquote_to_bytes(s.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        return s  # escapes that are not UTF-8: URIError too


def _split_key(key: str) -> list[str] | None:
    """qs parseKeys: parent, up to 5 `[...]` segments, then the bracketed remainder."""
    first = _SEGMENT_RE.search(key)
    parent = key[: first.start()] if first else key
    chain: list[str] = []
    if parent:
        if parent in _PROTO_KEYS:
            return None
        chain.append(parent)
    segments = list(_SEGMENT_RE.finditer(key))
    for seg in segments[:_DEPTH]:
        if seg.group()[1:-1] in _PROTO_KEYS:
            return None
        chain.append(seg.group())
    if len(segments) > _DEPTH:
        chain.append("[" + key[segments[_DEPTH].start():] + "]")
    return chain


def _build(chain: list[str], leaf: object) -> object:
    """qs parseObject: the nested value for one key path, innermost first."""
    for root in reversed(chain):
        if root == "[]":
            leaf = list(leaf) if isinstance(leaf, list) else [leaf]  # [].concat(leaf)
            continue
        clean = root[1:-1] if len(root) >= 2 and root[0] == "[" and root[-1] == "]" else root
        if clean != root and len(clean) <= 2 and _INDEX_RE.fullmatch(clean) \
                and int(clean) <= _ARRAY_LIMIT:
            leaf = [_HOLE] * int(clean) + [leaf]
        elif clean != "__proto__":
            leaf = {clean: leaf}
        else:
            leaf = {}
    return leaf


def _own_items(value: dict[str, object] | list[object]) -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return list(value.items())
    return [(str(i), v) for i, v in enumerate(value) if v is not _HOLE]


def _merge(target: object, source: object) -> object:
    """qs utils.merge, quirks included, so the signed JSON matches the original's."""
    if source is None or source == "":
        return target
    if not isinstance(source, dict | list):
        if isinstance(target, list):
            target.append(source)
        elif isinstance(target, dict):
            if not isinstance(source, str) or source not in _PROTO_KEYS:
                target[source] = True
        else:
            return [target, source]
        return target
    if not isinstance(target, dict | list):
        return [target, *source] if isinstance(source, list) else [target, source]
    if isinstance(target, list) and isinstance(source, list):
        for i, item in enumerate(source):
            if item is _HOLE:
                continue
            if i < len(target) and target[i] is not _HOLE:
                current = target[i]
                if isinstance(current, dict | list) and isinstance(item, dict | list):
                    target[i] = _merge(current, item)
                else:
                    target.append(item)
            else:
                target.extend([_HOLE] * (i + 1 - len(target)))
                target[i] = item
        return target
    merged: dict[str, object] = (
        dict(_own_items(target)) if isinstance(target, list) else target
    )
    for key, value in _own_items(source):
        merged[key] = _merge(merged[key], value) if key in merged else value
    return merged


def _compact(value: object) -> object:
    if isinstance(value, list):
        return [_compact(v) for v in value if v is not _HOLE]
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    return value


def parse_form(body: str) -> dict[str, object]:
    """Parse a form body the way the original's bodyParser (qs) did, for CANON (PROTOCOL 4.2).

    `a[b]=1` nests, `a[]=1&a[]=2` and `a[0]=x` make lists, repeated keys make lists. Values are
    strings (a few qs merge quirks yield `True`); the result is a fresh dict of dicts/lists.
    """
    if not body:
        return {}
    flat: dict[str, object] = {}
    for part in body.split("&")[:_PARAMETER_LIMIT]:
        bracket_eq = part.find("]=")
        pos = part.find("=") if bracket_eq == -1 else bracket_eq + 1
        if pos == -1:
            key, value = _decode(part), ""
        else:
            key, value = _decode(part[:pos]), _decode(part[pos + 1:])
        if key in flat:
            old = flat[key]
            flat[key] = [*old, value] if isinstance(old, list) else [old, value]
        else:
            flat[key] = value
    # qs walks its flat object in JS key order (integer-like keys first); that order decides
    # how colliding keys such as `0` and `0[a]` merge.
    position = {key: i for i, key in enumerate(flat)}
    first_seen: dict[str, int] = {}
    result: object = {}
    for key in js_key_order(flat):
        chain = _split_key(key) if key else None
        if chain is None:
            continue
        built = _build(chain, flat[key])
        assert isinstance(built, dict | list)
        for top, _ in _own_items(built):
            first_seen[top] = min(first_seen.get(top, position[key]), position[key])
        result = _merge(result, built)
    compacted = _compact(result)
    assert isinstance(compacted, dict)
    # Top-level keys in the order the body first named them, as PHP's array had them (php_json).
    return {k: compacted[k] for k in sorted(compacted, key=lambda k: first_seen.get(k, 0))}


# -- the request -----------------------------------------------------------------------------

# ECMA-262 WhiteSpace and LineTerminator, which parseInt skips.
_JS_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_PARSE_INT_RE = re.compile(r"([+-]?)(?:0[xX]([0-9a-fA-F]+)|([0-9]+))")


def js_parse_int(text: str) -> int | None:
    """JavaScript `parseInt(text)` (no radix, so `0x` means hex); None where it gives NaN."""
    m = _PARSE_INT_RE.match(text.lstrip(_JS_SPACE))
    if m is None:
        return None
    sign, hex_digits, dec_digits = m.groups()
    if hex_digits:
        value = int(hex_digits, 16)
    else:
        digits = dec_digits.lstrip("0") or "0"
        # Past 400 digits the exact value does not matter (far outside any time window), and
        # int() refuses more than 4300.
        value = int(digits) if len(digits) <= 400 else 10**400
    return -value if sign == "-" else value


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _parse_json_body(body: bytes) -> object:
    try:
        data = parse_json_like_js(body)
    except ValueError as exc:  # UnicodeDecodeError included
        raise InvalidBody(f"Invalid JSON body: {exc}") from None
    if not isinstance(data, dict | list):
        # bodyParser's strict mode refused anything but an object or array.
        raise InvalidBody("JSON body must be an object or array")
    return data


def _parse_form_body(body: bytes) -> object:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidBody("Form body is not UTF-8") from None
    return parse_form(text)


def _parse_body(body: bytes, content_type: str | None) -> object:
    """The event data: what the original's express.bodyParser made of the body (4.2)."""
    if not body:
        return {}  # CANON of an empty body is {} whatever the type
    media = _media_type(content_type)
    if media == "application/json" or media.endswith("+json"):
        return _parse_json_body(body)
    if media == "application/x-www-form-urlencoded":
        return _parse_form_body(body)
    if not media:
        # No type: a form (what `curl -d` means), unless it plainly is JSON.
        if body.lstrip(b" \t\r\n")[:1] in (b"{", b"["):
            return _parse_json_body(body)
        return _parse_form_body(body)
    raise UnsupportedContentType()


def _signed(auth_key: str, channel: str, event: str, timestamp: int, body: str,
            secret: str) -> bool:
    return signatures_equal(auth_key, trigger_key(channel, event, timestamp, body, secret))


def verify_trigger(
    *,
    channel: str,
    query: Mapping[str, str],
    body: bytes,
    content_type: str | None,
    secret: str,
    now: float,
    max_body: int = 65536,
) -> Trigger:
    """Check a trigger request in PROTOCOL.md 4.3's order; raise the first TriggerError found.

    Order: missing parameters, timestamp window, body (size, type, syntax), signature.
    `now` is the server clock in Unix seconds. The error never echoes the given auth_key.
    """
    event = query.get("event") or ""
    raw_timestamp = query.get("timestamp") or ""
    auth_key = query.get("auth_key") or ""
    if not (event and raw_timestamp and auth_key and channel):
        raise MissingParameters()

    # 4.2: parseInt(timestamp); the parsed number is what the signature string contains.
    timestamp = js_parse_int(raw_timestamp)
    if timestamp is None or not timestamp_in_window(timestamp, now):
        raise TimestampOutOfBounds()

    if len(body) > max_body:
        raise BodyTooLarge()
    data = _parse_body(body, content_type)

    try:
        if not _signed(auth_key, channel, event, timestamp, canonical_json(data), secret):
            # the PHP SDK's variants, only when the JavaScript one is not it: which variant
            # a client signed is no secret (each comparison is constant-time)
            variants = {php_json(data), *(("[]",) if not body else ())}  # json_encode(array())
            if not any([_signed(auth_key, channel, event, timestamp, text, secret)
                        for text in sorted(variants)]):
                raise InvalidCredentials()
    except RecursionError:
        raise InvalidBody("JSON body nested too deeply") from None

    return Trigger(
        channel=channel,
        event=event,
        timestamp=timestamp,
        data=data,
        socket_id=query.get("socket_id") or None,
        signature=auth_key,
    )
