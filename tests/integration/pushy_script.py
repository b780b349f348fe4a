"""A scripted Pushy session, recorded and replayed to compare servers.

`run_script()` drives a fixed sequence of SockJS websocket clients and trigger HTTP
requests that covers every row of PROTOCOL.md sections 2-5, and returns a normalised
transcript (a list of entries) that is comparable across servers and runs:

* socket ids become ``<sid:A>``, ``<sid:B>``... (by the client that owns them),
* member ids become ``<mid:1>``, ``<mid:2>``... (in order of first appearance),
* presence ``subscribed`` timestamps become ``<ms>`` (after checking they are ints near now),
* private-channel tokens the script sends become ``<token:...>`` labels,
* the per-run suffix of every channel name (``Hello-12345678``) becomes ``<run>``,
* an auth_key the server echoes back becomes ``<auth_key>``.

Anything that fails a check is kept visible (``<bad-mid:...>``, ``<bad-ms:...>``) so that it
shows up as a mismatch. "No reply" is detected without sleeping: after every step each open
client sends an unknown command (the *marker*) and reads everything up to its
``Unknown command`` error, so a stray message lands before the marker reply.

Entries: ``{"step": S, "client": "A", K: V}`` with K one of ``sent`` (a JSON object sent),
``sent_raw`` (a raw SockJS message string), ``recv`` (a decoded message), ``recv_raw`` (a
message that is not JSON), ``recv_close`` (a SockJS ``c`` frame), ``recv_eof``, ``close``
(the client closed its websocket), ``error`` (the script gave up: timeout...), and for the
trigger API ``{"client": "http", "http": {"request": ..., "status": ..., ...}}``.

CLI: ``python tests/integration/pushy_script.py URL SECRET [--record FILE] [--compare FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import string
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp

RECV_TIMEOUT = 10.0  # seconds to wait for one expected message
MARKER = "pushy-test-marker"  # an unknown command, its reply marks "nothing else came"
WRONG_KEY = "0" * 64  # a well-formed but wrong trigger auth_key
MID_RE = re.compile(r"^[0-9a-f]{8}$")


class ScriptError(Exception):
    """The server did not answer as the script needs to go on (timeout, closed socket)."""


def _dumps(obj: Any) -> str:
    """JSON as JavaScript's JSON.stringify writes it (no spaces, no ASCII escaping)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def channel_token(socket_id: str, channel: str, data: str | None, secret: str) -> str:
    """Private-channel token, PROTOCOL.md 4.1."""
    parts = [socket_id, channel.lower()]
    if data is not None:
        parts.append(_dumps(data))
    parts.append(secret)
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def trigger_key(
    channel: str, event: str, timestamp: int | str, canon: str, secret: str, lower: bool = True
) -> str:
    """Trigger auth_key, PROTOCOL.md 4.2 (`canon` is the canonical body).

    lower=False signs the channel name as given (a wrong key unless it is lowercase).
    """
    text = f"{channel.lower() if lower else channel}:{event}:{timestamp}:{canon}:{secret}"
    return hashlib.sha256(text.encode()).hexdigest()


class Transcript:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.step = "start"
        self.labels: dict[str, str] = {}  # exact strings to replace (tokens)

    def add(self, client: str, kind: str, value: Any) -> None:
        self.entries.append({"step": self.step, "client": client, kind: value})


class Client:
    def __init__(self, name: str, script: Script) -> None:
        self.name = name
        self.script = script
        self.tr = script.tr
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None
        self.sid = ""
        self.closed = False

    async def open(self) -> None:
        server = f"{random.randrange(1000):03d}"
        session = "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
        url = f"{self.script.base_url}{self.script.prefix}/{server}/{session}/websocket"
        self.ws = await self.script.http.ws_connect(url, autoping=True)
        self.reader = asyncio.create_task(self._read())
        kind, value = await self._next()
        if kind != "open":
            raise ScriptError(f"client {self.name}: expected SockJS 'o', got {kind} {value!r}")
        msg = await self.expect("pushy:connect")
        sid = msg.get("data", {}).get("socketId") if isinstance(msg.get("data"), dict) else None
        if not isinstance(sid, str) or not sid:
            raise ScriptError(f"client {self.name}: no socketId in {msg!r}")
        self.sid = sid
        self.script.sids[sid] = self.name

    async def _read(self) -> None:
        assert self.ws is not None
        put = self.queue.put_nowait
        try:
            async for frame in self.ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    put(("badframe", f"{frame.type.name}"))
                    continue
                data: str = frame.data
                if data == "h":
                    continue  # heartbeat
                if data == "o":
                    put(("open", None))
                elif data.startswith("a"):
                    try:
                        items = json.loads(data[1:])
                    except ValueError:
                        put(("badframe", data))
                        continue
                    if not isinstance(items, list):
                        put(("badframe", data))
                        continue
                    for item in items:
                        try:
                            put(("recv", json.loads(item)))
                        except (TypeError, ValueError):
                            put(("recv_raw", item))
                elif data.startswith("c"):
                    try:
                        put(("recv_close", json.loads(data[1:])))
                    except ValueError:
                        put(("badframe", data))
                else:
                    put(("badframe", data))
        finally:
            put(("recv_eof", True))

    async def _next(self) -> tuple[str, Any]:
        try:
            return await asyncio.wait_for(self.queue.get(), RECV_TIMEOUT)
        except TimeoutError:
            raise ScriptError(f"client {self.name}: nothing received for {RECV_TIMEOUT}s") from None

    async def send(self, msg: dict[str, Any]) -> None:
        self.tr.add(self.name, "sent", msg)
        await self._send_raw(_dumps(msg))

    async def send_raw(self, text: str) -> None:
        self.tr.add(self.name, "sent_raw", text)
        await self._send_raw(text)

    async def _send_raw(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps([text]))

    async def expect(self, event: str, channel: str | None = None) -> dict[str, Any]:
        """Read (and record) until a message with this event (and channel) arrives."""
        while True:
            kind, value = await self._next()
            if kind == "badframe":
                kind, value = "recv_raw", f"<bad SockJS frame: {value}>"
            self.tr.add(self.name, kind, value)
            if kind == "recv_eof":
                raise ScriptError(f"client {self.name}: socket closed while waiting for {event}")
            if (
                kind == "recv"
                and isinstance(value, dict)
                and value.get("event") == event
                and (channel is None or value.get("channel") == channel)
            ):
                return value

    async def sync(self) -> None:
        """Send the marker command and record everything up to its reply."""
        await self.send({"command": MARKER, "data": {}})
        while True:
            msg = await self.expect("pushy:error")
            if msg.get("data", {}).get("code") == "200":
                return

    async def cmd(self, command: str, data: dict[str, Any], reply: str | None) -> dict[str, Any]:
        await self.send({"command": command, "data": data})
        if reply is None:
            return {}
        return await self.expect(reply)

    async def close(self) -> None:
        self.tr.add(self.name, "close", True)
        self.closed = True
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await self.reader


class Script:
    def __init__(self, base_url: str, secret: str, prefix: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.prefix = "/" + prefix.strip("/")
        self.tr = Transcript()
        self.sids: dict[str, str] = {}
        # a per-run suffix on every channel name, so that concurrent runs or leftovers of
        # other tests on the same server cannot meet this run's channels
        self.run_id = f"{random.randrange(10**8):08d}"
        self.clients: dict[str, Client] = {}
        self.http: aiohttp.ClientSession = None  # type: ignore[assignment]

    # -- helpers -------------------------------------------------------------------------

    def ch(self, name: str) -> str:
        """This run's spelling of a channel name (digits only: no case to change)."""
        return f"{name}-{self.run_id}"

    def step(self, name: str) -> None:
        self.tr.step = name

    async def sync_all(self) -> None:
        for client in self.clients.values():
            if not client.closed:
                await client.sync()

    def token(self, owner: Client, channel: str, data: str | None, label: str) -> str:
        tok = channel_token(owner.sid, channel, data, self.secret)
        self.tr.labels[tok] = f"<token:{label}>"
        return tok

    async def trigger(
        self,
        channel: str,
        event: str | None = "test",
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        canon: str = "{}",
        ts_offset: int = 0,
        auth: str = "valid",
        sign_channel: str | None = None,
        sign_canon: str | None = None,
        socket_id: Client | None = None,
        omit: tuple[str, ...] = (),
        until_status: int | None = None,
    ) -> dict[str, Any]:
        """POST a trigger, record request (as labels) and response.

        auth: "valid" (signed per 4.2, optionally over `sign_channel` (not lowercased)
        or `sign_canon` instead of the real ones), or "wrong" (WRONG_KEY).
        until_status: retry (for up to RECV_TIMEOUT) until this status comes back; only
        the last answer is recorded (used where the server may need a moment, e.g. after
        a disconnect).
        """
        request: dict[str, Any] = {"channel": channel}
        if event is not None:
            request["event"] = event
        request["timestamp"] = f"now{ts_offset:+d}" if ts_offset else "now"
        request["auth_key"] = auth
        if sign_channel is not None:
            request["signed_channel"] = sign_channel
        if sign_canon is not None:
            request["signed_body"] = sign_canon
        if socket_id is not None:
            request["socket_id"] = f"<sid:{socket_id.name}>"
        for name in omit:
            request.pop(name, None)
            request["omit_" + name] = True
        if content_type is not None:
            request["content_type"] = content_type
        if body is not None:
            request["body"] = body.decode()

        deadline = time.monotonic() + RECV_TIMEOUT
        while True:
            ts = int(time.time()) + ts_offset
            if auth == "valid":
                key = trigger_key(
                    sign_channel if sign_channel is not None else channel,
                    event or "",
                    ts,
                    sign_canon if sign_canon is not None else canon,
                    self.secret,
                    lower=sign_channel is None,
                )
            else:
                key = WRONG_KEY
            params = {"event": event, "timestamp": str(ts), "auth_key": key}
            if socket_id is not None:
                params["socket_id"] = socket_id.sid
            query = urllib.parse.urlencode(
                {k: v for k, v in params.items() if v is not None and k not in omit}
            )
            path = urllib.parse.quote(channel, safe="")
            url = f"{self.base_url}/pushy/channel/{path}/trigger?{query}"
            headers = {"Content-Type": content_type} if content_type else {}
            async with self.http.post(url, data=body or b"", headers=headers) as resp:
                # the original echoed the auth_key in its 403 message: keep that visible
                # but deterministic (PROTOCOL.md 4.3 wants no key in the message)
                text = (await resp.text()).replace(key, "<auth_key>")
                status = resp.status
                mime = resp.content_type
            if until_status is None or status == until_status or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        try:
            response: Any = json.loads(text)
        except ValueError:
            response = {"<not json>": text}
        entry = {"request": request, "status": status, "content_type": mime, "body": response}
        self.tr.add("http", "http", entry)
        return entry

    # -- the session ---------------------------------------------------------------------

    async def run(self) -> None:  # one long, linear script on purpose
        ch = self.ch  # every channel name gets this run's suffix
        A, B, C, D = (Client(n, self) for n in "ABCD")
        for c in (A, B, C, D):
            self.clients[c.name] = c

        # 2. pushy:connect (socketId, protocol)
        self.step("connect")
        for c in (A, B, C, D):
            await c.open()
        await self.sync_all()

        # 3.1.1 / 3.3 errors and bogus messages
        self.step("subscribe-no-channel")
        await A.cmd("subscribe", {}, "pushy:error")
        await A.sync()
        self.step("subscribe-empty-channel")
        await A.cmd("subscribe", {"channel": ""}, "pushy:error")
        await A.sync()
        self.step("unknown-command")
        await A.cmd("nosuchcommand", {"channel": ch("Hello")}, "pushy:error")
        await A.sync()
        for step, raw in (
            ("bogus-number", "5"),
            ("bogus-array", "[]"),
            ("bogus-empty-object", "{}"),
            ("bogus-not-json", "not json"),
            ("bogus-data-only", '{"data":{"channel":"Hello"}}'),
            (
                "bogus-command-and-event",
                '{"command":"subscribe","event":"x","data":{"channel":"Hello"}}',
            ),
        ):
            self.step(step)
            await A.send_raw(raw)
            await A.expect("pushy:error")
            await A.sync()
        self.step("event-only-ignored")
        await A.send({"event": "client-event", "data": {"x": 1}})
        await A.sync()
        await self.sync_all()

        # 3.1 / 3.4 public channels
        self.step("public-subscribe-create")
        await A.cmd("subscribe", {"channel": ch("Hello")}, "pushy:subscription-success")
        await self.sync_all()
        self.step("public-subscribe-case-insensitive")
        await B.cmd("subscribe", {"channel": ch("hELLO")}, "pushy:subscription-success")
        await self.sync_all()
        self.step("public-already-subscribed")
        await A.cmd("subscribe", {"channel": ch("HELLO")}, "pushy:subscription-failed")
        await self.sync_all()
        self.step("public-subscribe-data-and-auth-ignored")
        await C.cmd(
            "subscribe",
            {"channel": ch("hello"), "auth": "whatever", "data": '{"name":"carol"}'},
            "pushy:subscription-success",
        )
        await self.sync_all()
        self.step("command-uppercase")
        await D.cmd("SUBSCRIBE", {"channel": ch("Upper")}, "pushy:subscription-success")
        await D.sync()
        self.step("command-mixedcase")
        await D.cmd("UnSubscribe", {"channel": ch("upper")}, "pushy:subscription-end")
        await D.sync()
        self.step("channel-removed-after-last-unsubscribe-upper")
        await D.cmd("Unsubscribe", {"channel": ch("UPPER")}, "pushy:error")
        await self.sync_all()

        # 4.2 / 4.3 triggers
        self.step("trigger-json-201")
        body = {"msg": "hi", "n": 2}
        await self.trigger(
            ch("hello"),
            body=_dumps(body).encode(),
            content_type="application/json",
            canon=_dumps(body),
        )
        for c in (A, B, C):
            await c.expect("test")
        await self.sync_all()

        self.step("trigger-empty-body-201")
        await self.trigger(ch("HeLLo"), event="empty", body=None, canon="{}")
        for c in (A, B, C):
            await c.expect("empty")
        await self.sync_all()

        self.step("trigger-json-escaped-unicode-slash-whitespace")
        raw = (
            '{ "text" : "h\\u00e9llo w\\u00f6rld \\u2713 \\ud83c\\udf89",\n'
            '  "path": "a\\/b</script>", "nested": {"z": 1, "a": [true, null, 1.5, "x"]},'
            ' "n": -3 }'
        )
        parsed = json.loads(raw)
        await self.trigger(
            ch("hello"),
            event="unicode",
            body=raw.encode(),
            content_type="application/json",
            canon=_dumps(parsed),
        )
        for c in (A, B, C):
            await c.expect("unicode")
        await self.sync_all()

        self.step("trigger-json-utf8-body")
        parsed = {"text": "zoë ✓ 🎉 日本", "url": "http://example.com/a/b?c=d&e"}
        await self.trigger(
            ch("hello"),
            event="utf8",
            body=_dumps(parsed).encode(),
            content_type="application/json; charset=utf-8",
            canon=_dumps(parsed),
        )
        for c in (A, B, C):
            await c.expect("utf8")
        await self.sync_all()

        self.step("trigger-form-bracket-keys")
        form = "a[b]=1&c[]=x&c[]=y&u=%C3%A9%2F&plain=a+b"
        parsed = {"a": {"b": "1"}, "c": ["x", "y"], "u": "é/", "plain": "a b"}
        await self.trigger(
            ch("hello"),
            event="form",
            body=form.encode(),
            content_type="application/x-www-form-urlencoded",
            canon=_dumps(parsed),
        )
        for c in (A, B, C):
            await c.expect("form")
        await self.sync_all()

        self.step("trigger-socket-id-excluded")
        await self.trigger(ch("hello"), event="excluded", socket_id=A)
        for c in (B, C):
            await c.expect("excluded")
        await self.sync_all()  # A: the original delivers it anyway (see test_transcript.py)

        self.step("trigger-timestamp-in-window")
        await self.trigger(ch("hello"), event="window-past", ts_offset=-300)
        await self.trigger(ch("hello"), event="window-future", ts_offset=300)
        for c in (A, B, C):
            await c.expect("window-past")
            await c.expect("window-future")
        await self.sync_all()

        self.step("trigger-no-members-200")
        await self.trigger(ch("nobody"), event="test")
        await self.sync_all()

        self.step("trigger-missing-parameters-400")
        await self.trigger(ch("hello"), omit=("event",))
        await self.trigger(ch("hello"), omit=("timestamp",))
        await self.trigger(ch("hello"), omit=("auth_key",))
        await self.trigger(ch("hello"), omit=("event", "timestamp", "auth_key"))
        await self.trigger(ch("hello"), omit=("event",), ts_offset=-5000, auth="wrong")
        await self.sync_all()

        self.step("trigger-timestamp-out-of-window-501")
        await self.trigger(ch("hello"), event="late", ts_offset=-700)
        await self.trigger(ch("hello"), event="early", ts_offset=700)
        await self.trigger(ch("hello"), event="late-and-wrong", ts_offset=-700, auth="wrong")
        await self.sync_all()

        self.step("trigger-invalid-credentials-403")
        await self.trigger(ch("hello"), event="bad", auth="wrong")
        body = {"x": 1}
        await self.trigger(
            ch("hello"),
            event="bad-body",
            body=_dumps(body).encode(),
            content_type="application/json",
            canon=_dumps(body),
            sign_canon="{}",
        )
        await self.trigger(ch("Hello"), event="bad-case", sign_channel=ch("Hello"))
        await self.trigger(ch("nobody"), event="bad-no-members", auth="wrong")
        await self.sync_all()

        # 3.2 unsubscribe
        self.step("unsubscribe-no-channel")
        await A.cmd("unsubscribe", {}, "pushy:error")
        await A.cmd("unsubscribe", {"channel": ""}, "pushy:error")
        await A.sync()
        self.step("unsubscribe-channel-not-found-404")
        await A.cmd("unsubscribe", {"channel": ch("nochannel")}, "pushy:error")
        await A.sync()
        self.step("unsubscribe-not-subscribed-403")
        await D.cmd("unsubscribe", {"channel": ch("hello")}, "pushy:error")
        await self.sync_all()
        self.step("unsubscribe-success")
        await A.cmd("unsubscribe", {"channel": ch("HELLO")}, "pushy:subscription-end")
        await self.sync_all()
        self.step("unsubscribe-again-not-subscribed-403")
        await A.cmd("unsubscribe", {"channel": ch("hello")}, "pushy:error")
        await self.sync_all()
        self.step("unsubscribe-remaining-members")
        await B.cmd("unsubscribe", {"channel": ch("hello")}, "pushy:subscription-end")
        await C.cmd("unsubscribe", {"channel": ch("Hello")}, "pushy:subscription-end")
        await self.sync_all()
        self.step("channel-removed-after-last-unsubscribe")
        await C.cmd("unsubscribe", {"channel": ch("hello")}, "pushy:error")
        await self.trigger(ch("hello"), event="gone")
        await self.sync_all()
        self.step("channel-recreated-with-new-display-name")
        await B.cmd("subscribe", {"channel": ch("HELLO")}, "pushy:subscription-success")
        await A.cmd("subscribe", {"channel": ch("hello")}, "pushy:subscription-success")
        await self.trigger(ch("hello"), event="again")
        for c in (B, A):
            await c.expect("again")
        await self.sync_all()

        # 3.1.2-3.1.5 / 4.1 private channels
        self.step("private-needauth-missing")
        await A.cmd("subscribe", {"channel": ch("private-Room")}, "pushy:subscription-needauth")
        await A.sync()
        self.step("private-needauth-blank")
        await A.cmd(
            "subscribe",
            {"channel": ch("private-Room"), "auth": "  "},
            "pushy:subscription-needauth",
        )
        await A.sync()
        self.step("private-needauth-empty")
        await A.cmd(
            "subscribe", {"channel": ch("private-Room"), "auth": ""}, "pushy:subscription-needauth"
        )
        await A.sync()
        self.step("private-needauth-prefix-case-insensitive")
        await A.cmd("subscribe", {"channel": ch("PRIVATE-Other")}, "pushy:subscription-needauth")
        await A.sync()
        self.step("private-wrong-token")
        await A.cmd(
            "subscribe",
            {"channel": ch("private-Room"), "auth": "deadbeef"},
            "pushy:subscription-failed",
        )
        await A.sync()
        self.step("private-token-of-other-socket")
        tok = self.token(B, ch("private-Room"), None, "B:private-room")
        await A.cmd(
            "subscribe", {"channel": ch("private-Room"), "auth": tok}, "pushy:subscription-failed"
        )
        await A.sync()
        self.step("private-success")
        tok = self.token(A, ch("private-Room"), None, "A:private-room")
        await A.cmd(
            "subscribe", {"channel": ch("private-Room"), "auth": tok}, "pushy:subscription-success"
        )
        await self.sync_all()
        self.step("private-already-subscribed-needs-auth-first")
        await A.cmd("subscribe", {"channel": ch("private-room")}, "pushy:subscription-needauth")
        await A.sync()
        self.step("private-already-subscribed")
        tok = self.token(A, ch("private-room"), None, "A:private-room")
        await A.cmd(
            "subscribe", {"channel": ch("private-room"), "auth": tok}, "pushy:subscription-failed"
        )
        await self.sync_all()
        self.step("private-token-must-cover-data")
        tok = self.token(D, ch("private-room"), None, "D:private-room")
        await D.cmd(
            "subscribe",
            {"channel": ch("private-room"), "auth": tok, "data": '{"name":"dave"}'},
            "pushy:subscription-failed",
        )
        await self.sync_all()
        self.step("private-join-with-data-no-presence")
        data = '{"name":"carol"}'
        tok = self.token(C, ch("PRIVATE-ROOM"), data, "C:private-room:carol")
        await C.cmd(
            "subscribe",
            {"channel": ch("PRIVATE-ROOM"), "auth": tok, "data": data},
            "pushy:subscription-success",
        )
        await self.sync_all()

        # 3.4 / 5 presence channels
        pres = ch("private-Presence")
        self.step("presence-create")
        alice = '{"name":"alice"}'
        tok = self.token(A, pres, alice, "A:presence:alice")
        await A.cmd(
            "subscribe",
            {"channel": pres, "auth": tok, "data": alice},
            "pushy:subscription-success",
        )
        await self.sync_all()
        self.step("presence-join")
        bob = '{"name":"bob","avatar":"http://example.com/b.png"}'
        tok = self.token(B, ch("private-presence"), bob, "B:presence:bob")
        await B.cmd(
            "subscribe",
            {"channel": ch("private-presence"), "auth": tok, "data": bob},
            "pushy:subscription-success",
        )
        await A.expect("pushy:presence-add")
        await self.sync_all()
        self.step("presence-join-third")
        carol = '{"name":"zoë \\"c\\"","tags":["a","b"],"n":1}'
        tok = self.token(C, ch("PRIVATE-PRESENCE"), carol, "C:presence:carol")
        await C.cmd(
            "subscribe",
            {"channel": ch("PRIVATE-PRESENCE"), "auth": tok, "data": carol},
            "pushy:subscription-success",
        )
        for c in (A, B):
            await c.expect("pushy:presence-add")
        await self.sync_all()
        self.step("presence-join-without-data")
        tok = self.token(D, pres, None, "D:presence")
        await D.cmd("subscribe", {"channel": pres, "auth": tok}, "pushy:subscription-success")
        for c in (A, B, C):
            await c.expect("pushy:presence-add")
        await self.sync_all()
        self.step("presence-trigger")
        await self.trigger(ch("private-presence"), event="ping")
        for c in (A, B, C, D):
            await c.expect("ping")
        await self.sync_all()
        self.step("presence-quit-on-unsubscribe")
        await B.cmd("unsubscribe", {"channel": pres}, "pushy:subscription-end")
        for c in (A, C, D):
            await c.expect("pushy:presence-quit")
        await self.sync_all()
        self.step("presence-quit-on-disconnect")
        await C.cmd("subscribe", {"channel": ch("Lonely")}, "pushy:subscription-success")
        await C.sync()
        await C.close()
        for c in (A, D):
            await c.expect("pushy:presence-quit")
        await self.sync_all()
        self.step("channel-removed-on-disconnect")
        await self.trigger(ch("lonely"), event="gone", until_status=200)
        await self.sync_all()
        self.step("channel-kept-while-members-remain")
        await D.cmd("unsubscribe", {"channel": ch("private-room")}, "pushy:error")  # 403, A is in
        await self.sync_all()
        self.step("presence-last-leave-removes-channel")
        await A.cmd("unsubscribe", {"channel": pres}, "pushy:subscription-end")
        await D.expect("pushy:presence-quit")
        await self.sync_all()
        await D.cmd("unsubscribe", {"channel": ch("PRIVATE-PRESENCE")}, "pushy:subscription-end")
        await self.sync_all()
        await A.cmd("unsubscribe", {"channel": pres}, "pushy:error")  # 404
        await self.trigger(pres, event="gone")
        await self.sync_all()
        self.step("presence-decided-at-creation")
        tok = self.token(B, ch("private-PRESENCE"), None, "B:presence")
        await B.cmd(
            "subscribe",
            {"channel": ch("private-PRESENCE"), "auth": tok},
            "pushy:subscription-success",
        )
        tok = self.token(A, pres, alice, "A:presence:alice")
        await A.cmd(
            "subscribe",
            {"channel": pres, "auth": tok, "data": alice},
            "pushy:subscription-success",
        )
        await self.sync_all()

        self.step("end")
        for c in (A, B, D):
            await c.close()


# -- normalisation ----------------------------------------------------------------------


class _Normaliser:
    def __init__(
        self, sids: dict[str, str], labels: dict[str, str], run_id: str, t0: int, t1: int
    ) -> None:
        self.sids = sids
        self.labels = labels
        self.run_id = run_id
        self.mids: dict[str, str] = {}
        self.t0 = t0
        self.t1 = t1

    def mid(self, value: Any) -> Any:
        if not isinstance(value, str) or not MID_RE.match(value):
            return f"<bad-mid:{value!r}>"
        if value not in self.mids:
            self.mids[value] = f"<mid:{len(self.mids) + 1}>"
        return self.mids[value]

    def ms(self, value: Any) -> Any:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and self.t0 - 60_000 <= value <= self.t1 + 60_000:
            return "<ms>"
        return f"<bad-ms:{value!r}>"

    def walk(self, value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k == "memberId":
                    out[k] = self.mid(v)
                elif k == "subscribed":
                    out[k] = self.ms(v)
                else:
                    out[k] = self.walk(v)
            return out
        if isinstance(value, list):
            return [self.walk(v) for v in value]
        if isinstance(value, str):
            if value in self.sids:
                return f"<sid:{self.sids[value]}>"
            if value in self.labels:
                return self.labels[value]
            if self.run_id:
                return value.replace(self.run_id, "<run>")
        return value


def normalise(
    entries: list[dict[str, Any]],
    sids: dict[str, str],
    labels: dict[str, str],
    run_id: str,
    t0: int,
    t1: int,
) -> list[dict[str, Any]]:
    n = _Normaliser(sids, labels, run_id, t0, t1)
    return [n.walk(e) for e in entries]


async def run_script(base_url: str, secret: str, prefix: str = "/pushy/socket") -> list[dict]:
    """Run the whole session against `base_url` and return the normalised transcript.

    If the server stops answering as needed, the transcript ends with an ``error`` entry
    (so a comparison reports the first divergence instead of a bare exception).
    """
    script = Script(base_url, secret, prefix)
    t0 = int(time.time() * 1000)
    timeout = aiohttp.ClientTimeout(total=RECV_TIMEOUT * 2)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        script.http = http
        try:
            await script.run()
        except (ScriptError, aiohttp.ClientError, TimeoutError) as exc:
            script.tr.add("script", "error", f"{type(exc).__name__}: {exc}")
        finally:
            for c in script.clients.values():
                if c.ws is not None and not c.ws.closed:
                    await c.ws.close()
                if c.reader is not None:
                    c.reader.cancel()
    t1 = int(time.time() * 1000)
    return normalise(script.tr.entries, script.sids, script.tr.labels, script.run_id, t0, t1)


# -- comparison / CLI -------------------------------------------------------------------


def _fmt(entry: Any) -> str:
    return json.dumps(entry, ensure_ascii=False)


def first_mismatch(expected: list[dict], actual: list[dict], context: int = 4) -> str | None:
    """None if equal, else a readable description of the first differing entry."""
    for i, (exp, act) in enumerate(zip(expected, actual, strict=False)):
        if exp != act:
            lines = [f"transcripts differ at entry {i} (step {exp.get('step')!r}):"]
            for j in range(max(0, i - context), i):
                lines.append(f"    same     [{j}] {_fmt(expected[j])}")
            lines.append(f"  - expected [{i}] {_fmt(exp)}")
            lines.append(f"  + actual   [{i}] {_fmt(act)}")
            return "\n".join(lines)
    if len(expected) != len(actual):
        i = min(len(expected), len(actual))
        extra = expected[i] if len(expected) > i else actual[i]
        who = "expected has" if len(expected) > i else "actual has"
        return (
            f"transcripts differ in length: expected {len(expected)} entries, actual "
            f"{len(actual)}; {who} more, first extra [{i}] {_fmt(extra)}"
        )
    return None


def load(path: str | Path) -> list[dict]:
    data: list[dict] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


def save(path: str | Path, transcript: list[dict]) -> None:
    text = "[\n" + ",\n".join(_fmt(e) for e in transcript) + "\n]\n"
    Path(path).write_text(text, encoding="utf-8")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8234")
    parser.add_argument("secret", help="the server's secretKey")
    parser.add_argument("--prefix", default="/pushy/socket", help="SockJS prefix")
    parser.add_argument("--record", metavar="FILE", help="write the transcript to FILE")
    parser.add_argument("--compare", metavar="FILE", help="compare with a recorded transcript")
    parser.add_argument(
        "--spec",
        action="store_true",
        help="with --compare: first apply the intended differences from the original "
        "(test_transcript.spec_expected), i.e. compare as the test does",
    )
    args = parser.parse_args()
    transcript = await run_script(args.url, args.secret, args.prefix)
    if args.record:
        save(args.record, transcript)
        print(f"recorded {len(transcript)} entries to {args.record}")
    if not args.compare:
        if not args.record:
            for e in transcript:
                print(_fmt(e))
        return 1 if any("error" in e for e in transcript) else 0
    expected = load(args.compare)
    if args.spec:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from test_transcript import spec_expected  # type: ignore[import-not-found]

        expected = spec_expected(expected)
    diff = first_mismatch(expected, transcript)
    if diff is None:
        print(f"transcript matches {args.compare} ({len(transcript)} entries)")
        return 0
    print(diff)
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
