"""Front cores and shard cores joined in memory: the real `Front` (with the Pushy adapter and
`ShardLinks`) and the real `Shard` engine, no processes and no sockets (STYLE.md, "a helper
that joins a front core and a shard core in memory").

Each link message crosses on a later loop turn, in send order per (front, shard) pair, as on
a ZeroMQ link. Time is the net's `clock`: `tick` advances it and runs the fronts' and shards'
periodic sweeps, so liveness timeouts expire in microseconds. Shards restart, fronts restart
and stall, as their processes would.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

from pushy_shard.commands import BUILTINS
from pushy_shard.core.auth import channel_token
from pushy_shard.core.channels import MemberState
from pushy_shard.core.config import Config, Timeouts
from pushy_shard.front.front import Front
from pushy_shard.front.links import ShardLinks
from pushy_shard.front.pushy import Pushy
from pushy_shard.shard.engine import Shard

SECRET = "secret"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Client:
    """A connection as the hub sees one: what it is sent, decoded."""

    def __init__(self, node: FrontNode, sid: str) -> None:
        self.node = node
        self.sid = sid
        self.kind = 1
        self.transport = "websocket"
        self.channels: dict[str, MemberState] = {}
        self.closed = False
        self.slow = False
        self.inbox: list[dict[str, Any]] = []

    # the hub's Connection
    def send(self, message: bytes) -> None:
        self.inbox.append(json.loads(message))

    def deliver(self, delivery: Any) -> None:
        self.send(delivery.message)

    def deliver_batch(self, batch: list[Any], shared: dict[tuple[int, ...], bytes]) -> None:
        for delivery in batch:
            self.deliver(delivery)

    def heartbeat(self) -> None:
        pass

    # what a test does with it
    def command(self, name: str, **data: Any) -> None:
        self.node.pushy.message(self, json.dumps({"command": name, "data": data}))  # type: ignore[arg-type]

    def subscribe(self, channel: str, presence: dict[str, Any] | None = None) -> None:
        if presence is None:
            self.command("subscribe", channel=channel)
            return
        data = json.dumps(presence)
        auth = channel_token(self.sid, channel, data, SECRET)
        self.command("subscribe", channel=channel, auth=auth, data=data)

    def close(self) -> None:
        self.closed = True
        self.node.front.closed(self)  # type: ignore[arg-type]

    def take(self) -> list[dict[str, Any]]:
        """Everything received since the last take."""
        inbox, self.inbox = self.inbox, []
        return inbox

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.take() if m.get("event") == name]


class FrontNode:
    """One front process: Front, Pushy and ShardLinks, its link sends going to the net."""

    def __init__(self, net: MemoryNet, index: int) -> None:
        self.net = net
        self.index = index
        self.front = Front(net.config, index)
        self.pushy = Pushy(self.front, dict(BUILTINS))
        loop = asyncio.get_running_loop()
        self.links = ShardLinks(loop, index, net.config.workers, self.front,
                                self.front.hub.members_for_shard, net.clock)
        self.links.send = self._send
        self.front.attach(self.links)
        self.stalled = False
        self._held: deque[tuple[int, list[bytes]]] = deque()  # sent while stalled
        self._clients = 0

    @property
    def identity(self) -> bytes:
        return self.links.identity

    def client(self) -> Client:
        self._clients += 1
        client = Client(self, f"f{self.index}-c{self._clients}")
        assert self.front.admit() is None
        self.front.opened(client, self.pushy)  # type: ignore[arg-type]
        return client

    def _send(self, shard: int, frames: list[bytes]) -> bool:
        if self.stalled:  # the process is stopped: its messages leave when it resumes
            self._held.append((shard, frames))
        else:
            self.net.to_shard(self, shard, frames)
        return True

    def resume(self) -> None:
        self.stalled = False
        while self._held:
            self.net.to_shard(self, *self._held.popleft())


class MemoryNet:
    """`fronts` fronts and `workers` shards, every front linked to every shard."""

    def __init__(self, fronts: int = 2, workers: int = 2, **config: Any) -> None:
        self.config = Config(secret_key=SECRET, workers=workers, fronts=fronts,
                             timeouts=Timeouts(front_silence=5.0), **config)
        self.clock = Clock()
        self.in_flight = 0
        self.shards: list[Shard] = [self._new_shard(j) for j in range(workers)]
        self.fronts: list[FrontNode] = [FrontNode(self, i) for i in range(fronts)]
        for node in self.fronts:
            for j in range(workers):
                node.links.connected(j)

    @classmethod
    async def start(cls, fronts: int = 2, workers: int = 2, **config: Any) -> MemoryNet:
        """A net whose fronts have greeted and replayed to every shard."""
        net = cls(fronts, workers, **config)
        await net.settle()
        return net

    def _new_shard(self, index: int) -> Shard:
        shard = Shard(self.config, index, dict(BUILTINS))
        shard.on_output = lambda: self._flush_soon(shard)
        return shard

    # -- the links -----------------------------------------------------------------------------

    def to_shard(self, node: FrontNode, shard: int, frames: list[bytes]) -> None:
        target = self.shards[shard]
        self._later(lambda: target.receive(node.identity, frames, self.clock.now))

    def _flush_soon(self, shard: Shard) -> None:
        self._later(lambda: self._flush(shard))

    def _flush(self, shard: Shard) -> None:
        if self.shards[shard.index] is not shard:
            return  # killed meanwhile: what it had not sent is lost, as with a process
        for identity, frames in shard.take().items():
            node = next((n for n in self.fronts if n.identity == identity), None)
            if node is not None:
                self._later(lambda node=node, frames=frames: node.links.received(
                    shard.index, frames))

    def _later(self, call: Any) -> None:
        self.in_flight += 1

        def run() -> None:
            self.in_flight -= 1
            call()

        asyncio.get_running_loop().call_soon(run)

    async def settle(self) -> None:
        """Until every message sent so far, and every answer to it, has arrived."""
        for _ in range(10_000):
            await asyncio.sleep(0)
            if not self.in_flight:
                await asyncio.sleep(0)  # callbacks of answered futures
                if not self.in_flight:
                    return
        raise AssertionError("the net never settled")

    # -- time and faults -----------------------------------------------------------------------

    async def tick(self, seconds: float = 1.0) -> None:
        """`seconds` pass: every front Pings and expires requests, every shard sweeps."""
        self.clock.now += seconds
        for node in self.fronts:
            node.links.tick(self.clock.now)
        for shard in self.shards:
            shard.sweep(self.clock.now)
        await self.settle()

    async def restart_shard(self, index: int, away: tuple[int, ...] = ()) -> None:
        """The shard dies (what it held is lost) and a new incarnation starts; every front's
        link drops and reconnects, but those of the fronts in `away`, which stay down."""
        self.shards[index] = self._new_shard(index)
        for node in self.fronts:
            node.links.disconnected(index)
            if node.index not in away:
                node.links.connected(index)
        await self.settle()

    async def restart_front(self, index: int) -> FrontNode:
        """The front dies (its clients are gone) and a new incarnation connects."""
        node = self.fronts[index] = FrontNode(self, index)
        for j in range(len(self.shards)):
            node.links.connected(j)
        await self.settle()
        return node
