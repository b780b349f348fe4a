"""Commands: the handler context, the built-ins and the registry (PROTOCOL.md 3.1, 3.2, 3.5)."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
import pytest

from pushy_shard import commands
from pushy_shard.commands import (
    BUILTINS,
    CommandContext,
    Forward,
    ShardSide,
    load_registry,
    new_member_id,
    run_handler,
)
from pushy_shard.core.auth import channel_token
from pushy_shard.core.channels import (
    Broadcast,
    ChannelStore,
    ChannelTable,
    Joined,
    Left,
    Reply,
)
from pushy_shard.errors import ClientError, ConfigError, NoChannel

SECRET = "secret"
NOW = 1_700_000_000_000


# Targets for load_registry ("tests.core.test_commands:<name>").
def handler(ctx: CommandContext) -> None:
    ctx.reply("custom:pong", {"got": ctx.data})


class CallableTarget:
    def __call__(self, ctx: CommandContext) -> None:
        ctx.reply("custom:object", {})


callable_object = CallableTarget()
NOT_CALLABLE = 42


class Teapot(ClientError):
    code = "418"
    message = "I'm a teapot"


def context(
    *,
    command: str = "x",
    data: dict[str, Any] | None = None,
    channel: str | None = None,
    sid: str = "s1",
    front: int = 0,
    table: ChannelTable | None = None,
    owns: bool = True,
) -> CommandContext:
    shard = None
    if table is not None:
        store = ChannelStore(lambda app: table)
        store.app("")  # the Pushy channels: the table of the test
        shard = ShardSide(store, lambda key: owns, NOW)
    return CommandContext(
        command,
        data if data is not None else ({"channel": channel} if channel else {}),
        channel,
        sid,
        front,
        shard=shard,
    )


def decode(message: bytes | None) -> Any:
    assert message is not None
    return orjson.loads(message)


def messages(effects: list[Any]) -> list[Any]:
    """The decoded messages of effects that carry one (not Forward)."""
    return [decode(e.message) for e in effects]


def error_reply(effects: list[Any]) -> dict[str, Any]:
    assert len(effects) == 1
    reply = effects[0]
    assert isinstance(reply, Reply)
    payload = decode(reply.message)
    assert payload["event"] == "pushy:error"
    return payload["data"]


def subscribe(table: ChannelTable, sid: str, channel: str, front: int = 0) -> None:
    run_handler(commands.subscribe, context(channel=channel, sid=sid, front=front, table=table))


@pytest.fixture
def table() -> ChannelTable:
    return ChannelTable(SECRET)


# -- PROTOCOL.md 3.5: what a handler can do --------------------------------------------------


class TestContext_3_5:
    def test_reply(self) -> None:
        ctx = context(sid="abc", front=2)
        ctx.reply("custom:pong", {"n": 1})
        assert ctx.effects == [Reply(2, "abc", b'{"event":"custom:pong","data":{"n":1}}')]

    def test_error(self) -> None:
        ctx = context()
        ctx.error("Nope", "42")
        assert error_reply(ctx.effects) == {"message": "Nope", "code": "42"}

    def test_broadcast_on_an_owned_channel(self, table: ChannelTable) -> None:
        subscribe(table, "s1", "Hello", front=0)
        subscribe(table, "s2", "hello", front=3)
        ctx = context(sid="s1", channel="HELLO", table=table)
        ctx.broadcast("HELLO", "chat:message", {"text": "hi"})
        assert len(ctx.effects) == 1
        broadcast = ctx.effects[0]
        assert isinstance(broadcast, Broadcast)
        assert broadcast.key == "hello"
        assert sorted(broadcast.fronts) == [0, 3]
        assert broadcast.exclude is None
        assert broadcast.message == (
            b'{"event":"chat:message","channel":"Hello","data":{"text":"hi"}}'
        )  # the display name, not the spelling the handler used

    def test_broadcast_excluding_the_sender(self, table: ChannelTable) -> None:
        subscribe(table, "s1", "hello")
        ctx = context(sid="s1", table=table)
        ctx.broadcast("hello", "e", None, exclude_sender=True)
        assert isinstance(ctx.effects[0], Broadcast) and ctx.effects[0].exclude == "s1"

    def test_broadcast_on_an_owned_channel_without_members_does_nothing(
        self, table: ChannelTable
    ) -> None:
        ctx = context(table=table)
        ctx.broadcast("empty", "e", {})
        assert ctx.effects == []

    def test_broadcast_on_a_channel_of_another_shard_is_forwarded(
        self, table: ChannelTable
    ) -> None:
        subscribe(table, "s1", "Hello")  # even if this table happens to know the name
        ctx = context(sid="s1", table=table, owns=False)
        ctx.broadcast("Other-Room", "chat:message", {"text": "hi"}, exclude_sender=True)
        assert ctx.effects == [Forward("other-room", "chat:message", {"text": "hi"}, "s1")]

    def test_broadcast_from_a_front_is_forwarded(self) -> None:
        ctx = context(table=None)
        ctx.broadcast("Hello", "e", [1])
        assert ctx.effects == [Forward("hello", "e", [1], None)]

    def test_membership_queries(self, table: ChannelTable) -> None:
        subscribe(table, "s1", "Hello")
        member = context(sid="s1", channel="HELLO", table=table)
        stranger = context(sid="s9", channel="hello", table=table)
        nowhere = context(sid="s1", channel="empty", table=table)
        assert member.is_member() is True
        assert stranger.is_member() is False
        assert nowhere.is_member() is False
        member_id = member.member_id()
        assert member_id is not None and re.fullmatch(r"[0-9a-f]{8}", member_id)
        assert stranger.member_id() is None
        assert member.members() == [{"memberId": member_id}]
        assert nowhere.members() == []
        assert context(sid="s1", channel="hello").is_member() is False  # no table: a front

    def test_members_of_a_presence_channel_are_the_records(self, table: ChannelTable) -> None:
        data = '{"name":"alice"}'
        request = {
            "channel": "private-room",
            "auth": channel_token("s1", "private-room", data, SECRET),
            "data": data,
        }
        ctx = context(sid="s1", channel="private-room", data=request, table=table)
        run_handler(commands.subscribe, ctx)
        [rec] = context(sid="s2", channel="private-room", table=table).members()
        assert rec["name"] == "alice" and rec["subscribed"] == NOW
        assert rec["memberId"] == ctx.member_id()


# -- run_handler: whatever a handler raises is an error to the sender only -------------------


class TestRunHandler:
    def test_success_returns_the_effects(self) -> None:
        ctx = context(data={"a": 1})
        effects = run_handler(handler, ctx)
        assert effects is ctx.effects
        assert messages(effects) == [
            {"event": "custom:pong", "data": {"got": {"a": 1}}}
        ]

    def test_client_error_replies_its_payload_and_drops_other_effects(self) -> None:
        def failing(ctx: CommandContext) -> None:
            ctx.reply("partial", {})
            ctx.broadcast("somewhere", "e", {})
            raise Teapot("short and stout")

        effects = run_handler(failing, context(sid="abc", front=4))
        assert error_reply(effects) == {"message": "short and stout", "code": "418"}
        assert isinstance(effects[0], Reply)
        assert (effects[0].front, effects[0].sid) == (4, "abc")

    def test_other_exceptions_reply_500_and_are_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken(ctx: CommandContext) -> None:
            ctx.reply("partial", {})
            raise ZeroDivisionError("boom")

        with caplog.at_level(logging.ERROR, logger="pushy_shard.commands"):
            effects = run_handler(broken, context(command="divide", sid="abc"))
        assert error_reply(effects) == {"message": "Command failed", "code": "500"}
        [log] = [r for r in caplog.records if r.name == "pushy_shard.commands"]
        assert log.levelno == logging.ERROR
        assert "divide" in log.getMessage()
        assert log.exc_info is not None and log.exc_info[0] is ZeroDivisionError


# -- PROTOCOL.md 3.1 / 3.2: the built-ins ----------------------------------------------------


class TestBuiltins_3_1_3_2:
    @pytest.mark.parametrize("builtin", [commands.subscribe, commands.unsubscribe])
    def test_no_channel_is_error_300(self, table: ChannelTable, builtin: Any) -> None:
        effects = run_handler(builtin, context(channel=None, table=table))
        assert error_reply(effects) == {"message": "No channel specified", "code": "300"}

    @pytest.mark.parametrize("builtin", [commands.subscribe, commands.unsubscribe])
    def test_no_channel_raises_no_channel(self, table: ChannelTable, builtin: Any) -> None:
        with pytest.raises(NoChannel):
            builtin(context(channel=None, table=table))

    @pytest.mark.parametrize("builtin", [commands.subscribe, commands.unsubscribe])
    def test_in_a_front_without_a_table_is_error_300(self, builtin: Any) -> None:
        effects = run_handler(builtin, context(channel="hello", table=None))
        assert error_reply(effects)["code"] == "300"

    def test_subscribe(self, table: ChannelTable) -> None:
        ctx = context(channel="Hello", sid="s1", front=1, table=table)
        effects = run_handler(commands.subscribe, ctx)
        assert len(effects) == 1
        joined = effects[0]
        assert isinstance(joined, Joined) and (joined.front, joined.sid) == (1, "s1")
        data = decode(joined.message)["data"]
        assert data["channel"] == "Hello"
        assert re.fullmatch(r"[0-9a-f]{8}", data["memberId"])

    def test_subscribe_reads_auth_and_data_from_the_command_data(
        self, table: ChannelTable
    ) -> None:
        ctx = context(channel="private-room", data={"channel": "private-room"}, table=table)
        effects = run_handler(commands.subscribe, ctx)
        assert messages(effects)[0]["event"] == "pushy:subscription-needauth"

    def test_unsubscribe(self, table: ChannelTable) -> None:
        subscribe(table, "s1", "hello")
        effects = run_handler(commands.unsubscribe, context(channel="HELLO", sid="s1", table=table))
        assert len(effects) == 1 and isinstance(effects[0], Left)
        assert decode(effects[0].message or b"") == {
            "event": "pushy:subscription-end",
            "data": {"channel": "HELLO"},
        }

    def test_unsubscribe_404_and_403(self, table: ChannelTable) -> None:
        effects = run_handler(commands.unsubscribe, context(channel="hello", table=table))
        assert error_reply(effects) == {"message": "Channel not found", "code": "404"}
        subscribe(table, "s2", "hello")
        effects = run_handler(commands.unsubscribe, context(channel="hello", sid="s1", table=table))
        assert error_reply(effects) == {"message": "Not subscribed to this channel", "code": "403"}

    def test_new_member_id_is_8_lowercase_hex(self) -> None:
        ids = {new_member_id() for _ in range(200)}
        assert all(re.fullmatch(r"[0-9a-f]{8}", i) for i in ids)
        assert len(ids) > 190  # random, not a counter or a constant


# -- the registry (config.json "commands", PROTOCOL.md 3.5) ----------------------------------


class TestLoadRegistry_3_5:
    def test_builtins_only(self) -> None:
        registry = load_registry({})
        assert registry == {"subscribe": commands.subscribe, "unsubscribe": commands.unsubscribe}
        assert dict(BUILTINS) == registry

    def test_module_callable_is_loaded(self) -> None:
        registry = load_registry(
            {
                "ping": "tests.core.test_commands:handler",
                "Obj": "tests.core.test_commands:callable_object",
            }
        )
        assert registry["ping"] is handler
        assert registry["obj"] is callable_object  # names are case-insensitive
        assert registry["subscribe"] is commands.subscribe

    def test_loaded_handler_runs(self) -> None:
        registry = load_registry({"ping": "tests.core.test_commands:handler"})
        effects = run_handler(registry["ping"], context(data={"q": 1}))
        assert messages(effects) == [{"event": "custom:pong", "data": {"got": {"q": 1}}}]

    @pytest.mark.parametrize(
        "target",
        [
            "tests.core.no_such_module:handler",
            "no_such_package.module:handler",
            "tests.core.test_commands:no_such_handler",
            "tests.core.test_commands:NOT_CALLABLE",
            "tests.core.test_commands",  # no ":callable"
        ],
    )
    def test_unloadable_target_is_a_config_error_naming_the_command(self, target: str) -> None:
        with pytest.raises(ConfigError) as info:
            load_registry({"chat": target})
        assert info.value.key == "commands.chat"
        assert "commands.chat" in str(info.value)
        assert target in info.value.message
