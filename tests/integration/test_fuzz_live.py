"""Live fuzz: malformed input of every kind at a running server (3 shards, 2 fronts).

ARCHITECTURE.md 6: bad input gets a clear error and changes nothing else; no input crashes a
process. While seeded random cases hit the port (random bytes, truncated HTTP heads and
bodies, oversized bodies, invalid UTF-8, malformed WebSocket frames, handshakes dropped
halfway, random Pushy messages), a publisher triggers numbered events at a reference client
on a public and a presence channel. Afterwards every process is the one that started, the
reference client got every event in order, a fresh client works, and no traceback was logged.

Reproduce a failure with `PUSHY_FUZZ_SEED=<seed printed> pytest tests/integration/
test_fuzz_live.py -s`; `PUSHY_FUZZ_CASES` sets the number of cases.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from tests.integration import fuzz_wire as wire
from tests.integration.harness import Cluster, PushyClient, channel_token, iter_children, sign

SEED = int(os.environ.get("PUSHY_FUZZ_SEED", "5105"))
CASES = int(os.environ.get("PUSHY_FUZZ_CASES", "800"))
PUBLIC = "fuzz-watch"
PRESENCE = "private-fuzz-room"
EVENT = "seq"


def trigger_path(channel: str, event: str, canon: str, ts: int | None = None) -> str:
    ts = int(time.time()) if ts is None else ts
    key = sign(f"{channel.lower()}:{event}:{ts}:{canon}:secret")
    query = urllib.parse.urlencode({"event": event, "timestamp": str(ts), "auth_key": key})
    return f"/pushy/channel/{urllib.parse.quote(channel, safe='')}/trigger?{query}"


class Publisher:
    """Numbered, signed triggers, alternating between the two channels, one at a time so
    each channel's events have one order; records what the server accepted."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.sent: dict[str, list[int]] = {PUBLIC: [], PRESENCE: []}
        self.statuses: list[int] = []
        self.n = 0

    async def one(self, http: aiohttp.ClientSession) -> None:
        channel = (PUBLIC, PRESENCE)[self.n % 2]
        data = {"n": self.n}
        path = trigger_path(channel, EVENT, json.dumps(data, separators=(",", ":")))
        async with http.post(self.cluster.base_url + path, json=data) as response:
            self.statuses.append(response.status)
            if response.status in (200, 201):
                self.sent[channel].append(self.n)
        self.n += 1

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                await self.one(http)
                try:
                    await asyncio.wait_for(stop.wait(), 0.02)  # pace: a trigger every ~20 ms
                except TimeoutError:
                    pass
            for _ in range(10):  # and some after the fuzz
                await self.one(http)


# -- the fuzz cases: each gets its own seeded Random ----------------------------------------

Case = Callable[[Cluster, random.Random], Awaitable[None]]


def random_text(rng: random.Random, size: int) -> str:
    pools = ["abc{}[]\":,\\ 019", "\x00\x1f\u2028\ud800\udfff\ufeffé€😀", "subscribe channel data"]
    pool = rng.choice(pools) + "xyz"
    return "".join(rng.choice(pool) for _ in range(size))


def quote(text: str) -> str:
    """Percent-encoded UTF-8; lone surrogates become (invalid) UTF-8 escapes, on purpose."""
    return urllib.parse.quote(text, safe="", errors="surrogatepass")


def assert_no_server_error(status: int | None, response: bytes, allowed: set[int]) -> None:
    assert status is None or status < 500 or status in allowed, response[:300]


async def random_bytes(cluster: Cluster, rng: random.Random) -> None:
    data = rng.randbytes(rng.randrange(1, 4096))
    if rng.random() < 0.3:  # a plausible start, then garbage
        data = rng.choice([b"GET / HTTP/1.1\r\n", b"POST /pushy/channel/x/trigger HTTP/1.1\r\n",
                           b"GET /pushy/socket/info HTTP/1.1\r\nHost: x\r\n"]) + data
    response = await wire.exchange(cluster.port, data, half_close=True)
    assert_no_server_error(wire.status_of(response), response, set())


def valid_requests(cluster: Cluster, rng: random.Random) -> list[bytes]:
    session = f"{cluster.prefix}/000/{rng.getrandbits(32):08x}"
    body = b'{"a":1}'
    return [
        wire.http_request("POST", trigger_path(PUBLIC, "x", '{"a":1}'), body,
                          {"Content-Type": "application/json"}),
        wire.http_request("POST", session + "/xhr"),
        wire.http_request("POST", session + "/xhr_send", b'["{}"]'),
        wire.http_request("GET", cluster.prefix + "/info"),
        wire.upgrade_request(session + "/websocket", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]


async def truncated_head(cluster: Cluster, rng: random.Random) -> None:
    request = rng.choice(valid_requests(cluster, rng))
    head_end = request.index(b"\r\n\r\n")
    cut = request[: rng.randrange(1, head_end + 3)]
    if rng.random() < 0.5:
        await wire.send_and_drop(cluster.port, cut)
    else:  # we end our side: the server must give up on the request and close
        response = await wire.exchange(cluster.port, cut, half_close=True)
        assert_no_server_error(wire.status_of(response), response, set())


async def truncated_body(cluster: Cluster, rng: random.Random) -> None:
    path = rng.choice([trigger_path(PUBLIC, "x", '{"a":1}'),
                       f"{cluster.prefix}/000/{rng.getrandbits(32):08x}/xhr_send"])
    body = b'{"a":"' + b"y" * rng.randrange(0, 2000) + b'"}'
    request = wire.http_request("POST", path, body[: rng.randrange(0, len(body))],
                                {"Content-Type": "application/json"},
                                content_length=len(body))
    if rng.random() < 0.5:
        await wire.send_and_drop(cluster.port, request)
    else:
        response = await wire.exchange(cluster.port, request, half_close=True)
        assert_no_server_error(wire.status_of(response), response, set())


async def oversized_bodies(cluster: Cluster, rng: random.Random) -> None:
    """Over 64 KiB to a trigger and over 1 MiB to xhr_send get 413, told or not told."""
    open_session = f"{cluster.prefix}/000/{rng.getrandbits(32):08x}"
    opened = await wire.exchange(cluster.port, wire.http_request("POST", open_session + "/xhr"))
    assert opened.endswith(b"o\n"), opened[-200:]
    for path, limit in ((trigger_path(PUBLIC, "big", "{}"), 64 * 1024),
                        (open_session + "/xhr_send", 1024 * 1024)):
        body = b'["' + b"z" * (limit + rng.randrange(1, 50_000)) + b'"]'
        if rng.random() < 0.5:  # an honest Content-Length
            request = wire.http_request("POST", path, body, {"Content-Type": "application/json"})
        else:  # chunked: the server finds out while reading
            head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 8192]), body[i:i + 8192])
                              for i in range(0, len(body), 8192))
            request = head.encode() + chunks + b"0\r\n\r\n"
        response = await wire.exchange(cluster.port, request)
        assert wire.status_of(response) == 413, response[:300]


async def invalid_utf8(cluster: Cluster, rng: random.Random) -> None:
    bad = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf"])
    # a trigger body that is not UTF-8: 400
    request = wire.http_request("POST", trigger_path(PUBLIC, "x", '{"a":"?"}'),
                                b'{"a":"' + bad + b'"}', {"Content-Type": "application/json"})
    response = await wire.exchange(cluster.port, request)
    assert wire.status_of(response) == 400, response[:300]
    # an xhr_send body (SockJS frame) that is not UTF-8: SockJS's 500 "Broken JSON encoding."
    session = f"{cluster.prefix}/000/{rng.getrandbits(32):08x}"
    opened = await wire.exchange(cluster.port, wire.http_request("POST", session + "/xhr"))
    assert opened.endswith(b"o\n"), opened[-200:]
    response = await wire.exchange(
        cluster.port, wire.http_request("POST", session + "/xhr_send", b'["' + bad + b'"]'))
    if bad == b"\xed\xa0\x80":  # a lone surrogate in UTF-8 form: read as one (surrogatepass)
        assert wire.status_of(response) == 204, response[:300]
    else:
        assert wire.status_of(response) == 500, response[:300]
        assert response.endswith(b"Broken JSON encoding."), response[-300:]
    # a WebSocket text frame that is not UTF-8 (inside a SockJS frame or raw): closed
    ws = await raw_ws(cluster, rng)
    ws.send(wire.ws_frame(0x1, b'["' + bad + b'"]' if ws.sockjs else bad))
    assert await ws.probe() == "closed"
    ws.abort()


async def raw_ws(cluster: Cluster, rng: random.Random) -> wire.RawWebSocket:
    sockjs = rng.random() < 0.6
    path = (f"{cluster.prefix}/{rng.randrange(1000):03d}/{rng.getrandbits(32):08x}/websocket"
            if sockjs else f"{cluster.prefix}/websocket")
    return await wire.RawWebSocket.connect(cluster.port, path, rng, sockjs)


# Frames RFC 6455 says a server must fail the connection for (5.1, 5.2, 5.4, 5.5, 8.1).
MUST_CLOSE: dict[str, Callable[[random.Random], bytes]] = {
    "reserved opcode": lambda r: wire.ws_frame(r.choice([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]),
                                               b"x"),
    "rsv bits": lambda r: wire.ws_frame(0x1, b'["{}"]', rsv=r.randrange(1, 8)),
    "huge length": lambda r: wire.ws_frame(0x1, b"", length=r.choice([2**40, 2**62, 2**21])),
    "fragmented ping": lambda r: wire.ws_frame(0x9, b"p", fin=False),
    "long ping": lambda r: wire.ws_frame(0x9, b"p" * r.randrange(126, 300)),
    "continuation first": lambda r: wire.ws_frame(0x0, b'["{}"]'),
    "binary": lambda r: wire.ws_frame(0x2, r.randbytes(10)),
    "text then text mid-fragment": lambda r: wire.ws_frame(0x1, b'["', fin=False)
    + wire.ws_frame(0x1, b'"]'),
}
# Frames a server may close on or may tolerate; either way the rest of the server is fine.
MAY_CLOSE: dict[str, Callable[[random.Random], bytes]] = {
    "unmasked": lambda r: wire.ws_frame(0x1, b'["{}"]', mask=False),
    "random header": lambda r: r.randbytes(r.randrange(1, 14)),
    "close 1 byte": lambda r: wire.ws_frame(0x8, b"\x03"),
    "random frame": lambda r: wire.ws_frame(r.randrange(16), r.randbytes(r.randrange(0, 200)),
                                            fin=r.random() < 0.7, mask=r.random() < 0.8),
    "fragmented text": lambda r: wire.ws_frame(0x1, b'["{\\"a', fin=False)
    + wire.ws_frame(0x0, b'\\":1}"]'),
}


async def malformed_ws(cluster: Cluster, rng: random.Random) -> None:
    ws = await raw_ws(cluster, rng)
    try:
        if rng.random() < 0.6:
            name = rng.choice(sorted(MUST_CLOSE))
            ws.send(MUST_CLOSE[name](rng))
            outcome = await ws.probe()
            assert outcome == "closed", (name, outcome)
        else:
            name = rng.choice(sorted(MAY_CLOSE))
            ws.send(MAY_CLOSE[name](rng))
            outcome = await ws.probe()
            # random bytes may announce a payload longer than all we send: the server waits
            assert outcome in ("closed", "alive") or name.startswith("random"), (name, outcome)
    finally:
        ws.abort()


async def dropped_handshake(cluster: Cluster, rng: random.Random) -> None:
    path = f"{cluster.prefix}/000/{rng.getrandbits(32):08x}/websocket"
    request = wire.upgrade_request(path, "dGhlIHNhbXBsZSBub25jZQ==")
    if rng.random() < 0.5:
        await wire.send_and_drop(cluster.port, request[: rng.randrange(1, len(request))])
    else:  # the whole handshake, then gone before (or while) the server answers
        await wire.send_and_drop(cluster.port, request)


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**70, 1.5e300])
    if kind == 2:
        return rng.choice([PUBLIC, PRESENCE, "private-x", "", "x" * 201, "ÉÉ", "\ud800"])
    if kind in (3, 4, 5):
        return random_text(rng, rng.randrange(0, 30))
    if kind in (6, 7):
        return {random_text(rng, rng.randrange(0, 6)): random_value(rng, depth + 1)
                for _ in range(rng.randrange(0, 4))}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]


def random_pushy_message(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.1:
        return random_text(rng, rng.randrange(0, 40))
    if roll < 0.2:
        return json.dumps(random_value(rng))
    message: dict[str, Any] = {}
    if rng.random() < 0.9:
        message["command"] = rng.choice(["subscribe", "unsubscribe", "SUBSCRIBE", "nope",
                                         random_value(rng)])
    if rng.random() < 0.1:
        message["event"] = random_value(rng)
    data: Any = {
        "channel": random_value(rng) if rng.random() < 0.4 else rng.choice(
            [PUBLIC, "private-x", PRESENCE, "fuzz-other"]),
    }
    if rng.random() < 0.5:
        data["auth"] = rng.choice([random_value(rng), "0" * 64])
    if rng.random() < 0.5:
        data["data"] = random_value(rng)
    message["data"] = data if rng.random() < 0.9 else random_value(rng)
    return json.dumps(message)


async def random_pushy(cluster: Cluster, rng: random.Random) -> None:
    """Random, well-framed Pushy messages: each gets its reply, the session stays open."""
    client = await cluster.client()
    try:
        for _ in range(rng.randrange(1, 15)):
            await client.send("", raw=random_pushy_message(rng))
        await client.send("fuzz-probe", {})
        while True:  # everything before the probe's answer is whatever the messages earned
            reply = await client.next()
            if reply.get("event") == "pushy:error" and reply["data"]["code"] == "200":
                break
    finally:
        await client.close()


async def random_raw_ws_messages(cluster: Cluster, rng: random.Random) -> None:
    ws = await raw_ws(cluster, rng)
    try:
        for _ in range(rng.randrange(1, 10)):
            text = random_pushy_message(rng)
            payload = json.dumps([text]) if ws.sockjs else text
            ws.send(wire.ws_frame(0x1, payload.encode("utf-8", "replace"),
                                  key=rng.randbytes(4)))
        assert await ws.probe() == "alive"
    finally:
        ws.abort()


async def random_http(cluster: Cluster, rng: random.Random) -> None:
    session = f"{cluster.prefix}/{rng.randrange(1000):03d}/{rng.getrandbits(32):08x}"
    path = rng.choice([
        "/", cluster.prefix, cluster.prefix + "/info", cluster.prefix + "/iframe.html",
        session + "/xhr", session + "/xhr_streaming", session + "/eventsource",
        session + "/htmlfile?c=" + quote(random_text(rng, 5)),
        session + "/jsonp?c=cb", session + "/xhr_send", session + "/jsonp_send",
        "/pushy/channel/" + quote(random_text(rng, 8)) + "/trigger?event="
        + quote(random_text(rng, 3)) + f"&timestamp={int(time.time())}&auth_key="
        + quote(random_text(rng, 8)),
        "/" + quote(random_text(rng, 20)), "/%ff%fe", "/..%2f..%2fetc/passwd",
    ])
    method = rng.choice(["GET", "POST", "PUT", "OPTIONS", "DELETE", "HEAD", "FOO"])
    headers = {rng.choice(["Content-Type", "Origin", "Cookie", "X-Junk", "Accept"]):
               rng.choice(["application/json", "application/x-www-form-urlencoded",
                           "text/plain", "null", "JSESSIONID=" + "a" * 100,
                           "x" * rng.randrange(0, 9000)])}
    body = rng.choice([b"", rng.randbytes(rng.randrange(0, 300)),
                       random_pushy_message(rng).encode("utf-8", "replace"),
                       b"d=" + quote(random_text(rng, 10)).encode()])
    if "xhr_streaming" in path or "eventsource" in path or "htmlfile" in path:
        method = "OPTIONS" if method in ("GET", "POST") else method  # a stream never ends
    response = await wire.exchange(cluster.port, wire.http_request(method, path, body, headers))
    status = wire.status_of(response)
    assert status is not None or response == b"", response[:300]
    # SockJS answers a bad xhr_send / jsonp_send payload with 500 and its reason
    allowed = {500} if path.endswith("_send") and response.endswith(
        (b"Payload expected.", b"Broken JSON encoding.")) else set()
    assert_no_server_error(status, response, allowed)


CASE_KINDS: list[tuple[Case, int]] = [
    (random_bytes, 3), (truncated_head, 3), (truncated_body, 2), (oversized_bodies, 1),
    (invalid_utf8, 1), (malformed_ws, 4), (dropped_handshake, 2), (random_pushy, 3),
    (random_raw_ws_messages, 2), (random_http, 4),
]


# Tracebacks that are not faults and may still appear. None since logs.ClientNoise turns
# aiohttp's records of a client's mistake (a request its parser refused, a client gone before
# its answer) into one short line; any traceback now fails the test.
KNOWN_NOISE: tuple[str, ...] = ()
MAX_LINE = 400  # characters: one line per event, never a client's raw bytes


def log_problems(lines: list[str]) -> tuple[list[str], int]:
    """Log lines that betray a fault, and how many tracebacks were known noise.

    Any traceback not in KNOWN_NOISE (raw, or folded into a log line by logs.py), a restarted
    process, a dropped link message or a line longer than MAX_LINE (raw client bytes in the
    log) is a fault.
    """
    problems = [line[:MAX_LINE] for line in lines
                if "exited" in line or "dropped malformed" in line or len(line) > MAX_LINE]
    noise = 0
    for line in lines:  # a traceback logs.py folded into its line: the exception is last
        if " | Traceback" in line:
            if KNOWN_NOISE and line.rsplit(" | ", 1)[-1].startswith(KNOWN_NOISE):
                noise += 1
            elif len(line) <= MAX_LINE:
                problems.append(line)
    for n, line in enumerate(lines):
        if not line.startswith("Traceback"):
            continue
        # the exception line: the first one after the trace that is not indented
        end = next((k for k in range(n + 1, len(lines)) if not lines[k].startswith(" ")),
                   len(lines) - 1)
        if KNOWN_NOISE and lines[end].startswith(KNOWN_NOISE):
            noise += 1
        else:
            problems.extend([lines[n - 1], *lines[end - 4: end + 1]])
    return problems, noise


async def join_presence(client: PushyClient, name: str) -> None:
    data = json.dumps({"name": name})
    await client.subscribe(PRESENCE, auth=channel_token(client.socket_id, PRESENCE, data),
                           data=data)


async def test_fuzzed_server_keeps_serving_and_loses_nothing(own_cluster: Cluster) -> None:
    cluster = own_cluster
    print(f"fuzz seed {SEED} ({CASES} cases): PUSHY_FUZZ_SEED={SEED} to reproduce")
    rng = random.Random(SEED)
    pids = {child: cluster.pid(*child) for child in iter_children(cluster)}
    start_mark = cluster.log.mark
    ref = await cluster.client()
    try:
        await fuzz_and_check(cluster, ref, rng, pids, start_mark)
    finally:
        await ref.close()


async def fuzz_and_check(cluster: Cluster, ref: PushyClient, rng: random.Random,
                         pids: dict[tuple[str, int], int], start_mark: int) -> None:
    await ref.subscribe(PUBLIC)
    await join_presence(ref, "reference")

    publisher = Publisher(cluster)
    stop = asyncio.Event()
    publishing = asyncio.create_task(publisher.run(stop))
    kinds, weights = zip(*CASE_KINDS, strict=True)
    counts: dict[str, int] = {}
    try:
        for n in range(CASES):
            case = rng.choices(kinds, weights)[0]
            case_seed = rng.getrandbits(32)
            counts[case.__name__] = counts.get(case.__name__, 0) + 1
            try:
                await case(cluster, random.Random(case_seed))
            except (AssertionError, OSError, TimeoutError) as exc:
                raise AssertionError(f"case {n} {case.__name__} (seed {SEED}, case seed "
                                     f"{case_seed}): {exc!r}") from exc
    finally:
        stop.set()
        await publishing
    print("cases:", counts, "triggers:", len(publisher.statuses))

    # the reference client got every accepted event of each channel, in order
    assert set(publisher.statuses) == {201}, publisher.statuses
    received: dict[str, list[int]] = {PUBLIC: [], PRESENCE: []}
    expected = sum(map(len, publisher.sent.values()))
    while sum(map(len, received.values())) < expected:
        message = await ref.next()
        if message.get("event") == EVENT:
            received[message["channel"]].append(message["data"]["n"])
        else:  # nobody else can be in the presence channel: fuzzers have no token
            raise AssertionError(f"unexpected message to the reference client: {message}")
    assert received == publisher.sent
    await ref.nothing_pending()

    # same processes as before, none restarted, and nothing blew up on the way
    assert {child: cluster.pid(*child) for child in iter_children(cluster)} == pids
    for pid in pids.values():
        os.kill(pid, 0)
    problems, noise = log_problems(cluster.log.lines[start_mark:])
    assert not problems, "\n".join(problems)
    print(f"aiohttp logged {noise} tracebacks of known noise (KNOWN_NOISE)")

    # a fresh client can connect, join and receive
    fresh = await cluster.client()
    await fresh.subscribe(PUBLIC)
    await join_presence(fresh, "fresh")
    add = await ref.expect("pushy:presence-add")
    assert add["data"]["member"]["name"] == "fresh"
    status, _ = await cluster.trigger(PUBLIC, "after", {"ok": True})
    assert status == 201
    for client in (ref, fresh):
        assert await client.next() == {"event": "after", "channel": PUBLIC, "data": {"ok": True}}
    await fresh.close()


async def test_lone_surrogate_channel_names_are_refused(own_cluster: Cluster) -> None:
    """Found by this fuzz: a channel name with a lone surrogate (JSON.stringify sends it
    escaped) was joined, then a shard could not encode it on the link and dropped the
    request after applying it: the unsubscribe got 503 after 10 s, and a disconnect lost
    the presence-quit of the member's other channels."""
    cluster = own_cluster
    ann = await cluster.client(front=0)
    bob = await cluster.client(front=1)
    try:
        await join_presence(ann, "ann")
        await join_presence(bob, "bob")
        await ann.expect("pushy:presence-add")
        for name in ("\ud800", "x\udfffy", "\udc00\ud800"):
            await bob.send("subscribe", {"channel": name})
            assert (await bob.expect("pushy:error"))["data"] == {
                "message": "Invalid channel name: lone surrogate", "code": "301"}
            await bob.send("unsubscribe", {"channel": name})
            assert (await bob.expect("pushy:error"))["data"]["code"] == "301"
        # an escaped surrogate pair is one ordinary character
        await bob.subscribe("pair-\U0001f600")
        await bob.close()
        quit_ = await ann.expect("pushy:presence-quit")
        assert quit_["data"]["member"]["name"] == "bob"
        await ann.nothing_pending()
    finally:
        await ann.close()
        await bob.close()
