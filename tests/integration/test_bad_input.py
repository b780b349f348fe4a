"""Bad input on every path gets its documented error and nobody else notices."""

from __future__ import annotations

import json
import time
import urllib.parse

import aiohttp

from tests.integration.harness import Cluster, PushyClient, sign


async def watcher(cluster: Cluster) -> PushyClient:
    client = await cluster.client()
    await client.subscribe("watch")
    return client


async def still_serving(cluster: Cluster, client: PushyClient) -> None:
    data = {"n": time.monotonic_ns()}  # an identical signed request would be a replay (409)
    status, _ = await cluster.trigger("watch", "alive", data)
    assert status == 201
    assert await client.next() == {"event": "alive", "channel": "watch", "data": data}


async def test_bad_client_messages_get_their_error_codes(cluster: Cluster) -> None:
    ref = await watcher(cluster)
    bad = await cluster.client()
    try:
        cases = [
            ("not json", "100"),
            ("5", "100"),
            ("null", "100"),
            ('{"data": {}}', "100"),
            ('{"command": "subscribe", "event": "x"}', "100"),
            ('{"command": 5}', "100"),
            ('{"command": "nope"}', "200"),
            ('{"command": "subscribe", "data": {"channel": 5}}', "301"),
            ('{"command": "subscribe", "data": {"channel": ["a"]}}', "301"),
            ('{"command": "subscribe", "data": {"channel": {"a": 1}}}', "301"),
            ('{"command": "subscribe", "data": {"channel": "' + "x" * 201 + '"}}', "301"),
            ('{"command": "subscribe", "data": null}', "300"),
            ('{"command": "subscribe"}', "300"),
            ('{"command": "unsubscribe", "data": []}', "300"),
            (json.dumps({"command": "x", "data": "y" * 70_000}), "413"),
        ]
        for raw, code in cases:
            await bad.send("", raw=raw)
            reply = await bad.expect("pushy:error")
            assert reply["data"]["code"] == code, (raw[:80], reply)
        # a private subscribe with a non-string auth is refused, not a crash
        await bad.send("subscribe", {"channel": "private-x", "auth": 12})
        await bad.expect("pushy:subscription-needauth")
        await bad.send("subscribe", {"channel": "private-x", "auth": "f" * 64, "data": {"a": 1}})
        failed = await bad.expect("pushy:subscription-failed")
        assert failed["data"]["reason"] == "Invalid credentials"
        await still_serving(cluster, ref)
    finally:
        await bad.close()
        await ref.close()


async def test_broken_sockjs_framing_closes_only_that_session(cluster: Cluster) -> None:
    ref = await watcher(cluster)
    try:
        for payload, kind in (("not json", "str"), ('{"a": 1}', "str"), (b"\x00\x01", "bytes")):
            bad = await cluster.client()
            if kind == "bytes":
                await bad.ws.send_bytes(payload)  # type: ignore[arg-type]
            else:
                await bad.ws.send_str(payload)  # type: ignore[arg-type]
            msg = await bad.ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            await bad.close()
        huge = await cluster.client()
        await huge.ws.send_str("[" + json.dumps("x" * (1024 * 1024 + 10)) + "]")
        msg = await huge.ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await huge.close()
        await still_serving(cluster, ref)
    finally:
        await ref.close()


async def post(cluster: Cluster, path: str, body: bytes = b"", content_type: str | None = None,
               method: str = "POST") -> tuple[int, object]:
    headers = {"Content-Type": content_type} if content_type else {}
    async with aiohttp.ClientSession() as http, http.request(
        method, cluster.base_url + path, data=body, headers=headers
    ) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def signed_path(channel: str, event: str, body_canon: str, ts: int | None = None,
                **extra: str) -> str:
    ts = int(time.time()) if ts is None else ts
    key = sign(f"{channel.lower()}:{event}:{ts}:{body_canon}:secret")
    query = {"event": event, "timestamp": str(ts), "auth_key": key, **extra}
    return f"/pushy/channel/{channel}/trigger?" + urllib.parse.urlencode(query)


async def test_bad_triggers_get_their_errors(cluster: Cluster) -> None:
    ref = await watcher(cluster)
    try:
        missing = {"error": {"code": "400", "message": "Missing required parameters"}}
        assert await post(cluster, "/pushy/channel/watch/trigger") == (400, missing)
        assert await post(cluster, "/pushy/channel/watch/trigger?event=e&timestamp=1") == (
            400, missing)
        old = signed_path("watch", "e", "{}", ts=int(time.time()) - 600)
        assert await post(cluster, old) == (403, {"error": {
            "code": "501", "message": "Timestamp out of bounds (600 seconds)"}})
        status, body = await post(cluster, "/pushy/channel/watch/trigger?event=e&timestamp="
                                  f"{int(time.time())}&auth_key=deadbeef")
        assert (status, body) == (403, {"error": {"code": "403", "message": "Invalid credentials"}})
        assert "deadbeef" not in json.dumps(body)
        good = signed_path("watch", "e", '{"a":1}')
        assert (await post(cluster, good, b'{"a":', "application/json"))[0] == 400
        assert (await post(cluster, good, b'"text"', "application/json"))[0] == 400
        assert (await post(cluster, good, b'{"a":1}', "text/plain"))[0] == 415
        assert (await post(cluster, good, b"\xff\xfe", "application/json"))[0] == 400
        big = b'{"a":"' + b"x" * 70_000 + b'"}'
        assert (await post(cluster, good, big, "application/json"))[0] == 413
        long_name = signed_path("c" * 201, "e", "{}")
        assert (await post(cluster, long_name))[0] == 400
        assert (await post(cluster, good, method="GET"))[0] == 405
        # and the valid one goes through
        assert (await post(cluster, good, b'{"a":1}', "application/json"))[0] == 201
        assert await ref.next() == {"event": "e", "channel": "watch", "data": {"a": 1}}
        await still_serving(cluster, ref)
    finally:
        await ref.close()


async def test_form_bodies_as_the_php_sdk_posts_them(cluster: Cluster) -> None:
    ref = await watcher(cluster)
    try:
        data = {"msg": "hi", "user": {"name": "ann"}, "tags": ["a", "b"]}
        form = "msg=hi&user%5Bname%5D=ann&tags%5B0%5D=a&tags%5B1%5D=b"
        status, _ = await cluster.trigger("watch", "form", data, form=form)
        assert status == 201
        assert await ref.next() == {"event": "form", "channel": "watch", "data": data}
        # PHP's json_encode escapes "/" and non-ASCII: its signature is accepted too
        php = '{"url":"http:\\/\\/x.org\\/\\u00e9"}'
        path = signed_path("watch", "php", php)
        body = urllib.parse.urlencode({"url": "http://x.org/é"}).encode()
        assert (await post(cluster, path, body, "application/x-www-form-urlencoded"))[0] == 201
        assert (await ref.next())["data"] == {"url": "http://x.org/é"}
    finally:
        await ref.close()


async def test_raw_websocket_endpoint(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
        f"ws://127.0.0.1:{cluster.port}{cluster.prefix}/websocket"
    ) as ws:
        connect = json.loads((await ws.receive(timeout=5)).data)
        assert connect["event"] == "pushy:connect"
        await ws.send_str(json.dumps({"command": "subscribe", "data": {"channel": "raw"}}))
        success = json.loads((await ws.receive(timeout=5)).data)
        assert success["event"] == "pushy:subscription-success"
        status, _ = await cluster.trigger("raw", "ping", {"x": "ü"})
        assert status == 201
        assert json.loads((await ws.receive(timeout=5)).data) == {
            "event": "ping", "channel": "raw", "data": {"x": "ü"}}
        await ws.send_str("garbage")
        assert json.loads((await ws.receive(timeout=5)).data)["data"]["code"] == "100"


async def test_sockjs_endpoints(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(cluster.base_url + cluster.prefix) as r:
            assert r.status == 200 and await r.text() == "Welcome to SockJS!\n"
        async with http.get(cluster.base_url + cluster.prefix + "/info") as r:
            info = await r.json()
            assert info["websocket"] is True and info["cookie_needed"] is False
            assert info["origins"] == ["*:*"] and isinstance(info["entropy"], int)
            assert "no-store" in r.headers["Cache-Control"]
        async with http.get(cluster.base_url + cluster.prefix + "/000/abc/websocket") as r:
            assert r.status == 400  # not an upgrade
        async with http.get(cluster.base_url + cluster.prefix + "/0.0/abc/websocket") as r:
            assert r.status == 404
        async with http.get(cluster.base_url + "/") as r:
            page = await r.text()
            assert r.status == 200 and "new WebSocket" in page and '"/pushy/socket"' in page
            assert '"secret"' not in page  # the real secret is never shown
