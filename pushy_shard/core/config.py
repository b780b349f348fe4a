"""config.json and its environment overrides, validated into one immutable `Config` (PROTOCOL.md 6).

Everything here is pure except `load_config`, which only reads the file: a bad setting stops the
process before it serves anything, with a `ConfigError` naming the key by its dotted path.
Units: ports are TCP ports, delays are seconds, `response_limit` is bytes.
"""

from __future__ import annotations

import ipaddress
import json
import keyword
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from fractions import Fraction
from types import MappingProxyType
from typing import Any, TypeVar

from pushy_shard.errors import ConfigError

__all__ = [
    "DEMO_SECRET",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "Config",
    "Limits",
    "LinkOptions",
    "SockJSOptions",
    "Timeouts",
    "load_config",
    "parse_config",
    "runtime_directory",
    "shard_endpoint",
]

DEMO_SECRET = "pushy-shard-demo-secret-change-me"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("plain", "json")

MAX_PROCESSES = 256
MAX_DELAY_S = 3600.0
MAX_RESPONSE_LIMIT = 1024**3
TRIGGER_PATH = "/pushy/channel"  # PROTOCOL.md 1: the SockJS prefix must not shadow it

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_SIZE_RE = re.compile(r"(\d{1,15}(?:\.\d{1,15})?|\.\d{1,15})\s*([KMG]?)B?", re.I | re.ASCII)
_DIGITS_RE = re.compile(r"\d{1,9}", re.ASCII)
_PREFIX_SEGMENT_RE = re.compile(r"[^/\s?#]+")

_T = TypeVar("_T")


def _empty_commands() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SockJSOptions:
    """The SockJS server options under their SockJS names; delays in seconds (not ms, see 6)."""

    prefix: str = "/pushy/socket"
    sockjs_url: str = "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"
    websocket: bool = True
    response_limit: int = 128 * 1024
    jsessionid: bool = False
    heartbeat_delay: float = 25.0
    disconnect_delay: float = 5.0


@dataclass(frozen=True, slots=True)
class LinkOptions:
    """How fronts reach shards over ZeroMQ; None means "derive it" (see the helpers below)."""

    transport: str = "ipc"
    directory: str | None = None
    tcp_port: int | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client, trigger or session may use (README, Limits). Sizes in bytes; each
    breach gets its documented error or close frame and is counted, nothing else changes."""

    max_message_bytes: int = 64 * 1024  # one Pushy message from a client
    max_frame_bytes: int = 1024 * 1024  # one WebSocket frame or xhr_send/jsonp_send body
    max_trigger_body: int = 64 * 1024
    max_presence_data: int = 2048  # presence `data` of one member, as JSON
    max_channel_length: int = 200
    channel_pattern: str | None = None  # a regular expression every channel name must match
    max_channels_per_connection: int = 1000
    max_connections_per_front: int = 100_000
    commands_per_second: float = 50.0  # token bucket: refill rate...
    commands_burst: int = 100  # ...and size
    session_queue_messages: int = 1000  # messages a polling session holds between polls
    session_queue_bytes: int = 1024 * 1024
    slow_consumer_bytes: int = 4 * 1024 * 1024  # unsent output that closes a connection
    replay_protection: bool = True  # refuse a trigger signature seen inside its time window
    replay_cache_entries: int = 100_000  # signatures each shard remembers, at most


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the processes wait for each other, in seconds (README, Configuration)."""

    trigger: float = 5.0  # a trigger's answer from its shard; then 503
    command: float = 10.0  # a command's answer from its shard; then pushy:error 503
    front_silence: float = 5.0  # a shard that hears no PING from a front this long drops
    #                             its members (fronts PING once a second)
    shard_recovery: float = 2.0  # a new shard holds requests this long at most, until every
    #                              front has replayed its members


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration; every process of one deployment reads the same one."""

    secret_key: str = field(repr=False)
    port: int = 8123
    host: str = "0.0.0.0"
    ssl: bool = False
    ssl_cert: str | None = None
    ssl_key: str | None = None
    workers: int = 1
    fronts: int = 1
    sockjs: SockJSOptions = SockJSOptions()
    # command name (lower-cased, PROTOCOL.md 2) -> "module.path:callable"; read-only
    commands: Mapping[str, str] = field(default_factory=_empty_commands, hash=False)
    link: LinkOptions = LinkOptions()
    demo: bool = True
    log_level: str = "info"
    log_format: str = "plain"
    limits: Limits = Limits()
    # browser Origins allowed to connect: "*" (any), "https://app.example.com", "*.example.com"
    allowed_origins: tuple[str, ...] = ("*",)
    # peers whose X-Forwarded-For is believed: addresses or networks ("10.0.0.0/8")
    trusted_proxies: tuple[str, ...] = ()
    shutdown_timeout: float = 10.0  # SIGTERM: the bound on a graceful stop, seconds
    timeouts: Timeouts = Timeouts()

    @property
    def demo_secret(self) -> bool:
        """True while the shipped demo secret is in use: callers should warn loudly."""
        return self.secret_key == DEMO_SECRET


# -- messages ---------------------------------------------------------------------------------

_JSON_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def _kind(value: object) -> str:
    """The JSON name of a value's type, for "expected X, found Y" messages."""
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    """A short one-line rendering of a (non-secret) value for messages."""
    try:
        text = ascii(value)
    except ValueError:  # an int too long to print (sys.get_int_max_str_digits)
        return "a huge integer"
    return text if len(text) <= 40 else text[:37] + "..."


def _name(key: object) -> str:
    """A key as it may appear in a one-line message."""
    text = key if isinstance(key, str) else ascii(key)
    if text.isprintable() and len(text) <= 64:
        return text
    return _show(text)


def _expected(key: str, what: str, value: object) -> ConfigError:
    return ConfigError(key, f"expected {what}, found {_kind(value)}")


# -- single values ----------------------------------------------------------------------------


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _expected(key, "true or false", value)
    return value


def _int(key: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected(key, f"an integer from {low} to {high}", value)
    if not low <= value <= high:
        raise ConfigError(key, f"expected an integer from {low} to {high}, found {_show(value)}")
    return value


def _port(key: str, value: object) -> int:
    return _int(key, value, 1, 65535)


def _processes(key: str, value: object) -> int:
    return _int(key, value, 1, MAX_PROCESSES)


def _str(key: str, value: object) -> str:
    """A non-blank string."""
    if not isinstance(value, str):
        raise _expected(key, "a non-empty string", value)
    if not value.strip():
        raise ConfigError(key, "expected a non-empty string, found an empty one")
    return value


def _seconds(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expected(key, f"a number of seconds above 0 and at most {MAX_DELAY_S:g}", value)
    if not 0 < value <= MAX_DELAY_S:  # also refuses NaN and infinities
        raise ConfigError(
            key, f"expected a number of seconds above 0 and at most {MAX_DELAY_S:g}, "
            f"found {_show(value)}"
        )
    return float(value)


def _size(key: str, value: object) -> int:
    """Bytes from an int or a string such as "128K", "1.5M", "64kb" (K=1024)."""
    what = 'a byte count: an integer or a string such as "128K", "1M", "64kb"'
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _expected(key, what, value)
    if isinstance(value, int):
        count = Fraction(value)
    else:
        match = _SIZE_RE.fullmatch(value.strip())
        if match is None:
            raise ConfigError(key, f"expected {what}, found {_show(value)}")
        count = Fraction(match.group(1)) * _UNITS[match.group(2).upper()]
    if count.denominator != 1:
        raise ConfigError(key, f"expected a whole number of bytes, found {_show(value)}")
    if not 1 <= count <= MAX_RESPONSE_LIMIT:
        raise ConfigError(key, f"expected 1 byte to 1G, found {_show(value)}")
    return int(count)


def _prefix(key: str, value: object) -> str:
    """A URL path such as "/pushy/socket": SockJS routes hang below it."""
    text = _str(key, value)
    if not text.startswith("/"):
        raise ConfigError(key, f'expected a path starting with "/", found {_show(text)}')
    if text.endswith("/"):
        text = text[:-1]
    segments = text.split("/")[1:]
    if not segments or not all(_PREFIX_SEGMENT_RE.fullmatch(s) for s in segments):
        raise ConfigError(
            key, "expected a path like /pushy/socket (no whitespace, ?, # or empty segment), "
            f"found {_show(value)}"
        )
    if text == TRIGGER_PATH or text.startswith(TRIGGER_PATH + "/"):
        raise ConfigError(key, f"must not overlap the trigger API at {TRIGGER_PATH}")
    return text


def _target(key: str, value: object) -> str:
    """A "dotted.module:callable" import reference for a custom command (PROTOCOL.md 3.5)."""
    what = 'a "dotted.module:callable" reference'
    if not isinstance(value, str):
        raise _expected(key, what, value)
    module, colon, name = value.partition(":")
    parts = [*module.split("."), name]
    if not colon or not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
        raise ConfigError(key, f"expected {what}, found {_show(value)}")
    return value


def _log_level(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _expected(key, "one of " + ", ".join(LOG_LEVELS), value)
    if value.lower() not in LOG_LEVELS:
        raise ConfigError(key, f"expected one of {', '.join(LOG_LEVELS)}, found {_show(value)}")
    return value.lower()


def _env_int(env: Mapping[str, str], var: str, low: int, high: int) -> int | None:
    """An integer environment override, or None when the variable is unset or empty."""
    raw = env.get(var)
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not _DIGITS_RE.fullmatch(text):
        raise ConfigError(var, f"expected an integer from {low} to {high}, found {_show(raw)}")
    return _int(var, int(text), low, high)


# -- objects ----------------------------------------------------------------------------------


def _object(key: str, value: object, known: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object without its "//" comment keys; unknown keys are errors (typos matter)."""
    if not isinstance(value, dict):
        raise _expected(key, "an object", value)
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(k, str) and k.startswith("//"):
            continue
        if k not in known:
            path = _name(k) if key == "config" else f"{key}.{_name(k)}"
            raise ConfigError(path, "unknown key; known keys are: " + ", ".join(known))
        out[k] = v
    return out


def _get(
    obj: Mapping[str, Any], key: str, path: str, check: Callable[[str, object], _T], default: _T
) -> _T:
    return check(path, obj[key]) if key in obj else default


_TOP_KEYS = (
    "port", "host", "secretKey", "ssl", "sslCert", "sslKey", "workers", "fronts",
    "sockjs", "commands", "link", "demo", "log_level", "log_format", "limits",
    "allowed_origins", "trusted_proxies", "shutdown_timeout", "timeouts",
)
_TIMEOUT_KEYS = tuple(f.name for f in fields(Timeouts))
_LIMIT_KEYS = tuple(f.name for f in fields(Limits))
_SOCKJS_KEYS = (
    "prefix", "sockjs_url", "websocket", "response_limit", "jsessionid",
    "heartbeat_delay", "disconnect_delay",
)
_LINK_KEYS = ("transport", "directory", "tcp_port")


def _sockjs(value: object) -> SockJSOptions:
    obj = _object("sockjs", value, _SOCKJS_KEYS)
    d = SockJSOptions()
    return SockJSOptions(
        prefix=_get(obj, "prefix", "sockjs.prefix", _prefix, d.prefix),
        sockjs_url=_get(obj, "sockjs_url", "sockjs.sockjs_url", _str, d.sockjs_url),
        websocket=_get(obj, "websocket", "sockjs.websocket", _bool, d.websocket),
        response_limit=_get(obj, "response_limit", "sockjs.response_limit", _size,
                            d.response_limit),
        jsessionid=_get(obj, "jsessionid", "sockjs.jsessionid", _bool, d.jsessionid),
        heartbeat_delay=_get(obj, "heartbeat_delay", "sockjs.heartbeat_delay", _seconds,
                             d.heartbeat_delay),
        disconnect_delay=_get(obj, "disconnect_delay", "sockjs.disconnect_delay", _seconds,
                              d.disconnect_delay),
    )


def _positive(key: str, value: object) -> float:
    """A rate: a number above 0 (at most a million)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expected(key, "a number above 0", value)
    if not 0 < value <= 1_000_000:
        raise ConfigError(key, f"expected a number above 0 and at most 1000000, "
                          f"found {_show(value)}")
    return float(value)


def _pattern(key: str, value: object) -> str | None:
    """A regular expression (Python syntax) a whole channel name must match; null: any."""
    if value is None:
        return None
    text = _str(key, value)
    try:
        re.compile(text)
    except re.error as exc:
        raise ConfigError(key, f"not a valid regular expression: {exc}") from None
    return text


def _limits(value: object) -> Limits:
    obj = _object("limits", value, _LIMIT_KEYS)
    counts = {"max_channel_length": 100_000, "max_channels_per_connection": 1_000_000,
              "max_connections_per_front": 10_000_000, "commands_burst": 1_000_000,
              "session_queue_messages": 1_000_000, "replay_cache_entries": 10_000_000}
    out: dict[str, Any] = {}
    for name in _LIMIT_KEYS:
        path = f"limits.{name}"
        if name not in obj:
            continue
        raw = obj[name]
        if name in counts:
            out[name] = _int(path, raw, 1, counts[name])
        elif name == "commands_per_second":
            out[name] = _positive(path, raw)
        elif name == "channel_pattern":
            out[name] = _pattern(path, raw)
        elif name == "replay_protection":
            out[name] = _bool(path, raw)
        else:
            out[name] = _size(path, raw)
    limits = Limits(**out)
    if limits.max_message_bytes > limits.max_frame_bytes:
        raise ConfigError("limits.max_message_bytes", "must not exceed limits.max_frame_bytes")
    return limits


def _timeouts(value: object) -> Timeouts:
    obj = _object("timeouts", value, _TIMEOUT_KEYS)
    timeouts = Timeouts(**{name: _seconds(f"timeouts.{name}", raw) for name, raw in obj.items()})
    if timeouts.front_silence < 2:
        raise ConfigError("timeouts.front_silence",
                          "must be at least 2 seconds (fronts PING once a second)")
    return timeouts


def _strings(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _expected(key, "an array of non-empty strings", value)
    return tuple(value)


def _origins(value: object) -> tuple[str, ...]:
    origins = _strings("allowed_origins", value)
    if not origins:
        raise ConfigError("allowed_origins", 'expected at least one origin; ["*"] allows any')
    return origins


def _proxies(value: object) -> tuple[str, ...]:
    proxies = _strings("trusted_proxies", value)
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError("trusted_proxies",
                              f"expected IP addresses or networks, found {_show(proxy)}") from None
    return proxies


def _log_format(key: str, value: object) -> str:
    if not isinstance(value, str) or value.lower() not in LOG_FORMATS:
        raise ConfigError(key, f"expected one of {', '.join(LOG_FORMATS)}, found {_show(value)}")
    return value.lower()


def _commands(value: object) -> Mapping[str, str]:
    """Command names are case-insensitive on the wire (PROTOCOL.md 2), so they are stored lower."""
    if not isinstance(value, dict):
        raise _expected("commands", "an object of name -> \"module:callable\"", value)
    out: dict[str, str] = {}
    for name, target in value.items():
        if isinstance(name, str) and name.startswith("//"):
            continue
        path = f"commands.{_name(name)}"
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(path, "expected a non-empty command name")
        lower = name.lower()
        if lower in out:
            raise ConfigError(path, "duplicate command name (names are case-insensitive)")
        out[lower] = _target(path, target)
    return MappingProxyType(out)


def _link(value: object, port: int, workers: int) -> LinkOptions:
    obj = _object("link", value, _LINK_KEYS)
    transport = _get(obj, "transport", "link.transport", _str, "ipc")
    if transport not in ("ipc", "tcp"):
        raise ConfigError("link.transport", f'expected "ipc" or "tcp", found {_show(transport)}')
    directory = obj.get("directory")
    if directory is not None:
        directory = _str("link.directory", directory)
    tcp_port = obj.get("tcp_port")
    if tcp_port is not None:
        tcp_port = _port("link.tcp_port", tcp_port)
    if transport == "tcp":
        # shard J binds first + J: the whole range must be valid and miss the public port
        key, first = ("link.tcp_port", tcp_port) if tcp_port is not None else ("port", port + 1000)
        last = first + workers - 1
        if last > 65535:
            raise ConfigError(key, f"shard link ports {first}..{last} go past 65535")
        if first <= port <= last:
            raise ConfigError(key, f"shard link ports {first}..{last} include port {port}")
    return LinkOptions(transport=transport, directory=directory, tcp_port=tcp_port)


def parse_config(raw: object, *, env: Mapping[str, str], cpu_count: int) -> Config:
    """Validate decoded config.json plus environment overrides; raises ConfigError on the first
    bad setting. `cpu_count` is the default for `workers`."""
    obj = _object("config", raw, _TOP_KEYS)

    if "secretKey" not in obj:
        raise ConfigError("secretKey", "is required (the key that signs triggers and tokens)")
    secret = _str("secretKey", obj["secretKey"])  # _str never echoes the value

    port = _get(obj, "port", "port", _port, 8123)
    default_workers = min(max(cpu_count, 1), MAX_PROCESSES)
    workers = _get(obj, "workers", "workers", _processes, default_workers)
    fronts = _get(obj, "fronts", "fronts", _processes, 1)

    port = _env_int(env, "PORT", 1, 65535) or port
    workers = _env_int(env, "PUSHY_WORKERS", 1, MAX_PROCESSES) or workers
    fronts = _env_int(env, "PUSHY_FRONTS", 1, MAX_PROCESSES) or fronts

    ssl = _get(obj, "ssl", "ssl", _bool, False)
    ssl_cert = _get(obj, "sslCert", "sslCert", _str, None)
    ssl_key = _get(obj, "sslKey", "sslKey", _str, None)
    if ssl and ssl_cert is None:
        raise ConfigError("sslCert", "is required when ssl is true (path to the PEM certificate)")
    if ssl and ssl_key is None:
        raise ConfigError("sslKey", "is required when ssl is true (path to the PEM private key)")

    return Config(
        secret_key=secret,
        port=port,
        host=_get(obj, "host", "host", _str, "0.0.0.0"),
        ssl=ssl,
        ssl_cert=ssl_cert,
        ssl_key=ssl_key,
        workers=workers,
        fronts=fronts,
        sockjs=_sockjs(obj["sockjs"]) if "sockjs" in obj else SockJSOptions(),
        commands=_commands(obj["commands"]) if "commands" in obj else _empty_commands(),
        link=_link(obj.get("link", {}), port, workers),
        demo=_get(obj, "demo", "demo", _bool, True),
        log_level=_get(obj, "log_level", "log_level", _log_level, "info"),
        log_format=_get(obj, "log_format", "log_format", _log_format, "plain"),
        limits=_limits(obj["limits"]) if "limits" in obj else Limits(),
        allowed_origins=_origins(obj["allowed_origins"]) if "allowed_origins" in obj else ("*",),
        trusted_proxies=_proxies(obj["trusted_proxies"]) if "trusted_proxies" in obj else (),
        shutdown_timeout=_get(obj, "shutdown_timeout", "shutdown_timeout", _seconds, 10.0),
        timeouts=_timeouts(obj["timeouts"]) if "timeouts" in obj else Timeouts(),
    )


def load_config(path: str, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and parse config.json; the one function here that touches the outside world."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text)
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
    if config.link.transport == "tcp":
        first = config.link.tcp_port if config.link.tcp_port is not None else config.port + 1000
        return f"tcp://127.0.0.1:{first + index}"
    return f"ipc://{directory}/shard-{index}.sock"
