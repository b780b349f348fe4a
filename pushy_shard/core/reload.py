"""What a config reload (SIGHUP) may change in a running process, as one table.

Every setting of `Config` is either LIVE (the processes read it where they use it, so a new
value takes effect on the next use) or FIXED (it shaped something built at start: the
listening socket, the process counts, the routes, the links). `plan_reload` compares the
running config with the re-read one and returns the config to run with: new LIVE values,
old FIXED values, and the names of the FIXED keys that changed, for the caller to log.
Keys are named as in config.json (`secretKey`, `limits.max_message_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import Enum
from typing import Any

from pushy_shard.core.config import Config

__all__ = ["RELOAD_TABLE", "Change", "ReloadPlan", "plan_reload"]


class Change(Enum):
    LIVE = "live"
    FIXED = "fixed"


LIVE, FIXED = Change.LIVE, Change.FIXED

# field of Config (nested dataclasses as "group.field") -> (config.json name, how it changes).
# A field missing here fails tests/core/test_reload.py: every new setting must be classified.
RELOAD_TABLE: dict[str, tuple[str, Change]] = {
    # rotating the secret needs no reconnect: triggers and channel tokens are checked with
    # the current value at use (app servers must switch at the same moment, as with a restart)
    "secret_key": ("secretKey", LIVE),
    "port": ("port", FIXED),  # the listening socket
    "host": ("host", FIXED),
    "ssl": ("ssl", FIXED),  # the TLS context is built with the listening socket
    "ssl_cert": ("sslCert", FIXED),
    "ssl_key": ("sslKey", FIXED),
    "workers": ("workers", FIXED),  # channel -> shard routing depends on it
    "fronts": ("fronts", FIXED),
    "sockjs.prefix": ("sockjs.prefix", FIXED),  # routes are built at start
    "sockjs.sockjs_url": ("sockjs.sockjs_url", FIXED),  # iframe page and its ETag, built at start
    "sockjs.websocket": ("sockjs.websocket", FIXED),  # clients cached /info's answer
    "sockjs.response_limit": ("sockjs.response_limit", LIVE),  # read per streaming request
    "sockjs.jsessionid": ("sockjs.jsessionid", LIVE),  # read per request
    "sockjs.heartbeat_delay": ("sockjs.heartbeat_delay", LIVE),  # read by the sweep
    "sockjs.disconnect_delay": ("sockjs.disconnect_delay", LIVE),  # sessions opened from now on
    "commands": ("commands", FIXED),  # handlers are imported at start
    "link.transport": ("link.transport", FIXED),  # sockets are bound at start
    "link.directory": ("link.directory", FIXED),
    "link.tcp_port": ("link.tcp_port", FIXED),
    "demo": ("demo", FIXED),  # the route exists or not
    "log_level": ("log_level", LIVE),
    "log_format": ("log_format", FIXED),  # the formatter is installed at start
    "limits": ("limits", LIVE),  # read at use; reported key by key
    "allowed_origins": ("allowed_origins", LIVE),
    "trusted_proxies": ("trusted_proxies", LIVE),
    "shutdown_timeout": ("shutdown_timeout", LIVE),  # read when the stop begins
    # read at use: by the next request, the shard's next sweep, a shard's next start
    "timeouts.trigger": ("timeouts.trigger", LIVE),
    "timeouts.command": ("timeouts.command", LIVE),
    "timeouts.front_silence": ("timeouts.front_silence", LIVE),
    "timeouts.shard_recovery": ("timeouts.shard_recovery", LIVE),
    "timeouts.pusher_pong": ("timeouts.pusher_pong", LIVE),
    "timeouts.pusher_signin": ("timeouts.pusher_signin", LIVE),  # connections from now on
    # read at use: a new connection, request or webhook uses the reloaded app (its open
    # connections keep the app they opened with until they reconnect)
    "apps": ("apps", LIVE),
    "pusher_path_prefix": ("pusher_path_prefix", FIXED),  # routes are built at start
    "timeouts.query": ("timeouts.query", LIVE),
    # read at use: the next query, the next webhook (the hooks process re-reads it too)
    "pushy_app": ("pushy_app", LIVE),
    "webhook_delivery": ("webhook_delivery", LIVE),
    "cluster": ("cluster", FIXED),  # the Redis links, the node's name and its lease
}

# the sections classified field by field ("limits" is one key, reported field by field)
_GROUPS = frozenset(key.partition(".")[0] for key in RELOAD_TABLE if "." in key)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """`config` is what to run with; `applied` and `refused` name the keys that changed."""

    config: Config
    applied: tuple[str, ...]
    refused: tuple[str, ...]


def _leaves(config: Config) -> dict[str, Any]:
    """Config as table keys -> values (the _GROUPS field by field)."""
    out: dict[str, Any] = {}
    for f in fields(Config):
        value = getattr(config, f.name)
        if f.name in _GROUPS:
            for g in fields(value):
                out[f"{f.name}.{g.name}"] = getattr(value, g.name)
        else:
            out[f.name] = value
    return out


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """The config to apply after a reload: `new`, except where a FIXED key changed, which
    keeps its `old` value and is listed in `refused` (the caller logs one line for each)."""
    before, after = _leaves(old), _leaves(new)
    applied: list[str] = []
    refused: list[str] = []
    keep_top: dict[str, Any] = {}
    keep_group: dict[str, dict[str, Any]] = {group: {} for group in _GROUPS}
    for key, (name, change) in RELOAD_TABLE.items():
        if before[key] == after[key]:
            continue
        if change is LIVE:
            if key == "limits":
                applied += [f"limits.{f.name}" for f in fields(old.limits)
                            if getattr(old.limits, f.name) != getattr(new.limits, f.name)]
            else:
                applied.append(name)
            continue
        refused.append(name)
        group, _, field_name = key.partition(".")
        if field_name:
            keep_group[group][field_name] = before[key]
        else:
            keep_top[key] = before[key]
    for group, kept in keep_group.items():
        if kept:
            keep_top[group] = replace(getattr(new, group), **kept)
    config = replace(new, **keep_top) if keep_top else new
    return ReloadPlan(config, tuple(applied), tuple(refused))
