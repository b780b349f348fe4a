"""Command handlers the integration tests load through config.json's `commands`."""

from __future__ import annotations

from pushy_shard.commands import CommandContext
from pushy_shard.errors import ClientError


class Refused(ClientError):
    code = "499"
    message = "Refused by handler"


def boom(ctx: CommandContext) -> None:
    raise RuntimeError("handler bug")


def refuse(ctx: CommandContext) -> None:
    raise Refused()


def announce(ctx: CommandContext) -> None:
    """Runs in a front (names no channel) and broadcasts to a channel a shard owns."""
    ctx.broadcast(ctx.data["to"], "announcement", {"text": ctx.data.get("text")})


def members(ctx: CommandContext) -> None:
    ctx.reply("members", {"members": ctx.members(), "me": ctx.member_id()})


def address(ctx: CommandContext) -> None:
    """The sender's address as the server sees it (behind trusted proxies: the client's)."""
    ctx.reply("address", {"address": ctx.address})


def unencodable(ctx: CommandContext) -> None:
    """Effects JSON cannot carry (a handler bug): the sender gets 500, nothing else changes."""
    kind = ctx.data.get("kind")
    if kind == "reply":
        ctx.reply("x", {"v": {1, 2}})
    elif kind == "forward":
        ctx.broadcast(str(ctx.data.get("to")), "x", 10**5000)
    else:
        ctx.broadcast(ctx.channel or "", "x", {"a": object()})
    ctx.broadcast(ctx.channel or "", "never", {})  # not reached: nothing may go out


def surrogate(ctx: CommandContext) -> None:
    ctx.broadcast("room\ud800", "x", {})
