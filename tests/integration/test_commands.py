"""Custom commands from config.json (issue: handlers in shards and fronts)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.harness import Cluster, channel_token

ROOM = "private-odd"  # a presence channel (private, with data)

COMMANDS = {
    "chat": "pushy_shard.examples.chat:say",
    "whoami": "pushy_shard.examples.chat:whoami",
    "boom": "tests.integration.custom_commands:boom",
    "refuse": "tests.integration.custom_commands:refuse",
    "Announce": "tests.integration.custom_commands:announce",
    "members": "tests.integration.custom_commands:members",
    "unencodable": "tests.integration.custom_commands:unencodable",
    "surrogate": "tests.integration.custom_commands:surrogate",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    server = Cluster(tmp_path_factory.mktemp("commands"), commands=COMMANDS)
    yield server
    assert server.stop() == 0


async def test_channel_command_runs_in_the_owning_shard(cluster: Cluster) -> None:
    a = await cluster.client(front=0)
    b = await cluster.client(front=1)
    try:
        await a.call("chat", {"channel": "lobby", "text": "hi"}, "pushy:error", code="403")
        sub_a = await a.subscribe("Lobby")
        await b.subscribe("lobby")
        await a.send("CHAT", {"channel": "lobby", "text": "héllo"})
        for client in (a, b):
            message = await client.next()
            assert message == {"event": "chat:message", "channel": "Lobby",
                               "data": {"from": sub_a["data"]["memberId"], "text": "héllo"}}
        await a.call("chat", {"channel": "lobby", "text": ""}, "pushy:error", code="400")
        reply = await b.call("members", {"channel": "lobby"}, "members")
        assert len(reply["data"]["members"]) == 2
    finally:
        await a.close()
        await b.close()


async def test_command_without_channel_runs_in_the_front(cluster: Cluster) -> None:
    a = await cluster.client()
    b = await cluster.client(front=1 - a.front)
    try:
        reply = await a.call("whoami", {}, "whoami")
        assert reply["data"] == {"socketId": a.socket_id}
        await b.subscribe("news")
        await a.send("announce", {"to": "NEWS", "text": "from a front"})
        message = await b.next()
        assert message == {"event": "announcement", "channel": "news",
                           "data": {"text": "from a front"}}
    finally:
        await a.close()
        await b.close()


async def test_failing_handlers_answer_the_sender_only(cluster: Cluster) -> None:
    a = await cluster.client()
    b = await cluster.client()
    try:
        await b.subscribe("calm")
        for data in ({}, {"channel": "calm"}):  # in the front, then in a shard
            await a.call("boom", data, "pushy:error", code="500", message="Command failed")
            await a.call("refuse", data, "pushy:error", code="499")
        status, _ = await cluster.trigger("calm", "still", {"up": True})
        assert status == 201
        assert (await b.next())["event"] == "still"
        await a.nothing_pending()
        await b.nothing_pending()
    finally:
        await a.close()
        await b.close()
    assert "handler bug" in "\n".join(cluster.log.lines)


async def test_unencodable_handler_effects_fail_alone(cluster: Cluster) -> None:
    """A handler whose reply or broadcast JSON cannot carry: the sender gets pushy:error
    (500, or 301 for a channel name with a lone surrogate) at once, the shard keeps serving
    and the other members' presence is intact (issue: no request half-applied)."""
    ann = await cluster.client(front=0)
    bob = await cluster.client(front=1)
    try:
        for client, name in ((ann, "ann"), (bob, "bob")):
            data = json.dumps({"name": name})
            await client.subscribe(ROOM, data=data,
                                   auth=channel_token(client.socket_id, ROOM, data))
        await ann.expect("pushy:presence-add")
        for kind in ("reply", "forward", "local"):
            await bob.call("unencodable", {"channel": ROOM, "kind": kind,
                                           "to": "elsewhere"}, "pushy:error", code="500")
        await bob.call("surrogate", {"channel": ROOM}, "pushy:error", code="301")
        reply = await ann.call("members", {"channel": ROOM}, "members")
        assert sorted(m["name"] for m in reply["data"]["members"]) == ["ann", "bob"]
        await bob.close()
        quit_ = await ann.expect("pushy:presence-quit")
        assert quit_["data"]["member"]["name"] == "bob"
        await ann.nothing_pending()
    finally:
        await ann.close()
        await bob.close()
