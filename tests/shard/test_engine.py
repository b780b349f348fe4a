"""Shard (shard/engine.py): every request is answered, and a failure changes nothing
(no client, trigger or config can lose another member's data)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pushy_shard.commands import CommandContext, load_registry
from pushy_shard.core import link
from pushy_shard.core.config import parse_config
from pushy_shard.shard.engine import Shard

FRONT = b"f0.test"


def bad_reply(ctx: CommandContext) -> None:
    ctx.reply("x", {"v": {1, 2}})  # a set: not JSON


def bad_forward(ctx: CommandContext) -> None:
    ctx.broadcast("elsewhere", "x", 10**5000)  # past the int digit limit


def surrogate_broadcast(ctx: CommandContext) -> None:
    ctx.broadcast("room\ud800", "x", {})


class Recorder(Shard):
    """A shard without sockets, serving one front that has replayed: what it sends."""

    def __init__(self) -> None:
        config = parse_config({"secretKey": "s", "workers": 1, "fronts": 1}, env={}, cpu_count=1)
        registry = load_registry({})
        registry.update(bad_reply=bad_reply, bad_forward=bad_forward,
                        surrogate=surrogate_broadcast)
        super().__init__(config, 0, registry, incarnation="i0")
        self.receive(FRONT, link.Resync(0, "i0", ()).encode(), 0.0)  # recovery ends
        self.sent: list[list[bytes]] = []

    def request(self, op: bytes, body: Any, rid: bytes = b"1") -> dict[str, Any]:
        """Apply one request; its Done body (every message sent stays in `sent`)."""
        raw = body if isinstance(body, bytes) else link.body(body)
        self.receive(FRONT, [op, rid, raw], 1.0)
        for frames in self.take().values():
            self.sent += list(_messages(frames))
        done = [f for f in self.sent if f[0] == link.Done.OP and f[1] == rid]
        assert len(done) == 1, self.sent
        result: dict[str, Any] = orjson.loads(done[0][2])
        return result


def _messages(frames: list[bytes]) -> list[list[bytes]]:
    """The messages of one multipart (a Batch holds several)."""
    if frames[0] != link.BATCH:
        return [frames]
    out, start = [], 2
    for size in orjson.loads(frames[1]):
        out.append(frames[start:start + size])
        start += size
    return out


def command(name: str, sid: str, channel: str = "private-room",
            data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"sid": sid, "name": name, "channel": channel,
            "data": {"channel": channel, **(data or {})}, "address": None}


@pytest.fixture
def shard() -> Recorder:
    return Recorder()


def members(shard: Recorder, key: str = "room") -> list[str]:
    chan = shard.channels.get(key)
    return list(chan.members) if chan is not None else []


async def test_malformed_requests_are_answered_and_change_nothing(shard: Recorder) -> None:
    assert shard.request(link.Command.OP, command("subscribe", "ann", "room")) == {}
    before = members(shard)
    for body in (b"not json", [1, 2], {"sid": "bob"},
                 {**command("subscribe", "bob", "room"), "data": "x"},
                 {**command("subscribe", "bob", "room"), "sid": 7},
                 {**command("subscribe", "bob", "room"), "channel": "room\ud800"}):
        shard.sent.clear()
        assert shard.request(link.Command.OP, body) == {
            "error": {"message": "Command failed", "code": "500"}}
        assert members(shard) == before
    shard.sent.clear()
    assert shard.request(link.Leave.OP, {"sid": "ann", "keys": ["room", 3]})["error"]
    assert members(shard) == before
    shard.sent.clear()
    assert shard.request(link.Trigger.OP, {"key": "room", "event": 1, "data": {},
                                        "exclude": None})["error"]
    shard.sent.clear()
    assert shard.request(b"?", {})["error"]


async def test_unencodable_handler_effects_answer_the_sender_only(shard: Recorder) -> None:
    shard.request(link.Command.OP, command("subscribe", "ann", "room"))
    for name, code in (("bad_reply", "500"), ("bad_forward", "500"), ("surrogate", "301")):
        shard.sent.clear()
        assert shard.request(link.Command.OP, command(name, "ann", "room")) == {}
        replies = [orjson.loads(f[2]) for f in shard.sent if f[0] == link.Reply.OP]
        assert [r["data"]["code"] for r in replies] == [code]
        assert all(f[0] in (link.Reply.OP, link.Done.OP) for f in shard.sent)  # no broadcast
    assert members(shard) == ["ann"]


async def test_an_unknown_command_gets_an_error(shard: Recorder) -> None:
    result = shard.request(link.Command.OP, command("nope", "ann", "room"))
    assert result == {"error": {"message": "Unknown command", "code": "200"}}
