"""A front's protocol-blind layer: connections, admission, the links to the shards.

Transports open and close connections here and hand each client message to the
connection's client-protocol adapter (`conn.adapter`: the Pushy protocol, pushy.py), which
parses and admits it and asks the shards through `request`. What shards send comes back
through the links' one dispatch (`LinkHandler`: deliver, reply, joined, left) to the hub,
whose fan-out path is front/fanout.py. Nothing here awaits on the fan-out path.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pushy_shard.core import admission, link
from pushy_shard.core.cluster_view import RecentMarks
from pushy_shard.core.config import Config
from pushy_shard.core.metrics import Metrics
from pushy_shard.core.origins import client_address
from pushy_shard.core.ratelimit import BreachLog
from pushy_shard.core.routing import shard_for
from pushy_shard.errors import TOO_MANY_CONNECTIONS, Close, CommandFailed
from pushy_shard.front.fanout import Connection, Hub, labels
from pushy_shard.front.links import ShardLinks

log = logging.getLogger(__name__)

BREACHES = "pushy_limit_breaches_total"
_FROM_CLIENT = (("source", "client"),)


def new_socket_id() -> str:
    """Unguessable and unique across processes: a random (version 4) UUID."""
    return str(uuid.uuid4())


class PeerRequest(Protocol):
    """What `request_address` reads of an HTTP request (aiohttp's `web.Request` fits)."""

    @property
    def remote(self) -> str | None: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


class ClientProtocol(Protocol):
    """A client protocol on this front's connections (ARCHITECTURE.md 6): it greets a new
    connection, handles each of its messages and says goodbye in its own words; the
    transports carry the bytes."""

    # an HTTP session opens (SockJS `o`) before a refusal: the protocol's clients read why
    # they were refused only on an open session (Pusher); else the close frame alone (Pushy)
    open_first: bool

    def new_socket_id(self) -> str:
        """The id of a new connection, in the form the protocol's clients expect."""

    def admit(self, conn: Connection) -> Close | None:
        """The protocol's own admission of a new connection (the front admitted it): None,
        or the close to refuse it with, after anything the protocol sends first."""

    def greet(self, conn: Connection) -> None:
        """The connection is open (registered with the front): the protocol's first words."""

    def message(self, conn: Connection, text: str) -> None:
        """One client message, as the transport framed it."""

    def activity(self, conn: Connection) -> None:
        """The client showed it is alive without a message (a WebSocket ping or pong, an
        HTTP send of no messages)."""

    def closed(self, conn: Connection) -> None:
        """The connection is gone (after the front let it leave its channels)."""

    def refusal(self, conn: Connection, why: Close) -> Close:
        """The front refuses a new connection for `why` (admission): the close to use,
        after anything the protocol sends first."""

    def goodbye(self, conn: Connection) -> Close:
        """The server is stopping: the close to end `conn` with, after anything the
        protocol sends first."""

    def labels(self, conn: Connection) -> tuple[tuple[str, str], ...]:
        """`conn`'s labels in /metrics: transport, protocol, app."""


class Front:
    def __init__(self, config: Config, index: int) -> None:
        self.config = config  # may be replaced while running (reload): read limits at use
        self.index = index
        self.shards = config.workers
        self.hub = Hub(config.workers)
        # several instances: the marks of the triggers written lately (twice the trigger
        # timeout: fronts re-send within it)
        self._marks = RecentMarks(2 * config.timeouts.trigger)
        # told (app id, user id) when another instance's terminate_connections reaches here
        self.on_terminate: Callable[[str, str], int] | None = None
        self.links: ShardLinks | None = None
        self.metrics = Metrics()
        self.stopping = False  # set by a graceful stop: no new connections from then on
        self.budgets: dict[str, admission.Budget] = {}
        self._breach_log = BreachLog()

    def attach(self, links: ShardLinks) -> None:
        self.links = links

    # -- limits --------------------------------------------------------------------------

    def breach(self, limit: str, detail: str) -> None:
        """Count a breach of config.limits.`limit` and log it (one line per limit a second)."""
        self.metrics.inc(BREACHES, (("limit", limit),))
        line = self._breach_log.line(limit, time.monotonic(),
                                     f"front {self.index}: limit {limit}: {detail}")
        if line is not None:
            log.warning("%s", line)

    def request_address(self, request: PeerRequest) -> str:
        """The client's address: the peer, or X-Forwarded-For behind `trusted_proxies`."""
        return client_address(request.remote, request.headers.get("X-Forwarded-For"),
                              self.config.trusted_proxies)

    def who(self, conn: Connection) -> str:
        """A connection as log lines name it: its id and address."""
        budget = self.budgets.get(conn.sid)
        address = budget.address if budget is not None else None
        return f"{conn.sid} ({address})" if address else conn.sid

    # -- connections ---------------------------------------------------------------------

    def admit(self, address: str | None = None) -> Close | None:
        """May one more connection open here? None: yes. Otherwise the close the transport
        ends it with instead of calling `opened` (core/admission.py)."""
        refusal = admission.connection(len(self.hub), self.config.limits, self.stopping)
        if refusal is TOO_MANY_CONNECTIONS:
            self.breach("connections_per_front", f"refused a connection from {address or '?'}: "
                        f"{self.config.limits.max_connections_per_front} open")
        return refusal

    def admit_to(self, conn: Connection, adapter: ClientProtocol,
                 address: str | None = None) -> Close | None:
        """`admit`, then the client protocol's own admission (an app's quota, an unknown
        app): None, or the close the transport ends `conn` with (the protocol has sent
        what comes before it)."""
        refusal = self.admit(address)
        if refusal is not None:
            return adapter.refusal(conn, refusal)
        return adapter.admit(conn)

    def opened(self, conn: Connection, adapter: ClientProtocol,
               address: str | None = None) -> None:
        """Register `conn`; its protocol greets it."""
        self.hub.add(conn)
        self.metrics.inc("pushy_connections_opened_total", labels(conn))
        self.budgets[conn.sid] = admission.Budget(self.config.limits, time.monotonic(), address)
        adapter.greet(conn)

    def received(self, conn: Connection, text: str) -> admission.Budget | None:
        """A client message arrived: counted, and its connection's budget to admit it
        with; None when the connection was already dropped (its messages are ignored)."""
        metrics = self.metrics
        metrics.inc("pushy_messages_in_total")
        # surrogatepass: a client may send lone surrogates (JSON escapes); counting must not fail
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        metrics.inc("pushy_bytes_in_total", _FROM_CLIENT, size)
        budget = self.budgets.get(conn.sid)
        if budget is None or conn.closed:  # already dropped (closing, or the front stopping)
            return None
        return budget

    def closed(self, conn: Connection) -> None:
        """`conn` is gone: it leaves every channel it was in (PROTOCOL.md 3.4). Transports
        may call it more than once (a stopping front drops everyone first)."""
        if self.hub.connections.get(conn.sid) is not conn:
            return
        self.budgets.pop(conn.sid, None)
        adapter = getattr(conn, "adapter", None)
        if adapter is not None:
            adapter.closed(conn)
        if conn.slow:
            self.metrics.inc("pushy_slow_consumer_disconnects_total", labels(conn))
        for shard, keys in self.hub.remove(conn).items():
            self._leave(shard, conn.sid, keys)

    def slow_consumer(self, conn: Connection, buffered: int) -> None:
        """`conn` passed `limits.slow_consumer_bytes` of unsent output; its transport closes
        it with errors.SLOW_CONSUMER. Marked `slow` (counted when it closes) and logged."""
        conn.slow = True
        self.breach("slow_consumer", f"closing {self.who(conn)}: {buffered} bytes unsent")

    # -- requests to shards ----------------------------------------------------------------

    def request(self, key: str, request: link.Request, timeout: float) -> asyncio.Future[Any]:
        """`request` to the shard that owns channel `key` (NotEncodable, raised here, when
        it cannot be written to the link)."""
        assert self.links is not None
        return self.links.request(shard_for(key, self.shards), request, timeout=timeout)

    def _leave(self, shard: int, sid: str, keys: list[str]) -> None:
        assert self.links is not None
        future = self.links.request(shard, link.Leave(sid, keys),
                                    timeout=self.config.timeouts.command)
        future.add_done_callback(lambda f: self._leave_done(f, sid, keys))

    def _leave_done(self, future: asyncio.Future[Any], sid: str, keys: list[str]) -> None:
        self.hub.leave_confirmed(sid, keys)
        ignore_result(future)

    # -- what shards send (the links' LinkHandler) -------------------------------------------

    def deliver(self, message: link.Deliver) -> None:
        if message.mark and self._marks.seen(message.mark, time.monotonic()):
            # a trigger its front re-sent after the shard that published it died: the
            # restarted shard (or another instance's) delivers it again
            self.metrics.inc("pushy_cluster_duplicates_dropped_total")
            return
        self.hub.deliver(message)

    def reply(self, message: link.Reply) -> None:
        self.hub.reply(message.sid, message.message)

    def joined(self, message: link.Joined) -> None:
        state = message.member
        if not self.hub.joined(state, message.message):  # closed while subscribing
            self.hub.leaving[(state.key, state.sid)] = state
            self._leave(shard_for(state.key, self.shards), state.sid, [state.key])

    def left(self, message: link.Left) -> None:
        self.hub.left(message.sid, message.key, message.message)

    def terminate(self, message: link.Terminate) -> None:
        """terminate_connections asked on another instance: the protocol that has users
        (Pusher) closes theirs here."""
        if self.on_terminate is not None:
            self.on_terminate(message.app, message.user)

    def sweep(self) -> None:
        """Once a second: tell every shard we are alive, expire requests none answered."""
        if self.links is not None:
            self.links.tick(time.monotonic())


def shard_error(result: Any) -> dict[str, str] | None:
    """The `{"message", "code"}` of a Done that says the shard refused a request, or None."""
    error = result.get("error") if isinstance(result, dict) else None
    if error is None:
        return None
    if isinstance(error, dict) and all(isinstance(error.get(k), str) for k in ("message", "code")):
        return {"message": error["message"], "code": error["code"]}
    return CommandFailed().payload()


def ignore_result(future: asyncio.Future[Any]) -> None:
    """A request nobody waits on: its failure is only worth a debug line."""
    if not future.cancelled() and future.exception() is not None:
        log.debug("request failed: %s", future.exception())
