"""Input the front can read but not pass on: JSON nested deeper than the link encoder
writes. The sender gets a clear error, nothing reaches a shard, the front keeps serving."""

from __future__ import annotations

import json
import time

import orjson
import pytest

from pushy_shard.core.trigger import Trigger
from pushy_shard.errors import InvalidBody
from tests.front.test_front_limits import FakeConn, make_front

DEEP = "[" * 1000 + "]" * 1000  # parses (under orjson's and json's read limits), won't encode


async def test_a_too_deeply_nested_command_gets_bogus_message() -> None:
    front, pushy, links = make_front()
    conn = FakeConn("a")
    front.opened(conn, pushy)  # type: ignore[arg-type]
    deep = '{"command":"subscribe","data":{"channel":"c","data":' + DEEP + "}}"
    pushy.message(conn, deep)  # type: ignore[arg-type]
    assert conn.codes() == ["100"]
    assert links.requests == []
    pushy.message(conn, json.dumps({"command": "subscribe",  # type: ignore[arg-type]
                                           "data": {"channel": "c"}}))
    assert len(links.requests) == 1  # the connection still works


async def test_a_too_deeply_nested_trigger_is_a_400() -> None:
    front, pushy, links = make_front()
    trigger = Trigger(channel="c", event="e", data=orjson.loads(DEEP), socket_id=None,
                      timestamp=int(time.time()), signature="")
    with pytest.raises(InvalidBody, match="nested too deeply"):
        await pushy.trigger(trigger)
    assert links.requests == []
