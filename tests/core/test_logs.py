"""pushy_shard/logs: one line per record, naming the process, plain or JSON."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from pushy_shard import logs
from pushy_shard.core.ratelimit import BreachLog


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _emit(fmt: str, role: str, index: int | None, level: str = "info") -> list[str]:
    stream = io.StringIO()
    logs.setup(role, index, level=level, fmt=fmt, stream=stream)
    log = logging.getLogger("pushy_shard.test")
    log.debug("hidden unless debug")
    log.warning("limit %s breached", "frame")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("handler failed")
    return stream.getvalue().splitlines()


def test_plain_lines_carry_time_role_and_level(restore_root: None) -> None:
    lines = _emit("plain", "front", 1)
    assert len(lines) == 2  # debug filtered out; the traceback folded into its line
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z front-1 WARNING "
                        r"limit frame breached", lines[0])
    assert " front-1 ERROR handler failed | Traceback" in lines[1]
    assert "ValueError: boom" in lines[1]


def test_json_lines_parse_and_carry_the_role(restore_root: None) -> None:
    lines = _emit("json", "shard", 2, level="debug")
    records = [json.loads(line) for line in lines]
    assert [r["level"] for r in records] == ["debug", "warning", "error"]
    first = records[1]
    assert first["role"] == "shard" and first["index"] == 2
    assert first["msg"] == "limit frame breached"
    assert first["logger"] == "pushy_shard.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert "ValueError: boom" in records[2]["exc"]


def test_the_supervisor_has_no_index(restore_root: None) -> None:
    record = json.loads(_emit("json", "supervisor", None)[0])
    assert record["role"] == "supervisor" and "index" not in record
    assert _emit("plain", "supervisor", None)[0].split()[1] == "supervisor"


# -- aiohttp's records of a client's mistake (logs.ClientNoise) --------------------------------

GARBAGE = "Invalid method encountered:\n\n  b'\\x16\\x03\\x01" + "\\xab" * 1000 + "'\n    ^"


def _aiohttp_error(exc: BaseException, peer: str = "1.2.3.4") -> None:
    """What aiohttp's web_protocol.handle_error does: ERROR with the traceback."""
    try:
        raise exc
    except BaseException as raised:
        logging.getLogger("aiohttp.server").exception(
            "Error handling request from %s", peer, exc_info=raised)


def _client_reset() -> BaseException:
    from aiohttp.client_exceptions import ClientConnectionResetError

    return ClientConnectionResetError("Cannot write to closing transport")


def _bad_method() -> BaseException:
    from aiohttp.http_exceptions import BadHttpMethod

    exc = BadHttpMethod()
    exc.message = GARBAGE  # as the C parser words it: reason, then the raw bytes
    return exc


def test_a_refused_request_is_one_short_info_line(restore_root: None) -> None:
    stream = io.StringIO()
    logs.setup("front", 0, level="info", stream=stream)
    noise = logs.CLIENT_NOISE
    before = noise.counts["malformed"]
    noise._throttle = BreachLog()  # a fresh second for this test
    _aiohttp_error(_bad_method())
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"\S+ front-0 INFO bad HTTP request from 1\.2\.3\.4: BadHttpMethod: "
                        r"Invalid method encountered b'\\x16\\x03\\x01(\\xab)+\.\.\.", lines[0])
    assert "Traceback" not in lines[0] and len(lines[0]) < 250
    assert noise.counts["malformed"] == before + 1


def test_client_noise_is_throttled_and_counted() -> None:
    now = [0.0]
    noise = logs.ClientNoise(interval=1.0, clock=lambda: now[0])
    logger = logging.getLogger("pushy_shard.test.noise")
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.PlainFormatter("front", 1))
    logger.addHandler(handler)
    logger.addFilter(noise)
    logger.setLevel(logging.DEBUG)
    root_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        for _ in range(5):
            try:
                raise _bad_method()
            except Exception as exc:
                logger.error("Error handling request from %s", "5.6.7.8", exc_info=exc)
        now[0] = 1.5
        try:
            raise _bad_method()
        except Exception as exc:
            logger.error("Error handling request from %s", "5.6.7.8", exc_info=exc)
        try:
            raise _client_reset()
        except Exception as exc:
            logger.error("Unhandled exception", exc_info=exc)
    finally:
        logging.getLogger().setLevel(root_level)
        logger.removeHandler(handler)
        logger.removeFilter(noise)
    lines = stream.getvalue().splitlines()
    assert noise.counts == {"malformed": 6, "dropped": 1}
    assert len(lines) == 3, lines
    assert "(4 more since the last line)" in lines[1]
    assert " front-1 DEBUG client ? left before its answer was written: " \
           "ClientConnectionResetError: Cannot write to closing transport" in lines[2]


def test_a_dropped_client_is_quiet_at_info(restore_root: None) -> None:
    stream = io.StringIO()
    logs.setup("front", 0, level="info", stream=stream)
    before = logs.CLIENT_NOISE.counts["dropped"]
    _aiohttp_error(_client_reset())
    assert stream.getvalue() == ""
    assert logs.CLIENT_NOISE.counts["dropped"] == before + 1


def test_our_own_handler_errors_keep_their_traceback(restore_root: None) -> None:
    stream = io.StringIO()
    logs.setup("front", 0, level="info", stream=stream)
    _aiohttp_error(RuntimeError("a bug of ours"))
    logging.getLogger("aiohttp.server").debug("Ignored premature client disconnection")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert " front-0 ERROR Error handling request from 1.2.3.4 | Traceback" in lines[0]
    assert "RuntimeError: a bug of ours" in lines[0]
