"""config.json and its environment overrides, validated into one immutable `Config` (PROTOCOL.md 6).

Everything here is pure except `load_config`, which only reads the file: a bad setting stops the
process before it serves anything, with a `ConfigError` naming the key by its dotted path.
Units: ports are TCP ports, delays are seconds, sizes are bytes.

Each dataclass below is the table of one config.json section: every field is one key, with its
default, its check (range, unit) and its config.json name where that differs (`key`, in
core.config_table, which also holds the generic checks and the routine that walks a table).
Adding a setting is adding a field, and classifying it in core.reload.
"""

from __future__ import annotations

import ipaddress
import json
import keyword
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pushy_shard.core.config_table import (
    Int,
    boolean,
    expected,
    group,
    key,
    name_of,
    optional,
    positive,
    read,
    row,
    seconds,
    show,
    size,
    text,
)
from pushy_shard.core.config_table import key as setting
from pushy_shard.errors import ConfigError

__all__ = [
    "DEMO_APP_SECRET",
    "DEMO_SECRET",
    "App",
    "Cluster",
    "PushyApp",
    "Webhook",
    "WebhookDelivery",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "Config",
    "Limits",
    "LinkEndpoints",
    "LinkOptions",
    "SockJSOptions",
    "Timeouts",
    "link_endpoints",
    "load_config",
    "parse_config",
    "runtime_directory",
    "shard_endpoint",
]

DEMO_SECRET = "pushy-shard-demo-secret-change-me"
DEMO_APP_SECRET = "pushy-shard-demo-app-secret-change-me"  # the shipped Pusher demo app's
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("plain", "json")

MAX_PROCESSES = 256
LINK_PORT_OFFSET = 1000  # link.tcp_port defaults to port + 1000
TRIGGER_PATH = "/pushy/channel"  # PROTOCOL.md 1: the SockJS prefix must not shadow it

_PREFIX_SEGMENT_RE = re.compile(r"[^/\s?#]+")
_PORT = Int(1, 65535)
_PROCESSES = Int(1, MAX_PROCESSES)


# -- the checks of this module's own settings -------------------------------------------------


def _prefix(path: str, value: object) -> str:
    """A URL path such as "/pushy/socket": SockJS routes hang below it."""
    prefix = text(path, value)
    if not prefix.startswith("/"):
        raise ConfigError(path, f'expected a path starting with "/", found {show(prefix)}')
    if prefix.endswith("/"):
        prefix = prefix[:-1]
    segments = prefix.split("/")[1:]
    if not segments or not all(_PREFIX_SEGMENT_RE.fullmatch(s) for s in segments):
        raise ConfigError(
            path, "expected a path like /pushy/socket (no whitespace, ?, # or empty segment), "
            f"found {show(value)}"
        )
    if prefix == TRIGGER_PATH or prefix.startswith(TRIGGER_PATH + "/"):
        raise ConfigError(path, f"must not overlap the trigger API at {TRIGGER_PATH}")
    return prefix


def _transport(path: str, value: object) -> str:
    transport = text(path, value)
    if transport not in ("ipc", "tcp"):
        raise ConfigError(path, f'expected "ipc" or "tcp", found {show(transport)}')
    return transport


def _pattern(path: str, value: object) -> str | None:
    """A regular expression (Python syntax) a whole channel name must match; null: any."""
    if value is None:
        return None
    pattern = text(path, value)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(path, f"not a valid regular expression: {exc}") from None
    return pattern


def _log_level(path: str, value: object) -> str:
    if not isinstance(value, str):
        raise expected(path, "one of " + ", ".join(LOG_LEVELS), value)
    if value.lower() not in LOG_LEVELS:
        raise ConfigError(path, f"expected one of {', '.join(LOG_LEVELS)}, found {show(value)}")
    return value.lower()


def _log_format(path: str, value: object) -> str:
    if not isinstance(value, str) or value.lower() not in LOG_FORMATS:
        raise ConfigError(path, f"expected one of {', '.join(LOG_FORMATS)}, found {show(value)}")
    return value.lower()


def _strings(path: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise expected(path, "an array of non-empty strings", value)
    return tuple(value)


def _origins(path: str, value: object) -> tuple[str, ...]:
    origins = _strings(path, value)
    if not origins:
        raise ConfigError(path, 'expected at least one origin; ["*"] allows any')
    return origins


def _proxies(path: str, value: object) -> tuple[str, ...]:
    proxies = _strings(path, value)
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(path,
                              f"expected IP addresses or networks, found {show(proxy)}") from None
    return proxies


def _target(path: str, value: object) -> str:
    """A "dotted.module:callable" import reference for a custom command (PROTOCOL.md 3.5)."""
    what = 'a "dotted.module:callable" reference'
    if not isinstance(value, str):
        raise expected(path, what, value)
    module, colon, name = value.partition(":")
    parts = [*module.split("."), name]
    if not colon or not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
        raise ConfigError(path, f"expected {what}, found {show(value)}")
    return value


def _commands(path: str, value: object) -> Mapping[str, str]:
    """Command names are case-insensitive on the wire (PROTOCOL.md 2), so they are stored lower."""
    if not isinstance(value, dict):
        raise expected(path, "an object of name -> \"module:callable\"", value)
    out: dict[str, str] = {}
    for name, target in value.items():
        if isinstance(name, str) and name.startswith("//"):
            continue
        named = f"{path}.{name_of(name)}"
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(named, "expected a non-empty command name")
        lower = name.lower()
        if lower in out:
            raise ConfigError(named, "duplicate command name (names are case-insensitive)")
        out[lower] = _target(named, target)
    return MappingProxyType(out)


def _empty_commands() -> Mapping[str, str]:
    return MappingProxyType({})


# -- the tables: one dataclass per section, one field per key ---------------------------------


@dataclass(frozen=True, slots=True)
class SockJSOptions:
    """The SockJS server options under their SockJS names; delays in seconds (not ms, see 6)."""

    prefix: str = key("/pushy/socket", _prefix)
    sockjs_url: str = key("https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js", text)
    websocket: bool = key(True, boolean)
    response_limit: int = key(128 * 1024, size)
    jsessionid: bool = key(False, boolean)
    heartbeat_delay: float = key(25.0, seconds)
    disconnect_delay: float = key(5.0, seconds)


@dataclass(frozen=True, slots=True)
class LinkOptions:
    """How fronts reach shards over ZeroMQ; None means "derive it" (see `link_endpoints`)."""

    transport: str = key("ipc", _transport)
    directory: str | None = key(None, optional(text))
    tcp_port: int | None = key(None, optional(_PORT))


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client, trigger or session may use (README, Limits). Sizes in bytes; each
    breach gets its documented error or close frame and is counted, nothing else changes."""

    max_message_bytes: int = key(64 * 1024, size)  # one Pushy message from a client
    max_frame_bytes: int = key(1024 * 1024, size)  # one WebSocket frame or xhr/jsonp_send body
    max_trigger_body: int = key(64 * 1024, size)
    max_presence_data: int = key(2048, size)  # presence `data` of one member, as JSON
    max_channel_length: int = key(200, Int(1, 100_000))
    channel_pattern: str | None = key(None, _pattern)  # a regex every channel name must match
    max_channels_per_connection: int = key(1000, Int(1, 1_000_000))
    max_connections_per_front: int = key(100_000, Int(1, 10_000_000))
    commands_per_second: float = key(50.0, positive)  # token bucket: refill rate...
    commands_burst: int = key(100, Int(1, 1_000_000))  # ...and size
    session_queue_messages: int = key(1000, Int(1, 1_000_000))  # held between polls
    session_queue_bytes: int = key(1024 * 1024, size)
    slow_consumer_bytes: int = key(4 * 1024 * 1024, size)  # unsent output that closes
    replay_protection: bool = key(True, boolean)  # refuse a trigger signature seen in its window
    replay_cache_entries: int = key(100_000, Int(1, 10_000_000))  # signatures a shard keeps


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the processes wait for each other, in seconds (README, Configuration)."""

    trigger: float = key(5.0, seconds)  # a trigger's answer from its shard; then 503
    command: float = key(10.0, seconds)  # a command's answer from its shard; then pushy:error 503
    front_silence: float = key(5.0, seconds)  # a shard that hears no PING from a front this
    #                                           long drops its members (fronts PING once a second)
    shard_recovery: float = key(2.0, seconds)  # a new shard holds requests this long at most,
    #                                            until every front has replayed its members
    pusher_pong: float = key(30.0, seconds)  # after our pusher:ping, silence before 4201
    pusher_signin: float = key(30.0, seconds)  # user_authentication: sign in by then, or 4009
    query: float = key(2.0, seconds)  # the HTTP API's answers from every shard / front; then 503


WEBHOOK_EVENTS = ("channel_occupied", "channel_vacated", "member_added", "member_removed",
                  "client_event", "cache_miss", "subscription_count")  # PUSHER.md 9
_APP_TEXT_RE = re.compile(r"[A-Za-z0-9_.\-]{1,100}", re.ASCII)
_URL_RE = re.compile(r"https?://[^\s/?#]+[^\s]*", re.ASCII)


def _app_text(path: str, value: object) -> str:
    """An app id or key: it appears in URLs, so 1-100 of [A-Za-z0-9_.-]."""
    name = text(path, value)
    if not _APP_TEXT_RE.fullmatch(name):
        raise ConfigError(path, f"expected 1-100 of A-Z a-z 0-9 _ . -, found {show(name)}")
    return name


def _events(path: str, value: object) -> tuple[str, ...]:
    names = _strings(path, value)
    unknown = [n for n in names if n not in WEBHOOK_EVENTS]
    if not names or unknown:
        raise ConfigError(path, "expected a non-empty list of " + ", ".join(WEBHOOK_EVENTS)
                          + (f"; unknown: {show(unknown[0])}" if unknown else ""))
    return names


def _url(path: str, value: object) -> str:
    url = text(path, value)
    if not _URL_RE.fullmatch(url):
        raise ConfigError(path, f"expected an http:// or https:// URL, found {show(url)}")
    return url


def _headers(path: str, value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()):
        raise expected(path, "an object of header name -> string value", value)
    return tuple(value.items())


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where an app's webhooks go (PUSHER.md 9): `events` it wants, optionally only for
    channels whose name starts with `channel_prefix`, with extra request `headers`."""

    url: str = field(kw_only=True, metadata=row(_url, required="where the posts go"))
    events: tuple[str, ...] = field(kw_only=True, metadata=row(
        _events, required="which events: " + ", ".join(WEBHOOK_EVENTS)))
    channel_prefix: str | None = key(None, optional(text))
    headers: tuple[tuple[str, str], ...] = key((), _headers)


def _webhooks(path: str, value: object) -> tuple[Webhook, ...]:
    if not isinstance(value, list):
        raise expected(path, "an array of webhook objects", value)
    return tuple(read(Webhook, f"{path}[{i}]", item, {}) for i, item in enumerate(value))


@dataclass(frozen=True, slots=True)
class App:
    """One Pusher app (PUSHER.md 1): a channel namespace of its own, with its credentials.
    (`setting` is config_table.key: this table has a field named `key`.)"""

    id: str = field(kw_only=True, metadata=row(_app_text, required="the app id, as in URLs"))
    key: str = field(kw_only=True, metadata=row(_app_text, required="what clients connect with"))
    secret: str = field(kw_only=True, repr=False, metadata=row(
        text, required="signs this app's requests, tokens and webhooks"))
    client_events: bool = setting(False, boolean)  # clients may send client-* events
    user_authentication: bool = setting(False, boolean)  # connections must sign in within 30 s
    max_connections: int | None = setting(None, optional(Int(1, 10_000_000)))
    max_presence_members: int = setting(100, Int(1, 1_000_000))  # users per presence channel
    activity_timeout: int = setting(120, Int(1, 3600))  # seconds of silence before a ping
    subscription_count: bool = setting(False, boolean)  # push pusher_internal:subscription_count
    webhooks: tuple[Webhook, ...] = setting((), _webhooks)


@dataclass(frozen=True, slots=True)
class PushyApp:
    """The Pushy channels as an app of the Pusher HTTP API and webhooks (README): the id and
    key the official SDKs name; they sign with `secretKey`."""

    id: str = field(kw_only=True, metadata=row(_app_text, required="the app id, as in URLs"))
    key: str = field(kw_only=True, metadata=row(_app_text, required="the key requests name"))
    webhooks: tuple[Webhook, ...] = setting((), _webhooks)


def _pushy_app(path: str, value: object) -> PushyApp | None:
    if value is None:
        return None
    return read(PushyApp, path, value, {})


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """How webhooks are posted (PUSHER.md 9; README, Webhooks): batches, the holds of
    channel_vacated and member_removed, retries, and the queue's bound."""

    batch_events: int = key(20, Int(1, 1000))  # at most this many events per post
    batch_delay: float = key(0.25, seconds)  # a batch waits this long for more events
    hold: float = key(3.0, seconds)  # vacated / removed wait this long: a return cancels them
    post_timeout: float = key(4.0, seconds)  # no answer by then: the post failed
    retry_for: float = key(300.0, seconds)  # a failing batch is retried this long, then dropped
    max_queue_bytes: int = key(8 * 1024 * 1024, size)  # queued events of every URL, as JSON


_REDIS_URL_RE = re.compile(r"(rediss?://[^\s/?#]*(/\d+)?|unix:///[^\s?#]+)(\?[^\s#]*)?", re.ASCII)
_NODE_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,100}", re.ASCII)


def _redis_url(path: str, value: object) -> str:
    url = text(path, value)
    if not _REDIS_URL_RE.fullmatch(url):
        raise ConfigError(path, "expected redis://HOST:PORT/DB, rediss://... or "
                          f"unix:///path/to/redis.sock, found {show(url)}")
    return url


def _node(path: str, value: object) -> str:
    name = text(path, value)
    if not _NODE_RE.fullmatch(name):
        raise ConfigError(path, f"expected 1-100 of A-Z a-z 0-9 _ . : -, found {show(name)}")
    return name


@dataclass(frozen=True, slots=True)
class Cluster:
    """Several instances sharing channels through Redis (SCALEOUT.md; README, Several
    hosts). `node` None: `<hostname>:<port>` (the shard shell resolves it)."""

    redis: str = field(kw_only=True, metadata=row(
        _redis_url, required="the Redis URL, e.g. redis://127.0.0.1:6379/0"))
    node: str | None = key(None, optional(_node))
    lease_seconds: float = key(15.0, seconds)  # a dead instance's members leave by 1.5x this


def _cluster(path: str, value: object) -> Cluster | None:
    if value is None:
        return None
    cluster = read(Cluster, path, value, {})
    if cluster.lease_seconds < 1:
        raise ConfigError(f"{path}.lease_seconds", "must be at least 1 second")
    return cluster


def _apps(path: str, value: object) -> tuple[App, ...]:
    """The Pusher apps; ids and keys must be unique (they name the app in URLs)."""
    if not isinstance(value, list):
        raise expected(path, "an array of app objects", value)
    apps = tuple(read(App, f"{path}[{i}]", item, {}) for i, item in enumerate(value))
    for attribute in ("id", "key"):
        seen: set[str] = set()
        for i, app in enumerate(apps):
            name = getattr(app, attribute)
            if name in seen:
                raise ConfigError(f"{path}[{i}].{attribute}", f"duplicate app {attribute} "
                                  f"{show(name)}")
            seen.add(name)
    return apps


def _path_prefix(path: str, value: object) -> str:
    """"" (none), or a path like "/realtime" that a proxy keeps in front of every route."""
    if value == "":
        return ""
    return _prefix(path, value)


def _message_fits_frame(path: str, limits: Limits) -> Limits:
    if limits.max_message_bytes > limits.max_frame_bytes:
        raise ConfigError(f"{path}.max_message_bytes", f"must not exceed {path}.max_frame_bytes")
    return limits


def _fronts_can_ping(path: str, timeouts: Timeouts) -> Timeouts:
    if timeouts.front_silence < 2:
        raise ConfigError(f"{path}.front_silence",
                          "must be at least 2 seconds (fronts PING once a second)")
    return timeouts


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration; every process of one deployment reads the same one.
    Fields are in config.json's order (`secret_key` is keyword-only to sit there)."""

    port: int = key(8123, _PORT, env="PORT")
    host: str = key("0.0.0.0", text)
    secret_key: str = field(kw_only=True, repr=False, metadata=row(
        text, name="secretKey", required="the key that signs triggers and tokens"))
    ssl: bool = key(False, boolean)
    ssl_cert: str | None = key(None, text, name="sslCert")
    ssl_key: str | None = key(None, text, name="sslKey")
    workers: int = key(1, _PROCESSES, env="PUSHY_WORKERS")  # parse_config: one per CPU
    fronts: int = key(1, _PROCESSES, env="PUSHY_FRONTS")
    sockjs: SockJSOptions = group(SockJSOptions)
    # command name (lower-cased, PROTOCOL.md 2) -> "module.path:callable"; read-only
    commands: Mapping[str, str] = field(default_factory=_empty_commands, hash=False,
                                        metadata=row(_commands))
    link: LinkOptions = group(LinkOptions)
    demo: bool = key(True, boolean)
    log_level: str = key("info", _log_level)
    log_format: str = key("plain", _log_format)
    limits: Limits = group(Limits, _message_fits_frame)
    # browser Origins allowed to connect: "*" (any), "https://app.example.com", "*.example.com"
    allowed_origins: tuple[str, ...] = key(("*",), _origins)
    # peers whose X-Forwarded-For is believed: addresses or networks ("10.0.0.0/8")
    trusted_proxies: tuple[str, ...] = key((), _proxies)
    shutdown_timeout: float = key(10.0, seconds)  # SIGTERM: the bound on a graceful stop
    timeouts: Timeouts = group(Timeouts, _fronts_can_ping)
    apps: tuple[App, ...] = key((), _apps)  # Pusher apps (README, Pusher protocol)
    # a prefix a proxy keeps before the Pusher routes (/app, /pusher, /apps); it is
    # stripped before a request's signature is checked
    pusher_path_prefix: str = key("", _path_prefix)
    # the Pushy channels in the HTTP API and webhooks; null: neither
    pushy_app: PushyApp | None = key(None, _pushy_app)
    webhook_delivery: WebhookDelivery = group(WebhookDelivery)
    # several instances sharing channels through Redis; null: one host, no Redis
    cluster: Cluster | None = key(None, _cluster)

    @property
    def demo_secret(self) -> bool:
        """True while the shipped demo secret is in use: callers should warn loudly."""
        return self.secret_key == DEMO_SECRET

    @property
    def api_apps(self) -> tuple[App, ...]:
        """Every app of the HTTP API: the Pusher apps, and the Pushy channels' app (signed
        with secretKey) when `pushy_app` is set."""
        pushy = self.pushy_app
        if pushy is None:
            return self.apps
        return (*self.apps, App(id=pushy.id, key=pushy.key, secret=self.secret_key,
                                webhooks=pushy.webhooks))

    def namespace(self, app: App) -> str:
        """The channel namespace of an HTTP API app (routing.app_key): its id, or the Pushy
        channels' ("") for `pushy_app`."""
        pushy = self.pushy_app
        return "" if pushy is not None and app.id == pushy.id else app.id

    @property
    def demo_apps(self) -> tuple[str, ...]:
        """The ids of Pusher apps still on the shipped demo secret: warn loudly."""
        return tuple(app.id for app in self.apps if app.secret == DEMO_APP_SECRET)


# -- parsing ----------------------------------------------------------------------------------


def parse_config(raw: object, *, env: Mapping[str, str], cpu_count: int) -> Config:
    """Validate decoded config.json plus environment overrides; raises ConfigError on the first
    bad setting. `cpu_count` is the default for `workers`."""
    config = read(Config, "config", raw, env, workers=min(max(cpu_count, 1), MAX_PROCESSES))
    if config.ssl and config.ssl_cert is None:
        raise ConfigError("sslCert", "is required when ssl is true (path to the PEM certificate)")
    if config.ssl and config.ssl_key is None:
        raise ConfigError("sslKey", "is required when ssl is true (path to the PEM private key)")
    if config.link.transport == "tcp":
        _check_link_ports(config)
    pushy = config.pushy_app
    if pushy is not None:
        for attribute in ("id", "key"):
            if any(getattr(app, attribute) == getattr(pushy, attribute) for app in config.apps):
                raise ConfigError(f"pushy_app.{attribute}", f"{show(getattr(pushy, attribute))}"
                                  f" is also the {attribute} of an app in apps")
    return config


def load_config(path: str, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and parse config.json; the one function here that touches the outside world."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            raw_text = f.read()
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        raw = json.loads(raw_text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:  # e.g. an integer literal past sys.get_int_max_str_digits
        raise ConfigError(path, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise ConfigError(path, "invalid JSON: nested too deeply") from None
    return parse_config(
        raw, env=os.environ if env is None else env, cpu_count=os.cpu_count() or 1
    )


# -- derived link endpoints (ARCHITECTURE.md 3) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkEndpoints:
    """Every private address of one deployment, computed from its config alone."""

    shards: tuple[str, ...]  # the ZeroMQ endpoint shard j binds and every front connects to
    # where front i takes relayed requests: a unix socket path, or ("127.0.0.1", port)
    relays: tuple[str | tuple[str, int], ...]
    hooks: str  # the ZeroMQ endpoint the hooks process binds and every shard connects to
    hooks_stats: str | tuple[str, int]  # where the hooks process answers a /metrics scrape


def _first_link_port(config: Config) -> tuple[str, int]:
    """With tcp: the port of shard 0, and the key that sets it (for messages)."""
    if config.link.tcp_port is not None:
        return "link.tcp_port", config.link.tcp_port
    return "port", config.port + LINK_PORT_OFFSET


def _check_link_ports(config: Config) -> None:
    """The tcp link uses first.. for the shards, then one relay port per front, then two for
    the hooks process: every one must be a port and miss the public one, known before any
    process starts."""
    name, first = _first_link_port(config)
    relays = first + config.workers
    hooks = relays + config.fronts
    for what, low, high in (("shard link", first, relays - 1),
                            ("front relay", relays, hooks - 1),
                            ("hooks link", hooks, hooks + 1)):
        if high > 65535:
            raise ConfigError(name, f"{what} ports {low}..{high} go past 65535")
        if low <= config.port <= high:
            raise ConfigError(name, f"{what} ports {low}..{high} include port {config.port}")


def link_endpoints(config: Config, directory: str) -> LinkEndpoints:
    """The shard, front relay and hooks endpoints: sockets in `directory` (see
    `runtime_directory`), or with `link.transport` tcp loopback ports: the shards' first,
    then one per front, then the hooks process's link and its stats."""
    if config.link.transport == "tcp":
        _, first = _first_link_port(config)
        relays = first + config.workers
        hooks = relays + config.fronts
        return LinkEndpoints(
            shards=tuple(f"tcp://127.0.0.1:{first + j}" for j in range(config.workers)),
            relays=tuple(("127.0.0.1", relays + i) for i in range(config.fronts)),
            hooks=f"tcp://127.0.0.1:{hooks}",
            hooks_stats=("127.0.0.1", hooks + 1),
        )
    return LinkEndpoints(
        shards=tuple(f"ipc://{directory}/shard-{j}.sock" for j in range(config.workers)),
        relays=tuple(f"{directory}/front-{i}.sock" for i in range(config.fronts)),
        hooks=f"ipc://{directory}/hooks.sock",
        hooks_stats=f"{directory}/hooks-stats.sock",
    )


def runtime_directory(config: Config, env: Mapping[str, str]) -> str:
    """Where ipc sockets live; per port, so two deployments on one host never share sockets."""
    if config.link.directory is not None:
        return config.link.directory
    base = env.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return f"{base}/pushy-shard-{config.port}"


def shard_endpoint(config: Config, index: int, directory: str) -> str:
    """The ZeroMQ endpoint shard `index` binds and every front connects to."""
    if not 0 <= index < config.workers:
        raise ValueError(f"shard index {index} out of range 0..{config.workers - 1}")
    return link_endpoints(config, directory).shards[index]
