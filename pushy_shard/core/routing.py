"""Channel -> shard: one stable function that every process computes the same way.

Python's `hash()` is salted per process, so it can never be used here (ARCHITECTURE.md 2).
"""

from __future__ import annotations

import zlib

PUSHY_APP = ""  # the namespace of the Pushy channels (every other app has an id)
_APP_SEPARATOR = "\x00"


def channel_key(name: str) -> str:
    """Channel identity is case-insensitive (PROTOCOL.md 3.4): the lower-cased name."""
    return name.lower()


def app_key(app: str, name: str) -> str:
    """The key of channel `name` in app `app`: a Pushy channel's is `channel_key`; another
    app's is its id, NUL, then the name as written (case-sensitive). Fronts index and
    shards store channels by key, so each app is a namespace of its own."""
    if app == PUSHY_APP:
        return channel_key(name)
    return app + _APP_SEPARATOR + name


def app_of(key: str) -> str:
    """The app a channel key belongs to."""
    app, separator, _ = key.partition(_APP_SEPARATOR)
    return app if separator else PUSHY_APP


def name_of(key: str) -> str:
    """The channel name a key holds (a Pushy key is its lower-cased name)."""
    _, separator, name = key.partition(_APP_SEPARATOR)
    return name if separator else key


def shard_for(key: str, shards: int) -> int:
    """The index of the shard that owns the channel `key` (already lower-cased)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % shards
