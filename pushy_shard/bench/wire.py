"""Pre-signed triggers and subscribe payloads, built in Python so the C side needs no crypto.

Trigger signature: PROTOCOL.md 4.2; channel token: PROTOCOL.md 4.1.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pushy_shard.bench.target import Target

EVENT = "bench"


def canonical(data: Any) -> str:
    """JSON as JavaScript's JSON.stringify writes it (no spaces, `/` and non-ASCII as is)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def trigger(target: Target, channel: str, data: dict[str, Any], timestamp: int,
            event: str = EVENT) -> bytes:
    """One complete keep-alive HTTP/1.1 request triggering `event` on `channel`."""
    body = canonical(data)
    key = sha256(f"{channel.lower()}:{event}:{timestamp}:{body}:{target.secret}")
    query = urllib.parse.urlencode({"event": event, "timestamp": timestamp, "auth_key": key})
    path = f"{target.base_path}/pushy/channel/{urllib.parse.quote(channel, safe='')}/trigger"
    payload = body.encode()
    head = (f"POST {path}?{query} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


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


def subscribe(channel: str, auth: str | None = None, presence: str | None = None) -> str:
    data: dict[str, Any] = {"channel": channel}
    if auth is not None:
        data["auth"] = auth
    if presence is not None:
        data["data"] = presence
    return command("subscribe", data)


def unsubscribe(channel: str) -> str:
    return command("unsubscribe", {"channel": channel})


def channel_token(socket_id: str, channel: str, presence: str | None, secret: str) -> str:
    parts = [socket_id, channel.lower()]
    if presence is not None:
        parts.append(json.dumps(presence, ensure_ascii=False))
    return sha256(":".join([*parts, secret]))
