"""pushy_shard/logs: one line per record, naming the process, plain or JSON."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from pushy_shard import logs


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
