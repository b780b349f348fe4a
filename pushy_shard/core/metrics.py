"""Metrics of every process and their Prometheus text exposition (README, Observability).

Each process keeps a `Metrics` (counters it bumps as things happen); when asked it makes a
snapshot: those counters plus gauges computed then (connections, channels, queue depths).
The front that answers `/metrics` sums every process's snapshot (`merge`) and writes the
sum in the text format 0.0.4 (`exposition`). Snapshots travel between processes as JSON
(`to_wire` / `from_wire`). Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from pushy_shard.core.channels import Channel
from pushy_shard.core.protocol import dumps, loads
from pushy_shard.errors import MetricsError

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]
Key = tuple[str, Labels]

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"
# the upper bounds (seconds) of every histogram's buckets, and the suffixes of its samples
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its name, Prometheus type and HELP text."""

    name: str
    kind: str
    help: str


# Every metric pushy-shard exports (README, Observability lists the same). A name missing
# here still exports, typed by its suffix (`_total`: counter), with a generic HELP line;
# tests/integration/test_observability.py fails on one.
FAMILIES: dict[str, Family] = {f.name: f for f in (
    # fronts
    Family("pushy_connections", GAUGE,
           "Open client connections, by transport, protocol and (Pusher) app."),
    Family("pushy_connections_opened_total", COUNTER,
           "Client connections opened, by transport, protocol and (Pusher) app."),
    Family("pushy_messages_in_total", COUNTER,
           "Messages received from clients (Pushy and Pusher)."),
    Family("pushy_messages_out_total", COUNTER,
           "Messages written to clients: kind=event is fan-out, kind=reply is to one "
           "connection."),
    Family("pushy_bytes_in_total", COUNTER,
           "Bytes received: source=client is client messages, source=trigger is the bodies of "
           "accepted triggers and Pusher API requests."),
    Family("pushy_bytes_out_total", COUNTER,
           "Bytes of messages written to clients, before SockJS/WebSocket framing."),
    Family("pushy_triggers_total", COUNTER, "Trigger API requests, by HTTP status."),
    Family("pushy_pusher_api_requests_total", COUNTER,
           "Pusher HTTP API triggers (events, batch_events), by HTTP status."),
    Family("pushy_query_requests_total", COUNTER,
           "HTTP API queries (channels, channel, users, terminate_connections), by HTTP status."),
    Family("pushy_query_seconds", HISTOGRAM,
           "HTTP API queries: seconds from the request to its answer."),
    Family("pushy_slow_consumer_disconnects_total", COUNTER,
           "Connections closed because their unsent output or queue passed its limit."),
    Family("pushy_limit_breaches_total", COUNTER, "Requests refused by a configured limit."),
    Family("pushy_bad_requests_total", COUNTER,
           "HTTP requests refused before routing (malformed, or the client left before the "
           "answer), by kind."),
    Family("pushy_link_pending_requests", GAUGE,
           "Requests a front sent to a shard and still waits for (link queue depth)."),
    Family("pushy_link_up", GAUGE,
           "1 when the front's link to the shard is synced and answered its last PINGs."),
    Family("pushy_link_send_failures_total", COUNTER,
           "Link messages not queued (ZeroMQ queue full or peer gone), by sending role."),
    # shards
    Family("pushy_channels", GAUGE, "Channels with at least one member."),
    Family("pushy_presence_channels", GAUGE, "Presence channels with at least one member."),
    Family("pushy_members", GAUGE, "Channel memberships (a connection in two channels counts 2)."),
    Family("pushy_channels_created_total", COUNTER, "Channels created by a first member."),
    Family("pushy_channels_removed_total", COUNTER, "Channels removed with their last member."),
    Family("pushy_subscriptions_total", COUNTER, "Successful subscribes."),
    Family("pushy_shard_requests_total", COUNTER, "Requests shards applied, by operation."),
    Family("pushy_events_published_total", COUNTER,
           "Events shards published to a channel (triggers, presence, command broadcasts)."),
    Family("pushy_link_deliveries_total", COUNTER,
           "Events shards sent to fronts: one per event per front with members."),
    # several instances (shards, on their Redis links; SCALEOUT.md)
    Family("pushy_redis_links_up", GAUGE,
           "Shards whose Redis command and pub/sub connections are both up (of `workers`)."),
    Family("pushy_redis_pipelines_total", COUNTER,
           "Pipelines Redis answered (each loop turn's writes and publishes)."),
    Family("pushy_redis_round_trip_seconds_total", COUNTER,
           "Seconds those pipelines took, request to answer: divided by "
           "pushy_redis_pipelines_total, the mean round trip."),
    Family("pushy_redis_reconnects_total", COUNTER,
           "Times a shard's command connection came back after Redis was unavailable."),
    Family("pushy_cluster_messages_out_total", COUNTER, "Events published to Redis."),
    Family("pushy_cluster_publish_failures_total", COUNTER,
           "Events Redis did not take in time (answered 503 with Retry-After)."),
    Family("pushy_cluster_duplicates_dropped_total", COUNTER,
           "Deliveries of a trigger a front got twice (its front re-sent it after the "
           "publishing shard died), dropped by the front."),
    Family("pushy_cluster_presence_gaps_total", COUNTER,
           "Catch-ups of a restarted shard's presence members the channel's log was too "
           "short for."),
    Family("pushy_cluster_messages_in_total", COUNTER,
           "Pub/sub messages shards received and delivered to their fronts."),
    Family("pushy_cluster_malformed_total", COUNTER,
           "Pub/sub messages on a pushy channel that did not decode (dropped)."),
    Family("pushy_cluster_gaps_total", COUNTER,
           "Pub/sub connections lost while subscribed: what was published meanwhile is lost "
           "for this instance's members."),
    Family("pushy_cluster_subscriptions", GAUGE, "Pub/sub channels shards listen to."),
    Family("pushy_cluster_lease_renewals_total", COUNTER, "Lease renewals."),
    Family("pushy_cluster_swept_total", COUNTER,
           "Instances (node/shard) this instance swept after their lease expired."),
    # the hooks process (webhooks; shards count what their link to it dropped)
    Family("pushy_webhook_events_total", COUNTER,
           "Webhook events announced (once per transition, after the holds), by event."),
    Family("pushy_webhook_posts_total", COUNTER,
           "Webhook posts, by HTTP status (timeout: no answer in time; error: no connection)."),
    Family("pushy_webhook_retries_total", COUNTER, "Webhook batches scheduled for another try."),
    Family("pushy_webhook_delivered_total", COUNTER, "Webhook events a receiver accepted (2xx)."),
    Family("pushy_webhook_dropped_total", COUNTER,
           "Webhook events dropped: queue_full, expired (retried too long), removed (its "
           "webhook left the config), link (a shard could not reach the hooks process)."),
    Family("pushy_webhook_queue_events", GAUGE, "Webhook events queued, in flight included."),
    Family("pushy_webhook_queue_bytes", GAUGE,
           "Bytes of the queued webhook events (as JSON): bounded by max_queue_bytes."),
    Family("pushy_webhook_posts_in_flight", GAUGE, "Webhook posts waiting for their answer."),
    # supervisor and the scrape itself
    Family("pushy_restarts_total", COUNTER,
           "Children the supervisor restarted after they died, by role."),
    Family("pushy_scrape_up", GAUGE,
           "1 when the process answered this scrape in time, 0 when it is reported missing."),
)}


class Metrics:
    """Monotonic counters keyed by name and labels. `inc` is cheap enough for per-message
    paths; per-delivery paths should count once per batch."""

    __slots__ = ("_counters",)

    def __init__(self) -> None:
        self._counters: dict[Key, float] = {}

    def inc(self, name: str, labels: Labels = (), amount: float = 1) -> None:
        key = (name, labels)
        self._counters[key] = self._counters.get(key, 0) + amount

    def value(self, name: str, labels: Labels = ()) -> float:
        return self._counters.get((name, labels), 0)

    def __iter__(self) -> Iterator[Sample]:
        for (name, labels), value in self._counters.items():
            yield name, labels, value

    def samples(self) -> list[Sample]:
        return list(self)


def observe(metrics: Metrics, name: str, seconds: float, labels: Labels = ()) -> None:
    """One observation of histogram `name`: its cumulative buckets, sum and count."""
    for bound in BUCKETS:  # every bucket exists from the first observation on
        metrics.inc(f"{name}_bucket", (*labels, ("le", format_value(bound))),
                    1 if seconds <= bound else 0)
    metrics.inc(f"{name}_bucket", (*labels, ("le", "+Inf")))
    metrics.inc(f"{name}_sum", labels, seconds)
    metrics.inc(f"{name}_count", labels)


# -- between processes ------------------------------------------------------------------------


def to_wire(samples: Iterable[Sample]) -> list[list[object]]:
    """A snapshot as JSON-ready lists: [name, [[label, value], ...], number]."""
    return [[name, [list(pair) for pair in labels], value] for name, labels, value in samples]


def from_wire(raw: object) -> list[Sample]:
    """The inverse of `to_wire`, checked: another process's bug must not break a scrape."""
    if not isinstance(raw, list):
        raise MetricsError("snapshot: expected a list")
    out: list[Sample] = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3):
            raise MetricsError("snapshot: expected [name, labels, value] items")
        name, labels, value = item
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise MetricsError(f"snapshot: bad metric name {name!r:.60}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MetricsError(f"snapshot: {name}: value is not a number")
        if not isinstance(labels, list):
            raise MetricsError(f"snapshot: {name}: labels are not a list")
        pairs: list[tuple[str, str]] = []
        for pair in labels:
            if not (isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(part, str) for part in pair)
                    and _LABEL_RE.match(pair[0])):
                raise MetricsError(f"snapshot: {name}: bad label {pair!r:.60}")
            pairs.append((pair[0], pair[1]))
        out.append((name, tuple(pairs), float(value)))
    return out


def merge(*snapshots: Iterable[Sample]) -> dict[Key, float]:
    """Sum samples of the same name and labels over every process's snapshot."""
    total: dict[Key, float] = {}
    for snapshot in snapshots:
        for name, labels, value in snapshot:
            key = (name, labels)
            total[key] = total.get(key, 0.0) + value
    return total


# -- text exposition format 0.0.4 -------------------------------------------------------------


def family(name: str) -> Family:
    """The family of a sample name (a histogram's `_bucket`, `_sum` and `_count` samples
    belong to the histogram)."""
    known = FAMILIES.get(name)
    if known is not None:
        return known
    for suffix in _HISTOGRAM_SUFFIXES:
        base = FAMILIES.get(name.removesuffix(suffix)) if name.endswith(suffix) else None
        if base is not None and base.kind == HISTOGRAM:
            return base
    kind = COUNTER if name.endswith("_total") else GAUGE
    return Family(name, kind, "pushy-shard metric.")


def escape_label(value: str) -> str:
    """Label values escape backslash, double quote and line feed (format 0.0.4)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escapes backslash and line feed only."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def exposition(values: Mapping[Key, float]) -> str:
    """Prometheus text: each family once, with its HELP and TYPE lines, then its samples;
    families and samples sorted so successive scrapes diff cleanly."""
    by_family: dict[str, list[tuple[str, Labels, float]]] = {}
    for (name, labels), value in values.items():
        by_family.setdefault(family(name).name, []).append((name, labels, value))
    lines: list[str] = []
    for fam_name in sorted(by_family):
        fam = family(fam_name)
        lines.append(f"# HELP {fam_name} {escape_help(fam.help)}")
        lines.append(f"# TYPE {fam_name} {fam.kind}")
        for name, labels, value in sorted(by_family[fam_name], key=_sample_order):
            if labels:
                text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels)
                lines.append(f"{name}{{{text}}} {format_value(value)}")
            else:
                lines.append(f"{name} {format_value(value)}")
    return "\n".join(lines) + "\n" if lines else ""


def _sample_order(sample: tuple[str, Labels, float]) -> tuple[object, ...]:
    """By name and labels; a histogram's buckets by their bound, as numbers."""
    name, labels, _ = sample
    rest = tuple(pair for pair in labels if pair[0] != "le")
    bound = next((float(v) for k, v in labels if k == "le"), 0.0)
    return (name, rest, bound)


# -- what one scrape gathers ------------------------------------------------------------------


def scrape_up(role: str, index: int, up: bool) -> Sample:
    """Whether one process answered this scrape: a missing one is a 0, never a hang."""
    return ("pushy_scrape_up", (("role", role), ("index", str(index))), 1.0 if up else 0.0)


def channel_gauges(channels: Iterable[Channel]) -> list[Sample]:
    """Channels, presence channels and members of one shard's table, counted on demand
    (a scrape every few seconds costs less than bookkeeping on every join)."""
    count = presence = members = 0
    for chan in channels:
        count += 1
        presence += chan.presence
        members += len(chan.members)
    return [
        ("pushy_channels", (), float(count)),
        ("pushy_presence_channels", (), float(presence)),
        ("pushy_members", (), float(members)),
    ]


STATS_PATH = "/pushy-internal/stats"  # where a front or the hooks process serves its snapshot,
#                                       on its private endpoint only
RESTART_ROLES = ("shard", "front", "hooks")
STATE_FILE = "supervisor.json"  # in the runtime directory: the supervisor writes, fronts read


def restarts_document(supervisor_pid: int, restarts: Mapping[str, int]) -> bytes:
    """What the supervisor writes to `supervisor.json` in the runtime directory."""
    counts = {role: int(restarts.get(role, 0)) for role in RESTART_ROLES}
    return dumps({"pid": supervisor_pid, "restarts": counts})


def restart_samples(document: bytes, parent_pid: int) -> list[Sample]:
    """`pushy_restarts_total` per role from `supervisor.json`, if the supervisor that wrote
    it is this process's parent (a file left by an earlier run, or read by a front that
    supervisord runs, does not count); an empty list otherwise."""
    try:
        raw = loads(document)
    except ValueError as exc:
        raise MetricsError(f"supervisor state: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("restarts"), dict):
        raise MetricsError("supervisor state: expected {pid, restarts}")
    if raw.get("pid") != parent_pid:
        return []
    out: list[Sample] = []
    for role in RESTART_ROLES:
        count = raw["restarts"].get(role, 0)
        if isinstance(count, bool) or not isinstance(count, int):
            raise MetricsError(f"supervisor state: restarts of {role} is not an integer")
        out.append(("pushy_restarts_total", (("role", role),), float(count)))
    return out
