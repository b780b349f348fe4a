"""A shard's links to Redis (SCALEOUT.md): thin pumps between the Shard and two connections.

- Commands: redis-py's asyncio client (hiredis parses). Each loop turn's writes and
  publishes (core/cluster_view.py's Turn) go as one pipeline; one pipeline is in flight at a
  time, and what the turns make meanwhile goes in the next (the batching grows with the
  load). Every pipeline has `DEADLINE`: past it, or on any error, Redis counts as down:
  triggers answer 503 with Retry-After at once while a probe reconnects with back-off.
- Pub/sub: a connection of our own on hiredis's reader, because every gap must be seen
  (redis-py's PubSub resubscribes silently after a reconnect): a drop releases what waited
  for SUBSCRIBE acknowledgements, counts a gap, and the reconnect subscribes every channel
  again in batches. Messages are applied as they are read (the Shard does no I/O), so the
  loop never waits on this link; a reader that falls behind past Redis's pub/sub output
  limit is dropped by Redis: the same gap path.
- The lease: this shard is `<node>/<index>` in Redis, renewed every lease_seconds / 3; every
  lease_seconds / 2 it sweeps the instances whose lease expired (their counts go, with
  channel_vacated where the channel empties).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.exceptions import RedisError

from pushy_shard.core import cluster_wire as wire
from pushy_shard.core import link
from pushy_shard.core.channel_query import Facts
from pushy_shard.core.cluster_view import Asked, PresenceOp, Publish, Turn
from pushy_shard.core.config import Config
from pushy_shard.core.routing import app_key, app_of, name_of
from pushy_shard.errors import ClusterMessageError
from pushy_shard.shard.engine import Shard
from pushy_shard.shard.redis_scripts import COUNT, PRESENCE, SCRIPTS, VACANT

log = logging.getLogger(__name__)

DEADLINE = 1.0  # seconds Redis has to answer a pipeline, a SUBSCRIBE or a connect
RECONNECT_FIRST, RECONNECT_MAX = 0.1, 5.0  # back-off between reconnect attempts
SUBSCRIBE_BATCH = 512  # channels per SUBSCRIBE command
READ_BYTES = 256 * 1024

def node_name(config: Config) -> str:
    """The instance's name in Redis: cluster.node, or `<hostname>:<port>`."""
    assert config.cluster is not None
    return config.cluster.node or f"{socket.gethostname()}:{config.port}"


class PubSub:
    """One pub/sub connection: replies go to `on_reply` as hiredis reads them."""

    def __init__(self, url: str, on_reply: Callable[[list[Any]], None]) -> None:
        self.options = parse_url(url)
        self.on_reply = on_reply
        self._writer: asyncio.StreamWriter | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def run(self, on_open: Callable[[], None]) -> None:
        """Connect, call `on_open`, then read until the connection ends (it raises
        OSError, TimeoutError or ClusterMessageError, or returns at EOF)."""
        options = self.options
        if "path" in options:
            connect = asyncio.open_unix_connection(options["path"])
        else:
            connect = asyncio.open_connection(options.get("host", "localhost"),
                                              options.get("port", 6379))
        reader, writer = await asyncio.wait_for(connect, DEADLINE)
        parser = hiredis.Reader()
        try:
            if options.get("password") is not None:
                auth = [options["password"]]
                if options.get("username"):
                    auth.insert(0, options["username"])
                writer.write(hiredis.pack_command(("AUTH", *auth)))
                parser.feed(await asyncio.wait_for(reader.read(READ_BYTES), DEADLINE))
                if parser.gets() != b"OK":
                    raise ClusterMessageError("Redis refused the pub/sub connection's AUTH")
            self._writer = writer
            on_open()
            while data := await reader.read(READ_BYTES):
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    self.on_reply(reply)
        finally:
            self._writer = None
            writer.close()

    def send(self, command: str, keys: list[str]) -> bool:
        """SUBSCRIBE / UNSUBSCRIBE the pub/sub channels of `keys`, in batches."""
        if self._writer is None:
            return False
        for start in range(0, len(keys), SUBSCRIBE_BATCH):
            batch = [wire.channel(key) for key in keys[start:start + SUBSCRIBE_BATCH]]
            self._writer.write(hiredis.pack_command((command, *batch)))  # type: ignore[arg-type]
        return True


class RedisLink:
    """The Shard's cluster side on Redis."""

    def __init__(self, shard: Shard, loop: asyncio.AbstractEventLoop,
                 flush: Callable[[], None]) -> None:
        cluster = shard.config.cluster
        assert cluster is not None
        self.shard = shard
        self.loop = loop
        self.flush = flush
        self.lease_ms = int(cluster.lease_seconds * 1000)
        self.instance = f"{node_name(shard.config)}/{shard.index}"
        self.incarnation = secrets.token_hex(4)
        self.client = Redis.from_url(cluster.redis, socket_timeout=DEADLINE,
                                     socket_connect_timeout=DEADLINE,
                                     retry=Retry(NoBackoff(), 0))
        self.pubsub = PubSub(cluster.redis, self._on_reply)
        self._up = False  # the command connection answered the last time it was used
        shard.redis_up = False
        self._queue: list[Turn] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._probing = False
        self._heard = False  # the pub/sub connection opened since the last drop
        self._gap = False  # it was lost at least once
        self._written: list[str] = []  # lines to log when the next pipeline is written
        self._resubscribing: set[str] = set()  # SUBSCRIBEs after a gap not yet acknowledged
        self._resubscribed = ""  # ...after what
        # keys a predecessor of this shard had members in (None: not read yet); released
        # once the fronts have replayed (those they bring back stay)
        self._stale: set[str] | None = None
        self._recovered = False
        # figures for stats()
        self.pipelines = 0
        self.round_trip_seconds = 0.0
        self.published = 0
        self.failed_publishes = 0
        self.reconnects = 0
        self.gaps = 0
        self.renewals = 0
        self.swept = 0

    @property
    def up(self) -> bool:
        return self._up

    @up.setter
    def up(self, value: bool) -> None:
        self._up = value
        self._tell_shard()

    def _tell_shard(self) -> None:
        """The Shard's Pongs say whether both connections are up (fronts' /health)."""
        self.shard.redis_up = self._up and self.pubsub.connected

    # -- life ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the lease (taking over a predecessor of this shard, whose channels are
        re-counted once the fronts replayed), then run the pumps."""
        try:
            await asyncio.wait_for(self._register(), DEADLINE)
            self.up = True
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)
        self.shard.join_cluster(node_name(self.shard.config), self.instance)
        for job in (self._pump(), self._listen(), self._renew(), self._sweep()):
            self._tasks.append(self.loop.create_task(job))
        log.info("shard %d: in the cluster as %s on %s", self.shard.index, self.instance,
                 _safe_url(self.shard.config))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()

    def recovered(self) -> None:
        """The fronts replayed (the Shard's on_recovered): their channels are subscribed
        with the next flush (logged when Redis acknowledged them all)."""
        self._recovered = True
        self._release_stale()
        assert self.shard.cluster is not None
        self._await_subscribed("replayed", {key for key, _ in self.shard.local_counts()})

    def _await_subscribed(self, what: str, keys: set[str]) -> None:
        """Log once every one of `keys` is subscribed (tests and operators wait for it)."""
        assert self.shard.cluster is not None
        listening = self.shard.cluster.listening
        self._resubscribing = {key for key in keys
                               if key not in listening or not listening[key].acknowledged}
        self._resubscribed = what
        if not self._resubscribing:
            self._subscribed_all()

    def _subscribed_all(self) -> None:
        log.info("shard %d: every %s channel subscribed", self.shard.index, self._resubscribed)

    def _release_stale(self) -> None:
        """What a predecessor left and no front brought back goes (once both are known)."""
        if not self._recovered or self._stale is None:
            return
        stale = sorted(self._stale - {key for key, _ in self.shard.local_counts()})
        self._stale = set()
        self.shard.release_stale(stale)
        self._after_write(f"recovered; {len(stale)} channel(s) a predecessor left released")

    def send(self, turns: list[Turn]) -> None:
        """The turns the Shard made; subscriptions go now, the rest with the next pipeline."""
        for turn in turns:
            if turn.subscribe or turn.unsubscribe:
                self._subscriptions(turn.subscribe, turn.unsubscribe)
            for asked in turn.queries:
                self._tasks.append(self.loop.create_task(self._answer(asked)))
            if (turn.counts or turn.publishes or turn.presence or turn.applied
                    or turn.token is not None):
                self._queue.append(turn)
        if self._queue or self._written:
            self._wake.set()

    # -- the command connection --------------------------------------------------------------

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            turns, self._queue = self._queue, []
            counts: dict[str, int] = {}
            applied: dict[str, int] = {}
            for turn in turns:
                counts.update(turn.counts)
                applied.update(turn.applied)
            publishes = [p for turn in turns for p in turn.publishes]
            presence = [op for turn in turns for op in turn.presence]
            written, self._written = self._written, []
            await self._execute(counts, publishes, presence, applied)
            if self.up:
                for line in written:
                    log.info("shard %d: %s (%d count(s) written)", self.shard.index, line,
                             len(counts))
            else:
                self._written = written + self._written
            for turn in turns:
                if turn.token is not None:
                    self.shard.release(turn.token)
            self.flush()

    async def _execute(self, counts: dict[str, int], publishes: list[Publish],
                       presence: list[PresenceOp], applied: dict[str, int]) -> None:
        """One pipeline: counts, then presence scripts, then publishes (each in its turns'
        order); every waiter is answered, with None where Redis did not answer."""
        results: list[Any] | None = None
        if self.up:
            pipe = self.client.pipeline(transaction=False)
            for key, n in counts.items():
                pipe.evalsha(COUNT.sha, 2, wire.occupancy(key), wire.announced(key),
                             self.instance, n, "1" if self.shard.wants_occupancy(key) else "0")
                if n:
                    pipe.sadd(wire.host_channels(self.instance), key)
                else:
                    pipe.srem(wire.host_channels(self.instance), key)
            for op in presence:
                if op.kind == "vacant":
                    pipe.evalsha(VACANT.sha, 2, wire.occupancy(op.key), wire.announced(op.key))
                    continue
                keys: list[str | bytes] = [*wire.presence(op.key, self.instance),
                                           wire.channel(op.key)]
                pipe.evalsha(PRESENCE[op.kind].sha, len(keys), *keys, *op.args)
            for publish in publishes:
                pipe.hvals(wire.occupancy(publish.key))
                pipe.publish(wire.channel(publish.key), publish.payload)
            for key, seq in applied.items():  # last in the pipeline: its answers are unread
                pipe.hset(wire.presence(key, self.instance)[7], self.instance, seq)
            started = time.perf_counter()
            try:
                results = await asyncio.wait_for(pipe.execute(raise_on_error=False), DEADLINE)
            except (RedisError, OSError, TimeoutError) as exc:
                self._down(exc)
            else:
                self.pipelines += 1
                self.round_trip_seconds += time.perf_counter() - started
        if results is None:  # down: the counts are written again when it is back
            if counts:
                assert self.shard.cluster is not None
                self.shard.cluster.rewrite(self.shard.local_counts())
            for op in presence:
                self.shard.presence_done(op, None)
            for publish in publishes:
                self.failed_publishes += 1
                self.shard.publish_done(publish.waiter, None)
            return
        for i, key in enumerate(counts):
            transition = results[2 * i]
            if isinstance(transition, int) and transition:
                self.shard.occupancy(key, transition)
            elif isinstance(transition, Exception):  # NOSCRIPT: loaded again, rewritten
                log.warning("shard %d: Redis refused a count of %r: %s", self.shard.index,
                            key, transition)
                self._down(transition)
        offset = 2 * len(counts)
        for i, op in enumerate(presence):
            answer = results[offset + i]
            if isinstance(answer, Exception):
                log.warning("shard %d: Redis refused a presence %s of %r: %s",
                            self.shard.index, op.kind, op.key, answer)
                self.shard.presence_done(op, None)
                self._down(answer)
            else:
                self.shard.presence_done(op, answer)
        offset += len(presence)
        for j, publish in enumerate(publishes):
            hosts, sent = results[offset + 2 * j], results[offset + 2 * j + 1]
            if isinstance(hosts, Exception) or isinstance(sent, Exception):
                self.failed_publishes += 1
                self.shard.publish_done(publish.waiter, None)
                continue
            self.published += 1
            self.shard.publish_done(publish.waiter, [int(n) for n in hosts])

    def _down(self, exc: BaseException) -> None:
        if self.up or not self._probing:
            log.warning("shard %d: Redis unavailable (%s); triggers answer 503 until it is "
                        "back", self.shard.index, exc.__class__.__name__)
        self.up = False
        if not self._probing:
            self._probing = True
            self._tasks.append(self.loop.create_task(self._probe()))

    async def _probe(self) -> None:
        """Reconnect with back-off and jitter; then the lease and every count again."""
        delay = RECONNECT_FIRST
        while True:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, RECONNECT_MAX)
            try:
                await asyncio.wait_for(self._register(), DEADLINE)
            except (RedisError, OSError, TimeoutError):
                continue
            break
        self._probing = False
        self.up = True
        self.reconnects += 1
        self._registered_again("Redis is back")

    # -- the HTTP API's queries ------------------------------------------------------------------

    async def _answer(self, asked: Asked) -> None:
        """A query, read from Redis within DEADLINE (else the front answers 503)."""
        found: Any = None
        answered = False
        if self.up:
            try:
                found = await asyncio.wait_for(self._read(asked.request), DEADLINE)
                answered = True
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("shard %d: a query found Redis unavailable (%s)", self.shard.index,
                            exc.__class__.__name__)
        self.shard.query_done(asked, found, answered)
        self._tasks = [task for task in self._tasks if not task.done()]
        self.flush()

    async def _read(self, request: object) -> Any:
        assert isinstance(request, link.Query)
        if request.what == "channels":
            # every instance's channels: the union of the sets each shard keeps of its own
            # (written in its order, so never stale but for a dead instance not swept yet);
            # this shard answers for the keys it owns here, the others for theirs
            hosts = [_text(h) for h in await self.client.smembers(wire.HOSTS)]
            union = await self.client.sunion([wire.host_channels(h) for h in hosts]) if hosts \
                else set()
            keys = sorted(key for key in map(_text, union)
                          if app_of(key) == request.app and self.shard.owns(key))
            found = await self._facts(keys)
            return [facts for facts in found if facts is not None]
        key = app_key(request.app, request.name)
        if request.what == "users":
            presence = wire.presence(key, self.instance)
            pipe = self.client.pipeline(transaction=False)
            pipe.zrange(presence[1], 0, -1)
            pipe.hlen(wire.occupancy(key))
            ids, occupied = await pipe.execute()
            if not ids and occupied:
                return False
            return [_text(entity) for entity in ids]
        return (await self._facts([key]))[0]

    async def _facts(self, keys: list[str]) -> list[Facts | None]:
        """Each channel's cluster-wide counts: its instances' subscriptions and its users."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hvals(wire.occupancy(key))
            pipe.hlen(wire.presence(key, self.instance)[2])
        answers = await pipe.execute()
        out: list[Facts | None] = []
        for i, key in enumerate(keys):
            counts, users = answers[2 * i], int(answers[2 * i + 1])
            if not counts:
                out.append(None)
                continue
            display = name_of(key)
            out.append(Facts(key, display, users > 0 or display.startswith("presence-"),
                             sum(int(n) for n in counts), users))
        return out

    # -- the lease ------------------------------------------------------------------------------

    async def _register(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for script in SCRIPTS:
            pipe.script_load(script.text)
        pipe.set(wire.lease(self.instance), self.incarnation, px=self.lease_ms)
        pipe.sadd(wire.HOSTS, self.instance)
        pipe.smembers(wire.host_channels(self.instance))
        *_, channels = await pipe.execute()
        if self._stale is None:
            self._stale = {_text(key) for key in channels}
            self._release_stale()

    def _registered_again(self, why: str) -> None:
        """Registered after a loss: every local count is written again (the next pipeline
        logs when it is done)."""
        log.info("shard %d: %s; writing every count and member again", self.shard.index, why)
        self.shard.cluster_replay()
        self._after_write("registered in Redis again")

    def _after_write(self, line: str) -> None:
        """Log `line` once the next pipeline is written (tests and operators wait for it)."""
        self._written.append(line)
        self.flush()

    async def _renew(self) -> None:
        """Every lease_seconds / 3. A lease found gone (Redis restarted, or another
        instance swept this one) is registered again with every count."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            if not self.up:
                continue
            try:
                before = await asyncio.wait_for(self.client.set(
                    wire.lease(self.instance), self.incarnation, px=self.lease_ms, get=True),
                    DEADLINE)
                self.renewals += 1
                if before != self.incarnation.encode():
                    await asyncio.wait_for(self._register(), DEADLINE)
                    self._registered_again(f"its lease {self.instance} was lost")
            except (RedisError, OSError, TimeoutError) as exc:
                self._down(exc)

    async def _sweep(self) -> None:
        """Every lease_seconds / 2: instances without a lease leave, claimed by one sweeper."""
        while True:
            await asyncio.sleep(self.lease_ms / 2000 * random.uniform(0.9, 1.1))
            if not self.up:
                continue
            try:
                await asyncio.wait_for(self._sweep_once(), self.lease_ms / 2000)
            except (RedisError, OSError, TimeoutError) as exc:
                self._down(exc)

    async def _sweep_once(self) -> None:
        for raw in await self.client.smembers(wire.HOSTS):
            instance = _text(raw)
            if instance == self.instance or await self.client.exists(wire.lease(instance)):
                continue
            claimed = await self.client.set(f"{wire.PREFIX}sweep:{instance}", self.instance,
                                            nx=True, px=self.lease_ms)
            if not claimed:
                continue
            keys = [_text(key) for key in await self.client.smembers(wire.host_channels(instance))]
            log.warning("shard %d: instance %s lost its lease; its %d channel(s) released",
                        self.shard.index, instance, len(keys))
            for key in keys:
                presence: list[str | bytes] = [*wire.presence(key, instance), wire.channel(key)]
                gone = await self.client.evalsha(PRESENCE["prune"].sha, len(presence),
                                                 *presence)
                for i in range(1, len(gone) - 1, 2):
                    self.shard.presence_removed(key, _text(gone[i]))
                transition = await self.client.evalsha(
                    COUNT.sha, 2, wire.occupancy(key), wire.announced(key), instance, 0,
                    "1" if self.shard.wants_occupancy(key) else "0")
                self.shard.occupancy(key, int(transition))
            await self.client.delete(wire.host_channels(instance))
            await self.client.srem(wire.HOSTS, instance)
            self.swept += 1
            self.flush()

    # -- the pub/sub connection --------------------------------------------------------------

    async def _listen(self) -> None:
        delay = RECONNECT_FIRST
        while True:
            self._heard = False
            try:
                await self.pubsub.run(self._opened)
                reason = "closed by Redis"
            except (OSError, TimeoutError, ClusterMessageError) as exc:
                reason = str(exc) or exc.__class__.__name__
            if self._heard:  # it was up: a gap; reconnect at once, then back off
                log.warning("shard %d: Redis pub/sub link lost (%s); reconnecting",
                            self.shard.index, reason)
                delay = RECONNECT_FIRST
            self._lost()
            self._gap = True
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, RECONNECT_MAX)

    def _opened(self) -> None:
        assert self.shard.cluster is not None
        keys = list(self.shard.cluster.listening)
        if self._gap:
            log.info("shard %d: pub/sub link open again", self.shard.index)
            self._await_subscribed("resubscribed", set(keys))
        self._heard = True
        self._tell_shard()
        self.pubsub.send("SUBSCRIBE", keys)
        self.loop.call_later(DEADLINE, self._overdue, keys)

    def _lost(self) -> None:
        self._tell_shard()
        self.shard.pubsub_lost()
        assert self.shard.cluster is not None
        if self.shard.cluster.listening:
            self.gaps += 1
        for token in self.shard.cluster.lost():
            self.shard.release(token)
        self.flush()

    def _subscriptions(self, subscribe: list[str], unsubscribe: list[str]) -> None:
        if unsubscribe:
            self.pubsub.send("UNSUBSCRIBE", unsubscribe)
        if subscribe:
            if self.pubsub.send("SUBSCRIBE", subscribe):
                self.loop.call_later(DEADLINE, self._overdue, subscribe)
            else:
                self._overdue(subscribe)

    def _overdue(self, keys: Iterable[str]) -> None:
        """SUBSCRIBEs unanswered by their deadline (or not sent: the link is down): what
        waited for them is served locally; the reconnect subscribes them again."""
        assert self.shard.cluster is not None
        for token in self.shard.cluster.unheard(keys):
            self.shard.release(token)
        self.flush()

    def _on_reply(self, reply: list[Any]) -> None:
        kind = reply[0] if isinstance(reply, list) and reply else None
        try:
            if kind == b"message":
                self.shard.arrived(wire.key_of(reply[1]), reply[2])
            elif kind == b"subscribe":
                key = wire.key_of(reply[1])
                self.shard.subscribed(key)
                if self._resubscribing:
                    self._resubscribing.discard(key)
                    if not self._resubscribing:
                        self._subscribed_all()
            else:
                return
        except ClusterMessageError as exc:
            self.shard.breach_line("cluster", f"dropped a pub/sub reply: {exc}")
            return
        self.flush()

    def stats(self) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
        return [
            ("pushy_redis_links_up", (), 1.0 if self.up and self.pubsub.connected else 0.0),
            ("pushy_redis_pipelines_total", (), float(self.pipelines)),
            ("pushy_redis_round_trip_seconds_total", (), self.round_trip_seconds),
            ("pushy_cluster_messages_out_total", (), float(self.published)),
            ("pushy_cluster_publish_failures_total", (), float(self.failed_publishes)),
            ("pushy_redis_reconnects_total", (), float(self.reconnects)),
            ("pushy_cluster_gaps_total", (), float(self.gaps)),
            ("pushy_cluster_lease_renewals_total", (), float(self.renewals)),
            ("pushy_cluster_swept_total", (), float(self.swept)),
        ]


def _safe_url(config: Config) -> str:
    """The Redis URL without its password, for logs."""
    assert config.cluster is not None
    url = config.cluster.redis
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "surrogatepass")
