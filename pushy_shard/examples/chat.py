"""Example custom commands (README, "Custom commands").

Enable them in config.json:

    "commands": {"chat": "pushy_shard.examples.chat:say",
                 "whoami": "pushy_shard.examples.chat:whoami"}

`chat` names a channel, so it runs in the shard that owns the channel and can check the
sender's membership; `whoami` names none, so it runs in the front.
"""

from __future__ import annotations

from pushy_shard.commands import CommandContext

MAX_TEXT = 1000


def say(ctx: CommandContext) -> None:
    """{"command": "chat", "data": {"channel": C, "text": T}}: T to every member of C."""
    if ctx.channel is None or not ctx.is_member():
        ctx.error("Not subscribed to this channel", "403")
        return
    text = ctx.data.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        ctx.error(f"text must be a non-empty string of at most {MAX_TEXT} characters", "400")
        return
    ctx.broadcast(ctx.channel, "chat:message", {"from": ctx.member_id(), "text": text})


def whoami(ctx: CommandContext) -> None:
    """{"command": "whoami"}: answers the sender with its own socketId."""
    ctx.reply("whoami", {"socketId": ctx.socket_id})
