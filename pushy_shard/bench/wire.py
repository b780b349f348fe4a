"""Pre-signed triggers and subscribe payloads, built in Python so the C side needs no crypto,
for either protocol of the target: Pushy (trigger signature PROTOCOL.md 4.2, channel token
4.1) or Pusher (request signature and channel auth, PUSHER.md 3, 8).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pushy_shard.bench.target import PUSHER_APP, Target

EVENT = "bench"


def canonical(data: Any) -> str:
    """JSON as JavaScript's JSON.stringify writes it (no spaces, `/` and non-ASCII as is)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def trigger(target: Target, channel: str, data: dict[str, Any], timestamp: int,
            event: str = EVENT) -> bytes:
    """One complete keep-alive HTTP/1.1 request triggering `event` on `channel`."""
    if target.protocol == "pusher":
        return _pusher_trigger(target, channel, data, timestamp, event)
    body = canonical(data)
    key = sha256(f"{channel.lower()}:{event}:{timestamp}:{body}:{target.secret}")
    query = urllib.parse.urlencode({"event": event, "timestamp": timestamp, "auth_key": key})
    path = f"{target.base_path}/pushy/channel/{urllib.parse.quote(channel, safe='')}/trigger"
    payload = body.encode()
    head = (f"POST {path}?{query} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


def _pusher_trigger(target: Target, channel: str, data: dict[str, Any], timestamp: int,
                    event: str) -> bytes:
    """POST /apps/{id}/events, signed as the Pusher SDKs sign it (PUSHER.md 8)."""
    payload = canonical({"name": event, "channels": [channel], "data": canonical(data)}).encode()
    path = f"/apps/{PUSHER_APP[0]}/events"
    params = {"auth_key": PUSHER_APP[1], "auth_timestamp": str(timestamp),
              "auth_version": "1.0", "body_md5": hashlib.md5(payload).hexdigest()}
    signed = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["auth_signature"] = hmac_hex(target.secret, f"POST\n{path}\n{signed}")
    query = urllib.parse.urlencode(params)
    head = (f"POST {target.base_path}{path}?{query} HTTP/1.1\r\n"
            f"Host: {target.host}:{target.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


def hmac_hex(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def triggers(target: Target, plan: Iterable[tuple[str, dict[str, Any]]]) -> list[bytes]:
    now = int(time.time())
    return [trigger(target, channel, data, now) for channel, data in plan]


def write_records(path: Path, records: list[bytes]) -> None:
    """The publisher's input: `<length>\\n<bytes>` per request."""
    with path.open("wb") as out:
        for record in records:
            out.write(b"%d\n" % len(record))
            out.write(record)


def command(name: str, data: dict[str, Any]) -> str:
    """A SockJS client payload (a JSON array holding one JSON-encoded Pushy message)."""
    return json.dumps([json.dumps({"command": name, "data": data})])


def subscribe(target: Target, channel: str, auth: str | None = None,
              presence: str | None = None) -> str:
    """The payload that joins `channel` (Pusher: `presence` is the channel_data)."""
    if target.protocol == "pusher":
        data: dict[str, Any] = {"channel": channel}
        if auth is not None:
            data["auth"] = auth
        if presence is not None:
            data["channel_data"] = presence
        return canonical({"event": "pusher:subscribe", "data": data})
    data = {"channel": channel}
    if auth is not None:
        data["auth"] = auth
    if presence is not None:
        data["data"] = presence
    return command("subscribe", data)


def unsubscribe(target: Target, channel: str) -> str:
    """The payload that leaves `channel`. Pusher answers an unsubscribe with nothing: a
    ping follows it, and its pong says the leave was read (messages separated by \\x1f,
    loadclient.c)."""
    if target.protocol == "pusher":
        return (canonical({"event": "pusher:unsubscribe", "data": {"channel": channel}})
                + "\x1f" + canonical({"event": "pusher:ping", "data": {}}))
    return command("unsubscribe", {"channel": channel})


def presence_member(target: Target, name: str) -> str:
    """A presence member's data: Pushy's `data`, Pusher's channel_data (its user)."""
    if target.protocol == "pusher":
        return canonical({"user_id": name, "user_info": {"name": name}})
    return json.dumps({"name": name})


def presence_channel(target: Target, name: str) -> str:
    """Pushy's presence channels are private ones with data; Pusher's say `presence-`."""
    return f"{'presence' if target.protocol == 'pusher' else 'private'}-{name}"


def channel_token(target: Target, socket_id: str, channel: str, presence: str | None) -> str:
    """The subscription's signature (PROTOCOL.md 4.1 / PUSHER.md 3)."""
    if target.protocol == "pusher":
        text = f"{socket_id}:{channel}" + (f":{presence}" if presence is not None else "")
        return f"{PUSHER_APP[1]}:{hmac_hex(target.secret, text)}"
    parts = [socket_id, channel.lower()]
    if presence is not None:
        parts.append(json.dumps(presence, ensure_ascii=False))
    return sha256(":".join([*parts, target.secret]))
