"""core/metrics: counters, snapshots between processes, their sum, the text format 0.0.4."""

from __future__ import annotations

import json

import pytest

from pushy_shard.core import metrics
from pushy_shard.core.channels import ChannelTable
from pushy_shard.core.metrics import Metrics
from pushy_shard.errors import MetricsError

# -- counters -----------------------------------------------------------------------------------


def test_inc_keeps_the_signature_others_call() -> None:
    m = Metrics()
    m.inc("pushy_limit_breaches_total", (("limit", "frame"),))
    m.inc("pushy_limit_breaches_total", (("limit", "frame"),), 2)
    m.inc("pushy_messages_in_total")
    assert m.value("pushy_limit_breaches_total", (("limit", "frame"),)) == 3
    assert m.value("pushy_limit_breaches_total", (("limit", "other"),)) == 0
    assert sorted(m.samples()) == [
        ("pushy_limit_breaches_total", (("limit", "frame"),), 3),
        ("pushy_messages_in_total", (), 1),
    ]


# -- between processes ----------------------------------------------------------------------------


def test_wire_round_trip_through_json() -> None:
    samples = [("pushy_channels", (), 3.0), ("pushy_triggers_total", (("status", "201"),), 7.0)]
    raw = json.loads(json.dumps(metrics.to_wire(samples)))
    assert metrics.from_wire(raw) == samples


@pytest.mark.parametrize("raw", [
    {"not": "a list"},
    [["pushy_x"]],
    [["bad name", [], 1]],
    [["pushy_x", [], "1"]],
    [["pushy_x", [], True]],
    [["pushy_x", {"a": "b"}, 1]],
    [["pushy_x", [["a"]], 1]],
    [["pushy_x", [["bad-label", "v"]], 1]],
    [["pushy_x", [["a", 1]], 1]],
])
def test_from_wire_refuses_a_bad_snapshot(raw: object) -> None:
    with pytest.raises(MetricsError):
        metrics.from_wire(raw)


def test_merge_sums_same_name_and_labels_over_processes() -> None:
    front0 = [("pushy_connections", (("transport", "websocket"),), 2.0),
              ("pushy_triggers_total", (("status", "201"),), 1.0)]
    front1 = [("pushy_connections", (("transport", "websocket"),), 3.0),
              ("pushy_connections", (("transport", "xhr-polling"),), 1.0)]
    shard = [("pushy_channels", (), 4.0)]
    assert metrics.merge(front0, front1, shard) == {
        ("pushy_connections", (("transport", "websocket"),)): 5.0,
        ("pushy_connections", (("transport", "xhr-polling"),)): 1.0,
        ("pushy_triggers_total", (("status", "201"),)): 1.0,
        ("pushy_channels", ()): 4.0,
    }


def test_channel_gauges_count_channels_presence_and_members() -> None:
    table = ChannelTable("secret")
    ids = iter(str(n) for n in range(100))
    for sid, channel in [("a", "one"), ("b", "one"), ("a", "two")]:
        table.subscribe(front=0, sid=sid, channel=channel, request={}, now_ms=0,
                        new_member_id=lambda: next(ids))
    assert metrics.channel_gauges(table.channels.values()) == [
        ("pushy_channels", (), 2.0), ("pushy_presence_channels", (), 0.0),
        ("pushy_members", (), 3.0)]


def test_channel_table_reports_channel_lifecycle() -> None:
    seen: list[tuple[str, bool]] = []
    table = ChannelTable("secret", on_channel=lambda name, created: seen.append((name, created)))
    ids = iter(str(n) for n in range(100))
    for sid in ("a", "b"):
        table.subscribe(front=0, sid=sid, channel="Room", request={}, now_ms=0,
                        new_member_id=lambda: next(ids))
    table.leave("a", ["room"])
    assert seen == [("Room", True)]
    table.leave("b", ["room"])
    assert seen == [("Room", True), ("Room", False)]


# -- exposition ---------------------------------------------------------------------------------


def test_exposition_one_family_each_with_help_and_type() -> None:
    values = metrics.merge([
        ("pushy_triggers_total", (("status", "403"),), 1.0),
        ("pushy_triggers_total", (("status", "201"),), 5.0),
        ("pushy_channels", (), 2.0),
    ])
    assert metrics.exposition(values) == (
        "# HELP pushy_channels Channels with at least one member.\n"
        "# TYPE pushy_channels gauge\n"
        "pushy_channels 2\n"
        "# HELP pushy_triggers_total Trigger API requests, by HTTP status.\n"
        "# TYPE pushy_triggers_total counter\n"
        'pushy_triggers_total{status="201"} 5\n'
        'pushy_triggers_total{status="403"} 1\n'
    )


def test_exposition_escapes_label_values_and_help() -> None:
    values = {("pushy_limit_breaches_total", (("limit", 'a"b\\c\nd'),)): 1.0}
    text = metrics.exposition(values)
    assert 'pushy_limit_breaches_total{limit="a\\"b\\\\c\\nd"} 1\n' in text
    assert metrics.escape_help("a\\b\nc") == "a\\\\b\\nc"


def test_unknown_names_are_typed_by_suffix() -> None:
    text = metrics.exposition({("pushy_new_total", ()): 1.0, ("pushy_new_level", ()): 2.0})
    assert "# TYPE pushy_new_total counter\n" in text
    assert "# TYPE pushy_new_level gauge\n" in text


@pytest.mark.parametrize(("value", "text"), [
    (3.0, "3"), (0.0, "0"), (-2.0, "-2"), (1.5, "1.5"), (2.0**60, repr(2.0**60)),
    (float("nan"), "NaN"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"),
])
def test_values(value: float, text: str) -> None:
    assert metrics.format_value(value) == text


def test_exposition_of_nothing_is_empty() -> None:
    assert metrics.exposition({}) == ""


def test_every_known_family_follows_the_naming_rules() -> None:
    for name, fam in metrics.FAMILIES.items():
        assert name.startswith("pushy_")
        assert (fam.kind == metrics.COUNTER) == name.endswith("_total"), name
        assert fam.help.endswith(".")


# -- supervisor state ---------------------------------------------------------------------------


def test_restarts_come_from_the_parent_supervisor_only() -> None:
    document = metrics.restarts_document(41, {"shard": 2})
    assert metrics.restart_samples(document, parent_pid=41) == [
        ("pushy_restarts_total", (("role", "shard"),), 2.0),
        ("pushy_restarts_total", (("role", "front"),), 0.0),
        ("pushy_restarts_total", (("role", "hooks"),), 0.0),
    ]
    assert metrics.restart_samples(document, parent_pid=1) == []  # stale file / supervisord


@pytest.mark.parametrize("document", [b"not json", b"[]", b'{"pid": 1}',
                                      b'{"pid": 1, "restarts": {"shard": "x"}}'])
def test_a_broken_state_file_is_an_error(document: bytes) -> None:
    with pytest.raises(MetricsError):
        metrics.restart_samples(document, parent_pid=1)


def test_scrape_up() -> None:
    assert metrics.scrape_up("shard", 2, False) == (
        "pushy_scrape_up", (("role", "shard"), ("index", "2")), 0.0)


def test_a_histogram_is_one_family_with_its_buckets_in_order() -> None:
    counters = metrics.Metrics()
    metrics.observe(counters, "pushy_query_seconds", 0.003)
    metrics.observe(counters, "pushy_query_seconds", 2.0)
    text = metrics.exposition(metrics.merge(counters))
    lines = text.splitlines()
    assert lines[:2] == ["# HELP pushy_query_seconds HTTP API queries: seconds from the request "
                         "to its answer.", "# TYPE pushy_query_seconds histogram"]
    buckets = [line for line in lines if line.startswith("pushy_query_seconds_bucket")]
    assert buckets[0] == 'pushy_query_seconds_bucket{le="0.001"} 0'
    assert 'pushy_query_seconds_bucket{le="0.005"} 1' in buckets
    assert 'pushy_query_seconds_bucket{le="2.5"} 2' in buckets
    assert buckets[-1] == 'pushy_query_seconds_bucket{le="+Inf"} 2'
    assert "pushy_query_seconds_count 2" in lines and "pushy_query_seconds_sum 2.003" in lines
    assert text.count("# TYPE") == 1
