"""core.reload (what SIGHUP may change) and core.stopping (how SIGTERM's time is shared)."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import pytest

from pushy_shard.core.config import Config, LinkOptions, SockJSOptions, Timeouts, parse_config
from pushy_shard.core.reload import RELOAD_TABLE, Change, plan_reload
from pushy_shard.core.stopping import stop_plan


def config(**raw: Any) -> Config:
    return parse_config({"secretKey": "s", "workers": 2, **raw}, env={}, cpu_count=2)


def test_every_setting_is_classified() -> None:
    keys = set()
    for f in fields(Config):
        if f.name == "sockjs":
            keys |= {f"sockjs.{g.name}" for g in fields(SockJSOptions)}
        elif f.name == "link":
            keys |= {f"link.{g.name}" for g in fields(LinkOptions)}
        elif f.name == "timeouts":
            keys |= {f"timeouts.{g.name}" for g in fields(Timeouts)}
        else:
            keys.add(f.name)
    assert keys == set(RELOAD_TABLE)


def test_same_config_changes_nothing() -> None:
    old = config(port=9000)
    plan = plan_reload(old, config(port=9000))
    assert (plan.applied, plan.refused) == ((), ())
    assert plan.config == old


def test_live_settings_are_applied() -> None:
    old = config()
    new = config(log_level="debug", limits={"max_message_bytes": 1024, "commands_burst": 5},
                 allowed_origins=["https://a.example"], trusted_proxies=["10.0.0.0/8"],
                 shutdown_timeout=3, secretKey="rotated",
                 sockjs={"heartbeat_delay": 2, "disconnect_delay": 3, "response_limit": "1K",
                         "jsessionid": True})
    plan = plan_reload(old, new)
    assert plan.refused == ()
    assert plan.config == new
    assert set(plan.applied) == {
        "log_level", "limits.max_message_bytes", "limits.commands_burst", "allowed_origins",
        "trusted_proxies", "shutdown_timeout", "secretKey", "sockjs.heartbeat_delay",
        "sockjs.disconnect_delay", "sockjs.response_limit", "sockjs.jsessionid"}


@pytest.mark.parametrize(("raw", "key"), [
    ({"port": 9001}, "port"),
    ({"host": "127.0.0.1"}, "host"),
    ({"workers": 3}, "workers"),
    ({"fronts": 2}, "fronts"),
    ({"sockjs": {"prefix": "/other"}}, "sockjs.prefix"),
    ({"sockjs": {"websocket": False}}, "sockjs.websocket"),
    ({"link": {"transport": "tcp"}}, "link.transport"),
    ({"link": {"directory": "/tmp/x"}}, "link.directory"),
    ({"commands": {"chat": "pushy_shard.examples.chat:say"}}, "commands"),
    ({"demo": False}, "demo"),
    ({"log_format": "json"}, "log_format"),
    ({"cluster": {"redis": "redis://127.0.0.1:6379/0"}}, "cluster"),  # joining one live: no
])
def test_fixed_settings_are_refused_and_keep_their_value(raw: dict[str, Any], key: str) -> None:
    old = config()
    plan = plan_reload(old, config(**raw))
    assert plan.refused == (key,)
    assert plan.applied == ()
    assert plan.config == old


def test_ssl_change_is_refused_key_by_key() -> None:
    old = config()
    plan = plan_reload(old, config(ssl=True, sslCert="c.pem", sslKey="k.pem"))
    assert plan.refused == ("ssl", "sslCert", "sslKey")
    assert plan.config == old


def test_mixed_reload_applies_live_and_keeps_fixed_in_the_same_group() -> None:
    old = config(port=9000)
    new = config(port=9001, log_level="error", sockjs={"prefix": "/p", "heartbeat_delay": 7})
    plan = plan_reload(old, new)
    assert plan.refused == ("port", "sockjs.prefix")
    assert plan.applied == ("sockjs.heartbeat_delay", "log_level")
    assert plan.config.port == 9000
    assert plan.config.sockjs == replace(new.sockjs, prefix=old.sockjs.prefix)
    assert plan.config.log_level == "error"


def test_table_names_are_config_json_names() -> None:
    names = {name for name, _ in RELOAD_TABLE.values()}
    assert {"secretKey", "sslCert", "sslKey"} <= names
    assert RELOAD_TABLE["secret_key"][1] is Change.LIVE


@pytest.mark.parametrize("timeout", [0.1, 1.0, 3.0, 10.0, 3600.0])
def test_stop_plan_orders_and_bounds_the_phases(timeout: float) -> None:
    plan = stop_plan(timeout)
    assert 0 < plan.drain < plan.fronts < plan.total == timeout
    assert plan.total - plan.fronts <= 1.0
    assert plan.fronts - plan.drain <= 0.5


def test_stop_plan_default() -> None:
    plan = stop_plan(10.0)
    assert (plan.drain, plan.fronts, plan.total) == (8.5, 9.0, 10.0)
