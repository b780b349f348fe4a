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
