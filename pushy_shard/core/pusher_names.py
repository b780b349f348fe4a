"""Pusher channel names and what their prefixes make them (PUSHER.md 3).

Names are 1-200 characters of `[A-Za-z0-9_\\-=@,.;]`, case-sensitive; `#` only in the user
channel prefix `#server-to-user-`. By prefix: `private-encrypted-` encrypted (a private
channel whose data the clients encrypt), `private-` private, `presence-` presence, each of
which may add `cache-`; `cache-` a cached public channel; else public.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from pushy_shard.errors import BadChannelName

MAX_NAME = 200
USER_PREFIX = "#server-to-user-"
_NAME_RE = re.compile(r"[A-Za-z0-9_\-=@,.;]{1,200}", re.ASCII)


class Kind(Enum):
    PUBLIC = "public"
    PRIVATE = "private"
    ENCRYPTED = "encrypted"  # private-encrypted-: a private channel the server cannot read
    PRESENCE = "presence"
    USER = "user"  # #server-to-user-<id>: only for a connection signed in as <id>


@dataclass(frozen=True, slots=True)
class Channel:
    """A valid channel name and what it is."""

    name: str
    kind: Kind
    cache: bool  # keeps its last HTTP-triggered event (PUSHER.md 3)

    @property
    def private(self) -> bool:
        """Subscribing needs a signature (private, encrypted and presence channels)."""
        return self.kind in (Kind.PRIVATE, Kind.ENCRYPTED, Kind.PRESENCE)

    @property
    def user_id(self) -> str | None:
        """The user a user channel is for."""
        return self.name[len(USER_PREFIX):] if self.kind is Kind.USER else None


def parse_channel(name: object) -> Channel:
    """The channel `name` names, or BadChannelName (subscription_error BadRequest 400)."""
    if not isinstance(name, str):
        raise BadChannelName()
    if name.startswith(USER_PREFIX):
        if len(name) > MAX_NAME or not _NAME_RE.fullmatch(name[len(USER_PREFIX):]):
            raise BadChannelName()
        return Channel(name, Kind.USER, False)
    if not _NAME_RE.fullmatch(name):
        raise BadChannelName()
    if name.startswith("private-encrypted-"):
        return Channel(name, Kind.ENCRYPTED, name.startswith("private-encrypted-cache-"))
    if name.startswith("private-"):
        return Channel(name, Kind.PRIVATE, name.startswith("private-cache-"))
    if name.startswith("presence-"):
        return Channel(name, Kind.PRESENCE, name.startswith("presence-cache-"))
    return Channel(name, Kind.PUBLIC, name.startswith("cache-"))
