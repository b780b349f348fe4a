"""Channel -> shard routing (PROTOCOL.md 3.4 identity, ARCHITECTURE.md 2 ownership)."""

from __future__ import annotations

import string
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushy_shard.core.routing import channel_key, shard_for


class TestChannelKey_3_4:
    @pytest.mark.parametrize(
        ("name", "key"),
        [
            ("Hello", "hello"),
            ("HELLO", "hello"),
            ("hello", "hello"),
            ("Private-Room", "private-room"),
            ("École", "école"),
            ("", ""),
            ("a-B_c:1", "a-b_c:1"),
        ],
    )
    def test_lower_cases(self, name: str, key: str) -> None:
        assert channel_key(name) == key

    def test_spellings_share_a_key(self) -> None:
        assert len({channel_key(n) for n in ("Hello", "hello", "HELLO", "hElLo")}) == 1


class TestShardFor:
    # Computed once (crc32 of the UTF-8 key, modulo the shard count). A change of hash
    # function reroutes every channel of a running deployment: it must be deliberate.
    @pytest.mark.parametrize(
        ("key", "shards", "expected"),
        [
            ("hello", 8, 6),
            ("hello", 3, 1),
            ("hello", 16, 6),
            ("private-room", 8, 2),
            ("private-room", 3, 2),
            ("private-room", 16, 10),
            ("presence-lobby", 8, 5),
            ("presence-lobby", 16, 13),
            ("é", 8, 6),
            ("é", 16, 14),
            ("chat:42", 8, 6),
            ("", 8, 0),
        ],
    )
    def test_stable_values(self, key: str, shards: int, expected: int) -> None:
        assert shard_for(key, shards) == expected

    def test_one_shard_owns_everything(self) -> None:
        assert {shard_for(f"c{i}", 1) for i in range(100)} == {0}

    @given(st.text(alphabet=st.characters(exclude_categories=())), st.integers(1, 64))
    def test_in_range_and_deterministic(self, key: str, shards: int) -> None:
        shard = shard_for(key, shards)
        assert 0 <= shard < shards
        assert shard_for(key, shards) == shard

    @given(st.text(alphabet=string.ascii_letters + string.digits + "-_:."), st.integers(1, 16))
    def test_case_insensitive_through_the_key(self, name: str, shards: int) -> None:
        shard = shard_for(channel_key(name), shards)
        for spelling in (name.upper(), name.lower(), name.swapcase(), name.title()):
            assert shard_for(channel_key(spelling), shards) == shard

    @pytest.mark.parametrize("spelling", ["Hello", "HELLO", "hElLo"])
    def test_spellings_route_to_one_shard(self, spelling: str) -> None:
        for shards in (2, 3, 8, 16):
            assert shard_for(channel_key(spelling), shards) == shard_for("hello", shards)

    def test_spreads_evenly(self) -> None:
        shards = 8
        counts = Counter(shard_for(channel_key(f"channel-{i}"), shards) for i in range(10_000))
        even = 10_000 / shards
        assert set(counts) == set(range(shards))
        for shard, count in counts.items():
            assert 0.8 * even <= count <= 1.2 * even, (shard, count)
