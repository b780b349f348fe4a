"""Channel -> shard: one stable function that every process computes the same way.

Python's `hash()` is salted per process, so it can never be used here (ARCHITECTURE.md 2).
"""

from __future__ import annotations

import zlib


def channel_key(name: str) -> str:
    """Channel identity is case-insensitive (PROTOCOL.md 3.4): the lower-cased name."""
    return name.lower()


def shard_for(key: str, shards: int) -> int:
    """The index of the shard that owns the channel `key` (already lower-cased)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % shards
