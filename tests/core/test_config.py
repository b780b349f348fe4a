"""config.json validation (PROTOCOL.md 6): the original's sample, units, overrides, clear errors."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushy_shard.core.config import (
    DEMO_SECRET,
    Config,
    LinkEndpoints,
    LinkOptions,
    SockJSOptions,
    Timeouts,
    link_endpoints,
    load_config,
    parse_config,
    runtime_directory,
    shard_endpoint,
)
from pushy_shard.core.config_table import Int, key, read, text
from pushy_shard.errors import ConfigError

SECRET = "s3cret-value-never-printed"

# PROTOCOL.md 6: the original's published sample, which deployments copy verbatim.
ORIGINAL_SAMPLE = {
    "port": 8234,
    "secretKey": "mySuperSecretKey",
    "ssl": False,
    "sockjs": {
        "prefix": "/pushy/socket",
        "sockjs_url": "http://cdn.sockjs.org/sockjs-0.3.min.js",
        "websocket": True,
        "response_limit": "128K",
        "jsessionid": False,
        "heartbeat_delay": 25,
        "disconnect_delay": 5,
    },
}


def parse(raw: object, env: dict[str, str] | None = None, cpu_count: int = 4) -> Config:
    return parse_config(raw, env=env or {}, cpu_count=cpu_count)


def with_secret(**keys: Any) -> dict[str, Any]:
    return {"secretKey": SECRET, **keys}


def error(raw: object, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(raw, env)
    err = info.value
    assert "\n" not in str(err)
    assert SECRET not in str(err)
    return err


# -- 6: the original sample -------------------------------------------------------------------


def test_original_sample_loads_unchanged_with_its_meaning() -> None:
    config = parse(ORIGINAL_SAMPLE)
    assert config.port == 8234
    assert config.secret_key == "mySuperSecretKey"
    assert config.ssl is False
    assert config.sockjs == SockJSOptions(
        prefix="/pushy/socket",
        sockjs_url="http://cdn.sockjs.org/sockjs-0.3.min.js",
        websocket=True,
        response_limit=131072,  # bytes
        jsessionid=False,
        heartbeat_delay=25.0,  # seconds, not the original's accidental milliseconds
        disconnect_delay=5.0,
    )
    assert config.demo_secret is False


def test_original_sample_loads_from_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(ORIGINAL_SAMPLE, indent=2), encoding="utf-8")
    assert load_config(str(path), env={}).sockjs.response_limit == 128 * 1024


def test_defaults() -> None:
    config = parse({"secretKey": DEMO_SECRET}, cpu_count=6)
    assert config == Config(secret_key=DEMO_SECRET, workers=6)
    assert (config.port, config.host, config.fronts, config.demo, config.log_level) == (
        8123, "0.0.0.0", 1, True, "info",
    )
    assert (config.ssl, config.ssl_cert, config.ssl_key) == (False, None, None)
    assert config.sockjs == SockJSOptions()
    assert config.sockjs.response_limit == 131072
    assert config.link == LinkOptions(transport="ipc", directory=None, tcp_port=None)
    assert dict(config.commands) == {}
    assert config.demo_secret is True


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (0, 1), (-3, 1), (12, 12), (1000, 256)])
def test_workers_default_to_cpu_count_within_bounds(cpus: int, workers: int) -> None:
    assert parse(with_secret(), cpu_count=cpus).workers == workers


def test_config_is_immutable_and_never_shows_the_secret() -> None:
    config = parse(with_secret(commands={"chat": "app.chat:handle"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.commands["x"] = "a:b"  # type: ignore[index]
    assert SECRET not in repr(config)
    assert hash(config) == hash(parse(with_secret(commands={"chat": "app.chat:handle"})))


def test_full_config() -> None:
    config = parse(with_secret(
        port=443, host="127.0.0.1", ssl=True, sslCert="/c.pem", sslKey="/k.pem", workers=8,
        fronts=2, demo=False, log_level="WARNING",
        link={"transport": "tcp", "directory": "/run/p", "tcp_port": 9000},
        sockjs={"prefix": "/rt/", "heartbeat_delay": 0.5, "disconnect_delay": 3600},
    ))
    assert (config.port, config.host, config.workers, config.fronts) == (443, "127.0.0.1", 8, 2)
    assert (config.ssl, config.ssl_cert, config.ssl_key) == (True, "/c.pem", "/k.pem")
    assert (config.demo, config.log_level) == (False, "warning")
    assert config.link == LinkOptions("tcp", "/run/p", 9000)
    assert config.sockjs.prefix == "/rt"
    assert (config.sockjs.heartbeat_delay, config.sockjs.disconnect_delay) == (0.5, 3600.0)


# -- types, names, unknown keys ---------------------------------------------------------------


WRONG_TYPES = [
    ("port", "8234", "port"),
    ("port", 8234.0, "port"),
    ("port", None, "port"),
    ("host", 1, "host"),
    ("host", "", "host"),
    ("secretKey", 123, "secretKey"),
    ("ssl", "false", "ssl"),
    ("ssl", 0, "ssl"),
    ("sslCert", 1, "sslCert"),
    ("sslKey", [], "sslKey"),
    ("workers", "4", "workers"),
    ("workers", 2.5, "workers"),
    ("fronts", {}, "fronts"),
    ("sockjs", [], "sockjs"),
    ("sockjs", "x", "sockjs"),
    ("commands", [], "commands"),
    ("link", "ipc", "link"),
    ("demo", "yes", "demo"),
    ("log_level", 1, "log_level"),
    ("log_level", "verbose", "log_level"),
    ("sockjs.prefix", 1, "sockjs.prefix"),
    ("sockjs.sockjs_url", False, "sockjs.sockjs_url"),
    ("sockjs.websocket", "true", "sockjs.websocket"),
    ("sockjs.response_limit", [128], "sockjs.response_limit"),
    ("sockjs.response_limit", 1.5, "sockjs.response_limit"),
    ("sockjs.jsessionid", None, "sockjs.jsessionid"),
    ("sockjs.heartbeat_delay", "25", "sockjs.heartbeat_delay"),
    ("sockjs.disconnect_delay", None, "sockjs.disconnect_delay"),
    ("link.transport", 1, "link.transport"),
    ("link.transport", "udp", "link.transport"),
    ("link.directory", 7, "link.directory"),
    ("link.tcp_port", "9000", "link.tcp_port"),
    ("commands.chat", 1, "commands.chat"),
]


def nested(dotted: str, value: object) -> dict[str, Any]:
    head, _, tail = dotted.partition(".")
    return with_secret(**{head: {tail: value} if tail else value})


@pytest.mark.parametrize(("key", "value", "named"), WRONG_TYPES)
def test_wrong_type_names_the_key(key: str, value: object, named: str) -> None:
    err = error(nested(key, value))
    assert err.key == named
    assert "expected" in err.message


@pytest.mark.parametrize(
    ("key", "value", "found"),
    [("port", "8234", "string"), ("ssl", 0, "integer"), ("sockjs", [], "array"),
     ("demo", None, "null"), ("workers", 2.5, "number"), ("sockjs.websocket", {}, "object")],
)
def test_wrong_type_says_what_was_found(key: str, value: object, found: str) -> None:
    assert error(nested(key, value)).message.endswith(f"found {found}")


@pytest.mark.parametrize(
    "key", ["port", "workers", "fronts", "sockjs.response_limit", "sockjs.heartbeat_delay",
            "link.tcp_port"],
)
@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_a_number(key: str, value: bool) -> None:
    assert error(nested(key, value)).key == key


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (with_secret(prot=1), "prot"),
        (with_secret(secret_key="x"), "secret_key"),
        (with_secret(sockjs={"heartbeat": 25}), "sockjs.heartbeat"),
        (with_secret(link={"port": 1}), "link.port"),
    ],
)
def test_unknown_key_is_named_with_the_known_ones(raw: dict[str, Any], named: str) -> None:
    err = error(raw)
    assert err.key == named
    assert err.message.startswith("unknown key; known keys are: ")


def test_comment_keys_are_ignored_everywhere() -> None:
    config = parse(with_secret(**{
        "//": "top-level comment",
        "// port": "the public port",
        "sockjs": {"// prefix": "where SockJS lives", "prefix": "/s"},
        "link": {"//": "ipc by default"},
        "commands": {"//": "name -> module:callable"},
    }))
    assert config.sockjs.prefix == "/s"
    assert dict(config.commands) == {}


@pytest.mark.parametrize("raw", [None, [], "config", 1, True, [ORIGINAL_SAMPLE]])
def test_config_must_be_an_object(raw: object) -> None:
    assert error(raw).key == "config"


@pytest.mark.parametrize(
    ("key", "value"),
    [("port", 0), ("port", 65536), ("port", -1), ("workers", 0), ("workers", 257),
     ("fronts", 0), ("fronts", 257), ("link.tcp_port", 0), ("link.tcp_port", 70000)],
)
def test_integers_out_of_range(key: str, value: int) -> None:
    err = error(nested(key, value))
    assert err.key == key
    assert str(value) in err.message


# -- the secret -------------------------------------------------------------------------------


def test_missing_secret() -> None:
    err = error({"port": 8234})
    assert err.key == "secretKey"
    assert "is required" in err.message


@pytest.mark.parametrize("secret", ["", "   "])
def test_empty_secret(secret: str) -> None:
    assert error({"secretKey": secret}).key == "secretKey"


def test_errors_never_print_the_secret() -> None:
    err = error({"secretKey": [SECRET]})
    assert err.key == "secretKey"
    assert SECRET not in str(err)


# -- environment ------------------------------------------------------------------------------


def test_port_from_environment_overrides_config() -> None:
    assert parse(ORIGINAL_SAMPLE, {"PORT": "5000"}).port == 5000
    assert parse(ORIGINAL_SAMPLE, {"PORT": " 5000 "}).port == 5000
    assert parse(ORIGINAL_SAMPLE, {"PORT": ""}).port == 8234
    assert parse(ORIGINAL_SAMPLE, {"OTHER": "1"}).port == 8234


@pytest.mark.parametrize("value", ["http", "0", "65536", "-80", "80.0", "8_0", "+80", "0x50"])
def test_invalid_port_from_environment(value: str) -> None:
    err = error(ORIGINAL_SAMPLE, {"PORT": value})
    assert err.key == "PORT"
    assert "expected" in err.message


def test_workers_and_fronts_from_environment() -> None:
    config = parse(with_secret(workers=2, fronts=2), {"PUSHY_WORKERS": "16", "PUSHY_FRONTS": "3"})
    assert (config.workers, config.fronts) == (16, 3)
    config = parse(with_secret(workers=2), {"PUSHY_WORKERS": "", "PUSHY_FRONTS": ""})
    assert (config.workers, config.fronts) == (2, 1)


@pytest.mark.parametrize("var", ["PUSHY_WORKERS", "PUSHY_FRONTS"])
@pytest.mark.parametrize("value", ["0", "257", "many", "2.0"])
def test_invalid_workers_or_fronts_from_environment(var: str, value: str) -> None:
    assert error(with_secret(), {var: value}).key == var


# -- ssl --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "missing"),
    [({}, "sslCert"), ({"sslKey": "/k.pem"}, "sslCert"), ({"sslCert": "/c.pem"}, "sslKey")],
)
def test_ssl_requires_cert_and_key(keys: dict[str, str], missing: str) -> None:
    err = error(with_secret(ssl=True, **keys))
    assert err.key == missing
    assert "required" in err.message


def test_cert_and_key_without_ssl_are_kept() -> None:
    config = parse(with_secret(sslCert="/c.pem", sslKey="/k.pem"))
    assert (config.ssl, config.ssl_cert, config.ssl_key) == (False, "/c.pem", "/k.pem")


# -- sockjs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("128K", 131072),
        ("128k", 131072),
        ("1M", 1048576),
        ("1.5M", 1572864),
        ("64kb", 65536),
        ("64 KB", 65536),
        ("512", 512),
        ("512B", 512),
        ("1G", 1024**3),
        (" 2K ", 2048),
        (1000, 1000),
        (1, 1),
    ],
)
def test_response_limit_units(value: object, size: int) -> None:
    assert parse(with_secret(sockjs={"response_limit": value})).sockjs.response_limit == size


@pytest.mark.parametrize(
    "value", ["12X", "-1", 0, -1, "0", "0K", "", "K", "1.5", "2G", 1024**3 + 1, "1e3", "1KK",
              "1 024", "9" * 5000],
)
def test_response_limit_errors(value: object) -> None:
    err = error(with_secret(sockjs={"response_limit": value}))
    assert err.key == "sockjs.response_limit"
    assert len(err.message) < 200


@pytest.mark.parametrize(
    ("key", "value"),
    [("heartbeat_delay", 0), ("heartbeat_delay", -1), ("disconnect_delay", 3601),
     ("heartbeat_delay", float("nan")), ("disconnect_delay", float("inf")),
     ("heartbeat_delay", 10**400)],
)
def test_delays_out_of_range(key: str, value: float) -> None:
    assert error(with_secret(sockjs={key: value})).key == f"sockjs.{key}"


def test_timeouts() -> None:
    assert parse(with_secret()).timeouts == Timeouts(trigger=5, command=10, front_silence=5,
                                                     shard_recovery=2)
    got = parse(with_secret(timeouts={"trigger": 30, "front_silence": 2, "//": "x"})).timeouts
    assert (got.trigger, got.command, got.front_silence) == (30.0, 10.0, 2.0)


@pytest.mark.parametrize(
    ("timeouts", "named", "says"),
    [({"trigger": 0}, "timeouts.trigger", "above 0"),
     ({"command": "10"}, "timeouts.command", "found string"),
     ({"front_silence": 1.5}, "timeouts.front_silence", "PING once a second"),
     ({"shard_recovery": True}, "timeouts.shard_recovery", "found boolean"),
     ({"triger": 1}, "timeouts.triger", "known keys are: trigger, command")],
)
def test_timeouts_rejected(timeouts: dict[str, Any], named: str, says: str) -> None:
    err = error(with_secret(timeouts=timeouts))
    assert err.key == named and says in err.message, err


@pytest.mark.parametrize(
    ("value", "prefix"),
    [("/pushy/socket", "/pushy/socket"), ("/a/", "/a"), ("/a/b-c_d", "/a/b-c_d")],
)
def test_prefix_accepted(value: str, prefix: str) -> None:
    assert parse(with_secret(sockjs={"prefix": value})).sockjs.prefix == prefix


@pytest.mark.parametrize(
    "value", ["", "/", "//", "pushy", "/a b", "/a//b", "/a//", "/a?x", "/a\t", "/pushy/channel",
              "/pushy/channel/x"],
)
def test_prefix_rejected(value: str) -> None:
    assert error(with_secret(sockjs={"prefix": value})).key == "sockjs.prefix"


# -- commands ---------------------------------------------------------------------------------


def test_commands_are_stored_lower_cased() -> None:
    config = parse(with_secret(commands={"Chat": "app.chat:on_chat", "move": "game:Move"}))
    assert dict(config.commands) == {"chat": "app.chat:on_chat", "move": "game:Move"}


@pytest.mark.parametrize(
    ("commands", "named"),
    [
        ({"chat": "app.chat.on_chat"}, "commands.chat"),
        ({"chat": "app:chat:on_chat"}, "commands.chat"),
        ({"chat": ":on_chat"}, "commands.chat"),
        ({"chat": "app:"}, "commands.chat"),
        ({"chat": "app..x:f"}, "commands.chat"),
        ({"chat": "app x:f"}, "commands.chat"),
        ({"chat": "1app:f"}, "commands.chat"),
        ({"chat": "app.class:f"}, "commands.chat"),
        ({"chat": ""}, "commands.chat"),
        ({"chat": None}, "commands.chat"),
        ({"": "app:f"}, "commands."),
        ({" ": "app:f"}, "commands. "),
        ({"chat": "a:f", "CHAT": "b:g"}, "commands.CHAT"),
    ],
)
def test_commands_rejected(commands: dict[str, Any], named: str) -> None:
    assert error(with_secret(commands=commands)).key == named


# -- link and endpoints -----------------------------------------------------------------------


def test_runtime_directory() -> None:
    config = parse(with_secret(port=8234))
    assert runtime_directory(config, {"XDG_RUNTIME_DIR": "/run/user/1000"}) == (
        "/run/user/1000/pushy-shard-8234"
    )
    assert runtime_directory(config, {"XDG_RUNTIME_DIR": ""}) == (
        f"{tempfile.gettempdir()}/pushy-shard-8234"
    )
    config = parse(with_secret(link={"directory": "/srv/pushy"}))
    assert runtime_directory(config, {"XDG_RUNTIME_DIR": "/run/user/1000"}) == "/srv/pushy"


def test_ipc_endpoints() -> None:
    config = parse(with_secret(workers=3))
    assert [shard_endpoint(config, j, "/run/p") for j in range(3)] == [
        "ipc:///run/p/shard-0.sock", "ipc:///run/p/shard-1.sock", "ipc:///run/p/shard-2.sock",
    ]


def test_tcp_endpoints() -> None:
    config = parse(with_secret(port=8234, workers=2, link={"transport": "tcp"}))
    assert [shard_endpoint(config, j, "/unused") for j in range(2)] == [
        "tcp://127.0.0.1:9234", "tcp://127.0.0.1:9235",
    ]
    config = parse(with_secret(workers=2, link={"transport": "tcp", "tcp_port": 7000}))
    assert shard_endpoint(config, 1, "/unused") == "tcp://127.0.0.1:7001"
    # the derived range follows a PORT override
    config = parse(with_secret(port=8234, link={"transport": "tcp"}), {"PORT": "5000"})
    assert shard_endpoint(config, 0, "/unused") == "tcp://127.0.0.1:6000"


@pytest.mark.parametrize("index", [-1, 2])
def test_endpoint_index_out_of_range(index: int) -> None:
    with pytest.raises(ValueError):
        shard_endpoint(parse(with_secret(workers=2)), index, "/run/p")


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (with_secret(port=65000, workers=4, link={"transport": "tcp"}), "port"),
        (with_secret(workers=4, link={"transport": "tcp", "tcp_port": 65534}), "link.tcp_port"),
        (with_secret(port=8001, workers=4, link={"transport": "tcp", "tcp_port": 8000}),
         "link.tcp_port"),
    ],
)
def test_tcp_link_ports_must_fit_and_miss_the_public_port(raw: dict[str, Any], named: str) -> None:
    assert error(raw).key == named


def tcp(**keys: Any) -> dict[str, Any]:
    return with_secret(link={"transport": "tcp", **keys.pop("link", {})}, **keys)


@pytest.mark.parametrize(
    ("raw", "env", "named", "message"),
    [
        (tcp(workers=4, link={"tcp_port": 65534}), {}, "link.tcp_port",
         "shard link ports 65534..65537 go past 65535"),
        (tcp(port=8001, workers=4, link={"tcp_port": 8000}), {}, "link.tcp_port",
         "shard link ports 8000..8003 include port 8001"),
        # the relays come right after the shards: one port per front
        (tcp(workers=2, fronts=3, link={"tcp_port": 65532}), {}, "link.tcp_port",
         "front relay ports 65534..65536 go past 65535"),
        (tcp(port=64534, workers=1, fronts=2), {}, "port",
         "front relay ports 65535..65536 go past 65535"),
        (tcp(port=8003, workers=2, fronts=2, link={"tcp_port": 8000}), {}, "link.tcp_port",
         "front relay ports 8002..8003 include port 8003"),
        # checked on the values after the environment overrides
        (tcp(workers=2, link={"tcp_port": 65530}), {"PUSHY_FRONTS": "5"}, "link.tcp_port",
         "front relay ports 65532..65536 go past 65535"),
        (tcp(workers=2, link={"tcp_port": 9000}), {"PORT": "9002"}, "link.tcp_port",
         "front relay ports 9002..9002 include port 9002"),
    ],
)
def test_tcp_link_and_relay_ranges_are_checked_at_parse_time(
    raw: dict[str, Any], env: dict[str, str], named: str, message: str
) -> None:
    err = error(raw, env)
    assert (err.key, err.message) == (named, message)


def test_tcp_ranges_may_end_at_the_last_port() -> None:
    config = parse(tcp(workers=2, fronts=2, link={"tcp_port": 65530}))
    assert link_endpoints(config, "/unused").hooks_stats == ("127.0.0.1", 65535)
    assert "go past 65535" in error(tcp(workers=2, fronts=2, link={"tcp_port": 65531})).message
    # with ipc the tcp port is unused, so its range is not checked
    parse(with_secret(workers=4, fronts=4, link={"tcp_port": 65535}))


def test_link_endpoints_ipc() -> None:
    config = parse(with_secret(workers=2, fronts=3))
    assert link_endpoints(config, "/run/p") == LinkEndpoints(
        shards=("ipc:///run/p/shard-0.sock", "ipc:///run/p/shard-1.sock"),
        relays=("/run/p/front-0.sock", "/run/p/front-1.sock", "/run/p/front-2.sock"),
        hooks="ipc:///run/p/hooks.sock", hooks_stats="/run/p/hooks-stats.sock",
    )


def test_link_endpoints_tcp() -> None:
    config = parse(tcp(port=8234, workers=3, fronts=2))
    assert link_endpoints(config, "/unused") == LinkEndpoints(
        shards=("tcp://127.0.0.1:9234", "tcp://127.0.0.1:9235", "tcp://127.0.0.1:9236"),
        relays=(("127.0.0.1", 9237), ("127.0.0.1", 9238)),
        hooks="tcp://127.0.0.1:9239", hooks_stats=("127.0.0.1", 9240),
    )
    config = parse(tcp(workers=1, fronts=2, link={"tcp_port": 7000}))
    assert link_endpoints(config, "/unused") == LinkEndpoints(
        shards=("tcp://127.0.0.1:7000",), relays=(("127.0.0.1", 7001), ("127.0.0.1", 7002)),
        hooks="tcp://127.0.0.1:7003", hooks_stats=("127.0.0.1", 7004),
    )


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_shard_endpoint_is_one_of_the_link_endpoints(transport: str) -> None:
    config = parse(with_secret(workers=3, link={"transport": transport}))
    endpoints = link_endpoints(config, "/run/p")
    assert [shard_endpoint(config, j, "/run/p") for j in range(3)] == list(endpoints.shards)


@settings(max_examples=300, deadline=None)
@given(port=st.integers(1, 65535), tcp_port=st.none() | st.integers(1, 65535),
       workers=st.integers(1, 256), fronts=st.integers(1, 256))
def test_accepted_tcp_links_use_distinct_valid_ports(
    port: int, tcp_port: int | None, workers: int, fronts: int
) -> None:
    raw = tcp(port=port, workers=workers, fronts=fronts, link={"tcp_port": tcp_port})
    try:
        config = parse(raw)
    except ConfigError as err:
        assert err.key == ("port" if tcp_port is None else "link.tcp_port")
        return
    endpoints = link_endpoints(config, "/unused")
    ports = [int(e.rpartition(":")[2]) for e in endpoints.shards]
    ports += [relay[1] for relay in endpoints.relays if isinstance(relay, tuple)]
    ports.append(int(endpoints.hooks.rpartition(":")[2]))
    assert isinstance(endpoints.hooks_stats, tuple)
    ports.append(endpoints.hooks_stats[1])
    assert len(ports) == len(set(ports)) == workers + fronts + 2
    assert port not in ports and all(1 <= p <= 65535 for p in ports)


def test_unknown_key_lists_the_keys_in_config_json_order() -> None:
    assert error(with_secret(bogus=1)).message == (
        "unknown key; known keys are: port, host, secretKey, ssl, sslCert, sslKey, workers, "
        "fronts, sockjs, commands, link, demo, log_level, log_format, limits, allowed_origins, "
        "trusted_proxies, shutdown_timeout, timeouts, apps, pusher_path_prefix, pushy_app, "
        "webhook_delivery, cluster"
    )
    assert error(with_secret(link={"port": 1})).message == (
        "unknown key; known keys are: transport, directory, tcp_port"
    )


def test_environment_override_messages() -> None:
    err = error(with_secret(), {"PORT": "http"})
    assert err.message == "expected an integer from 1 to 65535, found 'http'"
    err = error(with_secret(), {"PUSHY_WORKERS": "300"})
    assert err.message == "expected an integer from 1 to 256, found 300"


def test_null_link_fields_mean_default() -> None:
    config = parse(with_secret(link={"directory": None, "tcp_port": None}))
    assert config.link == LinkOptions()


# -- load_config ------------------------------------------------------------------------------


def test_load_config_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "port": 8234,\n  "secretKey": "x",,\n}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert info.value.key == str(path)
    assert info.value.message.startswith("invalid JSON at line 3 column ")


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.json")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.key == path


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'{"secretKey": "\xff"}')
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert info.value.key == str(path)


def test_load_config_accepts_bom_and_applies_env(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ORIGINAL_SAMPLE).encode())
    assert load_config(str(path), env={"PORT": "9999"}).port == 9999


def test_load_config_validates(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"secretKey": "x", "port": "80"}', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert info.value.key == "port"


# -- property: nothing but ConfigError escapes -------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=20,
)
known_keys = st.sampled_from([
    "port", "host", "secretKey", "ssl", "sslCert", "sslKey", "workers", "fronts", "sockjs",
    "commands", "link", "demo", "log_level", "//c", "prefix", "sockjs_url", "websocket",
    "response_limit", "jsessionid", "heartbeat_delay", "disconnect_delay", "transport",
    "directory", "tcp_port",
])
shaped = st.recursive(
    json_values,
    lambda inner: st.dictionaries(known_keys | st.text(max_size=6), inner, max_size=6),
    max_leaves=25,
)
envs = st.dictionaries(
    st.sampled_from(["PORT", "PUSHY_WORKERS", "PUSHY_FRONTS", "XDG_RUNTIME_DIR"]),
    st.text(max_size=8) | st.integers(-5, 70000).map(str),
)


@settings(max_examples=400, deadline=None)
@given(raw=shaped, env=envs, cpu_count=st.integers(-2, 300), add_secret=st.booleans())
def test_arbitrary_input_only_raises_config_error(
    raw: object, env: dict[str, str], cpu_count: int, add_secret: bool
) -> None:
    if add_secret and isinstance(raw, dict):
        raw = {**raw, "secretKey": SECRET}
    try:
        config = parse_config(raw, env=env, cpu_count=cpu_count)
    except ConfigError as err:
        assert "\n" not in str(err)
        assert SECRET not in str(err)
    else:
        assert 1 <= config.port <= 65535
        assert 1 <= config.workers <= 256
        assert 1 <= config.sockjs.response_limit <= 1024**3
        for j in range(config.workers):
            shard_endpoint(config, j, runtime_directory(config, env))
        assert len(link_endpoints(config, "/d").relays) == config.fronts


@settings(max_examples=200, deadline=None)
@given(sockjs=st.dictionaries(known_keys, json_values, max_size=7))
def test_arbitrary_sockjs_section_only_raises_config_error(sockjs: dict[str, Any]) -> None:
    try:
        parse(with_secret(sockjs=sockjs))
    except ConfigError as err:
        assert err.key.startswith("sockjs")


# -- the table machinery (core.config_table) --------------------------------------------------


def test_a_setting_is_one_field_of_its_table() -> None:
    @dataclasses.dataclass(frozen=True)
    class Section:
        size: int = key(10, Int(1, 99), env="SIZE")
        label: str = key("x", text, name="labelText")

    assert read(Section, "section", {"//": "c", "labelText": "y"}, {}) == Section(10, "y")
    assert read(Section, "section", {"size": 5}, {"SIZE": "7"}) == Section(7, "x")
    err = pytest.raises(ConfigError, read, Section, "section", {"label": "y"}, {}).value
    assert (err.key, err.message) == (
        "section.label", "unknown key; known keys are: size, labelText")


# -- Pusher apps (PUSHER.md 1) ------------------------------------------------------------------


def app(**fields: Any) -> dict[str, Any]:
    return {"id": "1", "key": "app-key", "secret": "app-secret", **fields}


def test_apps_with_their_defaults() -> None:
    (only,) = parse(with_secret(apps=[app()])).apps
    assert (only.id, only.key, only.secret) == ("1", "app-key", "app-secret")
    assert (only.client_events, only.user_authentication, only.max_connections,
            only.max_presence_members, only.activity_timeout, only.subscription_count,
            only.webhooks) == (False, False, None, 100, 120, False, ())
    assert "app-secret" not in repr(only)


def test_an_app_with_every_setting() -> None:
    hook = {"url": "https://example.com/hooks", "events": ["channel_occupied", "member_added"],
            "channel_prefix": "presence-", "headers": {"X-Token": "t"}}
    (only,) = parse(with_secret(apps=[app(client_events=True, user_authentication=True,
                                          max_connections=50, max_presence_members=2,
                                          activity_timeout=30, subscription_count=True,
                                          webhooks=[hook])])).apps
    assert only.max_connections == 50 and only.activity_timeout == 30
    (webhook,) = only.webhooks
    assert webhook.events == ("channel_occupied", "member_added")
    assert webhook.channel_prefix == "presence-" and webhook.headers == (("X-Token", "t"),)


@pytest.mark.parametrize(("apps", "named", "says"), [
    ("x", "apps", "expected an array of app objects"),
    ([app(id="1"), app(id="1", key="other")], "apps[1].id", "duplicate app id"),
    ([app(), app(id="2")], "apps[1].key", "duplicate app key"),
    ([{"id": "1", "key": "k"}], "apps[0].secret", "is required"),
    ([app(key="has space")], "apps[0].key", "expected 1-100 of"),
    ([app(activity_timeout=0)], "apps[0].activity_timeout", "from 1 to 3600"),
    ([app(max_connections=0)], "apps[0].max_connections", "from 1 to"),
    ([app(client_events="yes")], "apps[0].client_events", "true or false"),
    ([app(webhooks=[{"url": "ftp://x", "events": ["cache_miss"]}])],
     "apps[0].webhooks[0].url", "http:// or https://"),
    ([app(webhooks=[{"url": "http://x", "events": ["nope"]}])],
     "apps[0].webhooks[0].events", "unknown: 'nope'"),
    ([app(webhooks=[{"url": "http://x", "events": []}])],
     "apps[0].webhooks[0].events", "non-empty"),
    ([app(bogus=1)], "apps[0].bogus", "unknown key"),
])
def test_bad_apps_are_named(apps: object, named: str, says: str) -> None:
    err = error(with_secret(apps=apps))
    assert err.key == named and says in err.message, err
    assert "app-secret" not in str(err)


def test_pusher_path_prefix() -> None:
    assert parse(with_secret()).pusher_path_prefix == ""
    assert parse(with_secret(pusher_path_prefix="/realtime/")).pusher_path_prefix == "/realtime"
    assert error(with_secret(pusher_path_prefix="realtime")).key == "pusher_path_prefix"


# -- cluster (SCALEOUT.md) ---------------------------------------------------------------------


def test_cluster_is_off_by_default_and_read_with_its_defaults() -> None:
    assert parse(with_secret()).cluster is None
    assert parse(with_secret(cluster=None)).cluster is None
    cluster = parse(with_secret(cluster={"redis": "redis://10.0.0.5:6379/2"})).cluster
    assert cluster is not None
    assert (cluster.redis, cluster.node, cluster.lease_seconds) == (
        "redis://10.0.0.5:6379/2", None, 15.0)
    cluster = parse(with_secret(cluster={"redis": "unix:///run/redis.sock", "node": "host-a:8123",
                                         "lease_seconds": 5})).cluster
    assert cluster is not None and cluster.node == "host-a:8123"
    assert parse(with_secret(cluster={"redis": "rediss://:pw@r.example:6380"})).cluster


@pytest.mark.parametrize(("cluster", "path", "says"), [
    ({}, "cluster.redis", "is required"),
    ({"redis": "http://127.0.0.1:6379"}, "cluster.redis", "expected redis://"),
    ({"redis": "redis://a b"}, "cluster.redis", "expected redis://"),
    ({"redis": "redis://r", "node": "has space"}, "cluster.node", "expected 1-100"),
    ({"redis": "redis://r", "node": ""}, "cluster.node", ""),
    ({"redis": "redis://r", "lease_seconds": 0.5}, "cluster.lease_seconds", "at least 1"),
    ({"redis": "redis://r", "lease_seconds": "15"}, "cluster.lease_seconds", ""),
    ({"redis": "redis://r", "leases": 1}, "cluster.leases", "unknown key"),
    ("redis://r", "cluster", "an object"),
])
def test_cluster_refuses_bad_settings(cluster: object, path: str, says: str) -> None:
    err = error(with_secret(cluster=cluster))
    assert err.key == path and says in err.message
