"""The pure pieces of the limits (README, Limits): the command token bucket, the breach log
throttle, the trigger replay cache, channel-name rules, close frames, and config.limits."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushy_shard.core.auth import WINDOW_SECONDS
from pushy_shard.core.config import Limits, parse_config
from pushy_shard.core.origins import client_address, origin_allowed
from pushy_shard.core.protocol import channel_problem, parse_client_message
from pushy_shard.core.ratelimit import BreachLog, TokenBucket
from pushy_shard.core.replay import ReplayCache
from pushy_shard.core.rfc6455 import close_frame as ws_close_frame
from pushy_shard.errors import ChannelNameRefused, ConfigError, InvalidChannel

# -- token bucket ---------------------------------------------------------------------------


class TestTokenBucket:
    def test_a_new_bucket_allows_a_burst_then_refuses(self) -> None:
        bucket = TokenBucket(3, now=0.0)
        assert [bucket.take(0.0, rate=1.0, burst=3) for _ in range(4)] == [True] * 3 + [False]

    def test_refills_lazily_at_the_rate(self) -> None:
        bucket = TokenBucket(2, now=0.0)
        assert bucket.take(0.0, 4.0, 2) and bucket.take(0.0, 4.0, 2)
        assert not bucket.take(0.1, 4.0, 2)  # 0.4 of a token
        assert bucket.take(0.25, 4.0, 2)  # 1.0 token by now
        assert not bucket.take(0.25, 4.0, 2)

    def test_never_holds_more_than_the_burst(self) -> None:
        bucket = TokenBucket(2, now=0.0)
        taken = [bucket.take(1000.0, 10.0, 2) for _ in range(3)]
        assert taken == [True, True, False]

    def test_a_refused_command_costs_nothing(self) -> None:
        bucket = TokenBucket(1, now=0.0)
        assert bucket.take(0.0, 1.0, 1)
        for _ in range(100):
            assert not bucket.take(0.5, 1.0, 1)
        assert bucket.take(1.0, 1.0, 1)  # a whole token a second, refusals notwithstanding

    def test_a_smaller_burst_from_a_reload_applies_at_once(self) -> None:
        bucket = TokenBucket(100, now=0.0)
        assert [bucket.take(0.0, 1.0, 2) for _ in range(3)] == [True, True, False]

    def test_a_clock_that_goes_back_does_not_add_tokens(self) -> None:
        bucket = TokenBucket(1, now=10.0)
        assert bucket.take(10.0, 1.0, 1)
        assert not bucket.take(5.0, 1.0, 1)

    @settings(max_examples=200, deadline=None)
    @given(rate=st.floats(0.5, 100), burst=st.integers(1, 50),
           gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200))
    def test_never_allows_more_than_burst_plus_rate_times_time(
            self, rate: float, burst: int, gaps: list[float]) -> None:
        bucket = TokenBucket(burst, now=0.0)
        now, allowed = 0.0, 0
        for gap in gaps:
            now += gap
            allowed += bucket.take(now, rate, burst)
        assert allowed <= burst + rate * now + 1e-6


class TestBreachLog:
    def test_one_line_per_name_per_interval_with_the_suppressed_count(self) -> None:
        throttle = BreachLog(interval=1.0)
        assert throttle.allow("a", 0.0) == 0
        assert throttle.allow("a", 0.5) is None
        assert throttle.allow("a", 0.6) is None
        assert throttle.allow("b", 0.6) == 0  # names are independent
        assert throttle.allow("a", 1.0) == 2
        assert throttle.allow("a", 1.5) is None


# -- replay cache ---------------------------------------------------------------------------

SIG = "ab" * 32
NOW = 1_700_000_000.0


def sig(n: int) -> str:
    return f"{n:064x}"


class TestReplayCache:
    def test_a_signature_is_refused_the_second_time(self) -> None:
        cache = ReplayCache()
        assert not cache.seen(SIG, int(NOW), NOW, 10)
        assert cache.seen(SIG, int(NOW), NOW + 1, 10)
        assert not cache.seen(sig(1), int(NOW), NOW + 1, 10)  # another one is fine

    def test_case_does_not_matter(self) -> None:
        cache = ReplayCache()
        assert not cache.seen(SIG, int(NOW), NOW, 10)
        assert cache.seen(SIG.upper(), int(NOW), NOW, 10)

    def test_forgotten_once_the_timestamp_window_has_passed(self) -> None:
        cache = ReplayCache()
        ts = int(NOW)
        assert not cache.seen(SIG, ts, NOW, 10)
        assert cache.seen(SIG, ts, ts + WINDOW_SECONDS - 1, 10)  # still valid: refused
        # past the window the timestamp check refuses it anyway; the entry is gone
        assert not cache.seen(sig(2), ts, ts + WINDOW_SECONDS + 2, 10)
        assert len(cache) == 1

    def test_a_future_timestamp_is_kept_until_its_own_window_ends(self) -> None:
        cache = ReplayCache()
        ts = int(NOW) + 500
        assert not cache.seen(SIG, ts, NOW, 10)
        assert cache.seen(SIG, ts, NOW + 1000, 10)

    def test_full_cache_forgets_the_entry_closest_to_expiry(self) -> None:
        cache = ReplayCache()
        ts = int(NOW)
        assert not cache.seen(sig(0), ts - 100, NOW, 3)  # expires first
        assert not cache.seen(sig(1), ts, NOW, 3)
        assert not cache.seen(sig(2), ts + 100, NOW, 3)
        assert not cache.seen(sig(3), ts, NOW, 3)  # full: sig(0) goes
        assert len(cache) == 3 and cache.evicted == 1
        assert not cache.seen(sig(0), ts - 100, NOW, 3)  # forgotten (documented trade-off)
        assert cache.seen(sig(2), ts + 100, NOW, 3)

    def test_non_hex_signatures_are_keys_too(self) -> None:
        cache = ReplayCache()
        assert not cache.seen("not-hex", int(NOW), NOW, 10)
        assert cache.seen("NOT-HEX", int(NOW), NOW, 10)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 40), st.integers(-700, 700), st.floats(0, 30)),
                    max_size=200), st.integers(1, 20))
    def test_never_holds_more_than_its_cap(self, steps: list[tuple[int, int, float]],
                                           cap: int) -> None:
        cache = ReplayCache()
        now = NOW
        for n, offset, gap in steps:
            now += gap
            cache.seen(sig(n), int(now) + offset, now, cap)
            assert len(cache) <= cap
            assert len(cache._heap) <= cap


# -- channel names --------------------------------------------------------------------------


class TestChannelNames:
    def test_length(self) -> None:
        assert channel_problem("a" * 5, 5, None) is None
        assert channel_problem("a" * 6, 5, None) == "longer than 5 characters"

    def test_pattern_must_match_the_whole_name(self) -> None:
        pattern = r"[a-z0-9_-]+"
        assert channel_problem("room-1", 200, pattern) is None
        assert channel_problem("private-room", 200, pattern) is None
        assert channel_problem("room 1", 200, pattern) is not None
        assert channel_problem("room!", 200, pattern) is not None
        assert channel_problem("Room", 200, pattern) is not None  # case as sent

    def test_client_messages_use_the_rules_given(self) -> None:
        text = '{"command":"subscribe","data":{"channel":"a b"}}'
        assert parse_client_message(text) is not None  # defaults: any characters
        with pytest.raises(ChannelNameRefused) as info:
            parse_client_message(text, channel_pattern=r"\w+")
        assert info.value.payload()["code"] == "301"
        assert isinstance(info.value, InvalidChannel)
        with pytest.raises(ChannelNameRefused):
            parse_client_message(text, max_channel_length=2)

    def test_a_non_string_channel_is_invalid_but_no_limit_breach(self) -> None:
        with pytest.raises(InvalidChannel) as info:
            parse_client_message('{"command":"subscribe","data":{"channel":5}}')
        assert not isinstance(info.value, ChannelNameRefused)


# -- close frames ----------------------------------------------------------------------------


def test_ws_close_frame_carries_code_and_reason() -> None:
    frame = ws_close_frame(1008, "Slow consumer")
    assert frame[0] == 0x88 and frame[1] == len(frame) - 2
    assert struct.unpack("!H", frame[2:4]) == (1008,) and frame[4:] == b"Slow consumer"
    assert len(ws_close_frame(1000, "x" * 500)) == 2 + 125  # a control frame's limit


# -- origins and proxies (the shells rely on these) ------------------------------------------


def test_origins_and_client_addresses() -> None:
    assert origin_allowed("https://evil.example", ("*",))
    assert origin_allowed(None, ("https://app.example.com",))
    assert not origin_allowed("https://evil.example", ("https://app.example.com",))
    assert origin_allowed("http://a.b.example.com:8080", ("*.example.com",))
    assert client_address("10.0.0.1", "203.0.113.9", ("10.0.0.0/8",)) == "203.0.113.9"
    assert client_address("198.51.100.1", "203.0.113.9", ("10.0.0.0/8",)) == "198.51.100.1"


# -- config.limits ---------------------------------------------------------------------------


def load(**extra: Any) -> Any:
    return parse_config({"secretKey": "s", **extra}, env={}, cpu_count=2)


class TestConfig:
    def test_defaults(self) -> None:
        config = load()
        assert config.limits == Limits()
        assert config.limits.replay_protection and config.limits.replay_cache_entries == 100_000
        assert config.allowed_origins == ("*",) and config.trusted_proxies == ()

    def test_every_key_with_its_unit(self) -> None:
        limits = load(limits={
            "//": "comment keys are skipped",
            "max_message_bytes": "8K", "max_frame_bytes": "16K", "max_trigger_body": 1000,
            "max_presence_data": 512, "max_channel_length": 64,
            "channel_pattern": "[a-z-]+", "max_channels_per_connection": 10,
            "max_connections_per_front": 5, "commands_per_second": 2.5, "commands_burst": 4,
            "session_queue_messages": 7, "session_queue_bytes": "1M",
            "slow_consumer_bytes": "64K", "replay_protection": False,
            "replay_cache_entries": 50,
        }).limits
        assert limits == Limits(
            max_message_bytes=8192, max_frame_bytes=16384, max_trigger_body=1000,
            max_presence_data=512, max_channel_length=64, channel_pattern="[a-z-]+",
            max_channels_per_connection=10, max_connections_per_front=5,
            commands_per_second=2.5, commands_burst=4, session_queue_messages=7,
            session_queue_bytes=1024 * 1024, slow_consumer_bytes=65536,
            replay_protection=False, replay_cache_entries=50)

    @pytest.mark.parametrize(("key", "value"), [
        ("max_message_bytes", 0),
        ("max_message_bytes", "lots"),
        ("max_trigger_body", -1),
        ("max_trigger_body", True),
        ("max_presence_data", 1.5),
        ("max_channel_length", 0),
        ("max_channel_length", "200"),
        ("channel_pattern", "[unclosed"),
        ("channel_pattern", ""),
        ("channel_pattern", 5),
        ("max_channels_per_connection", 0),
        ("max_connections_per_front", 10**9),
        ("commands_per_second", 0),
        ("commands_per_second", -1),
        ("commands_per_second", float("nan")),
        ("commands_per_second", "50"),
        ("commands_burst", 0),
        ("session_queue_messages", None),
        ("session_queue_bytes", "2G"),
        ("slow_consumer_bytes", 0),
        ("replay_protection", "yes"),
        ("replay_cache_entries", 0),
        ("no_such_limit", 1),
    ])
    def test_bad_values_name_the_key(self, key: str, value: object) -> None:
        with pytest.raises(ConfigError) as info:
            load(limits={key: value})
        assert info.value.key == f"limits.{key}"

    def test_limits_must_be_an_object(self) -> None:
        with pytest.raises(ConfigError) as info:
            load(limits=[1])
        assert info.value.key == "limits"

    def test_a_message_may_not_exceed_a_frame(self) -> None:
        with pytest.raises(ConfigError) as info:
            load(limits={"max_message_bytes": "2M"})
        assert info.value.key == "limits.max_message_bytes"

    def test_channel_pattern_null_means_any(self) -> None:
        assert load(limits={"channel_pattern": None}).limits.channel_pattern is None

    @pytest.mark.parametrize(("key", "value"), [
        ("allowed_origins", []),
        ("allowed_origins", "*"),
        ("allowed_origins", [""]),
        ("trusted_proxies", ["not an address"]),
        ("trusted_proxies", "10.0.0.1"),
    ])
    def test_bad_origins_and_proxies(self, key: str, value: object) -> None:
        with pytest.raises(ConfigError) as info:
            load(**{key: value})
        assert info.value.key == key

    def test_origins_and_proxies(self) -> None:
        config = load(allowed_origins=["https://app.example.com", "*.example.org"],
                      trusted_proxies=["10.0.0.0/8", "::1"])
        assert config.allowed_origins == ("https://app.example.com", "*.example.org")
        assert config.trusted_proxies == ("10.0.0.0/8", "::1")


def test_shipped_config_spells_out_the_defaults() -> None:
    from pathlib import Path

    from pushy_shard.core.config import load_config

    shipped = Path(__file__).resolve().parents[2] / "config.json"
    config = load_config(str(shipped), env={})
    assert config.limits == Limits()
    assert config.allowed_origins == ("*",) and config.trusted_proxies == ()
