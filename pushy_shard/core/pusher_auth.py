"""The Pusher signatures (PUSHER.md 3, 6, 8, 9): channel and sign-in `auth`, HTTP API
requests, webhook bodies.

Every signature is lowercase hex HMAC-SHA256 and every comparison is constant time, made on
bytes, over the whole value. Pure functions: no I/O, no clock (callers pass `now`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pushy_shard.errors import ApiError

__all__ = [
    "AUTH_VERSION",
    "TIMESTAMP_WINDOW",
    "AppKeys",
    "SignedRequest",
    "auth_matches",
    "channel_string",
    "check_path_app",
    "request_string",
    "sign",
    "signin_string",
    "verify",
    "webhook_signature",
]

AUTH_VERSION = "1.0"
TIMESTAMP_WINDOW = 600  # seconds either side of `now` (PUSHER.md 8, a Choice)

# The parameters verify reads; each must appear at most once, or which one counts is a guess.
_AUTH_PARAMS = ("auth_key", "auth_timestamp", "auth_version", "auth_signature", "body_md5")
_REQUIRED = ("auth_key", "auth_timestamp", "auth_version", "auth_signature")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,15}", re.ASCII)


def _utf8(text: str) -> bytes:
    # surrogatepass: a lone surrogate (a JSON `\ud800` escape) gets bytes no other string
    # has, so nothing raises and no two strings share a signature; no SDK signs such text.
    return text.encode("utf-8", "surrogatepass")


def sign(secret: str, text: str) -> str:
    """Lowercase hex HMAC-SHA256 of `text` (UTF-8) under `secret`."""
    return hmac.new(_utf8(secret), _utf8(text), hashlib.sha256).hexdigest()


# -- client auth (PUSHER.md 3, 6) ------------------------------------------------------------


def channel_string(socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """What a private/encrypted (`channel_data` None) or presence subscription signs.
    `channel_data` must be the exact string received: the Python SDK adds spaces."""
    if channel_data is None:
        return f"{socket_id}:{channel}"
    return f"{socket_id}:{channel}:{channel_data}"


def signin_string(socket_id: str, user_data: str) -> str:
    """What a `pusher:signin` signs; `user_data` is the exact string received."""
    return f"{socket_id}::user::{user_data}"


def auth_matches(auth: object, key: str, secret: str, string_to_sign: str) -> bool:
    """Whether a client's `auth` is `<key>:<sign(secret, string_to_sign)>`, compared whole in
    constant time. Anything else (not a string, lone surrogates, wrong length) is False."""
    if not isinstance(auth, str):
        return False
    try:
        given = auth.encode("utf-8")
    except UnicodeEncodeError:
        return False
    expected = _utf8(f"{key}:{sign(secret, string_to_sign)}")
    return hmac.compare_digest(given, expected)


# -- webhooks (PUSHER.md 9) ------------------------------------------------------------------


def webhook_signature(secret: str, body: bytes) -> str:
    """`X-Pusher-Signature` of a webhook: hex HMAC-SHA256 over the raw body bytes sent."""
    return hmac.new(_utf8(secret), body, hashlib.sha256).hexdigest()


# -- HTTP API requests (PUSHER.md 8) ---------------------------------------------------------


class AppKeys(Protocol):
    """What verify needs of an app: any object with these (a config app, a frozen
    dataclass). Read-only, so frozen dataclasses and named tuples qualify."""

    @property
    def id(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def secret(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """An HTTP API request as the shell read it.

    `path` is the path as received, any configured prefix already stripped (`/apps/3/events`);
    `query` holds every parameter percent-decoded but otherwise as received: names and values,
    in order, repeated names kept. `body` is the raw body bytes (b"" for none).
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: bytes


def request_string(method: str, path: str, query: Iterable[tuple[str, str]]) -> str:
    """`METHOD\\nPATH\\nQUERY` as signed: every parameter but auth_signature, keys
    lower-cased, sorted by key then value, `k=v` joined by `&`, nothing escaped."""
    pairs = sorted((k.lower(), v) for k, v in query if k.lower() != "auth_signature")
    return "\n".join([method.upper(), path, "&".join(f"{k}={v}" for k, v in pairs)])


def verify(request: SignedRequest, apps: Mapping[str, AppKeys], now: float) -> AppKeys:
    """The app whose key signed `request`, or ApiError 401 (answer `{"error": message}`).

    `apps` maps app key -> app. Checks, in order: the auth parameters (each once, keys
    case-insensitive), auth_version 1.0, a known auth_key, auth_timestamp within 600 s of
    `now`, body_md5 (required for a non-empty body; when given, the MD5 of the body even if
    empty), then auth_signature. The caller then checks a path app id with check_path_app.
    Messages never echo the secret, the key given or the expected signature.
    """
    params: dict[str, str] = {}
    for name, value in request.query:
        lowered = name.lower()
        if lowered in _AUTH_PARAMS:
            if lowered in params:
                raise ApiError(401, f"{lowered} given more than once")
            params[lowered] = value
    for name in _REQUIRED:
        if name not in params:
            raise ApiError(401, f"Missing {name}")
    if params["auth_version"] != AUTH_VERSION:
        raise ApiError(401, f"auth_version must be {AUTH_VERSION}")
    app = apps.get(params["auth_key"])
    if app is None:
        raise ApiError(401, "Unknown auth_key")
    timestamp = params["auth_timestamp"]
    if _TIMESTAMP_RE.fullmatch(timestamp) is None:
        raise ApiError(401, "auth_timestamp must be an integer number of seconds")
    if abs(now - int(timestamp)) > TIMESTAMP_WINDOW:
        raise ApiError(401, f"auth_timestamp is not within {TIMESTAMP_WINDOW} s of server time")
    body_md5 = params.get("body_md5")
    if body_md5 is None:
        if request.body:
            raise ApiError(401, "Missing body_md5")
    elif body_md5.lower() != hashlib.md5(request.body).hexdigest():
        # the Python SDK sends the MD5 of nothing on GET: it must match too
        raise ApiError(401, "body_md5 does not match the body")
    try:
        given = params["auth_signature"].encode("utf-8")
    except UnicodeEncodeError:
        given = b""  # not hex: refused below, still through the constant-time compare
    expected = sign(app.secret, request_string(request.method, request.path, request.query))
    if not hmac.compare_digest(given, expected.encode("ascii")):
        raise ApiError(401, "Invalid auth_signature")
    return app


def check_path_app(app: AppKeys, path_app_id: str) -> None:
    """ApiError 401 unless the `{id}` of an `/apps/{id}/...` path is the signing app's id:
    a key must not act on another app."""
    if path_app_id != app.id:
        raise ApiError(401, "The app id in the path is not the auth_key's app")
