"""STYLE.md "Pure core": nothing under pushy_shard.core pulls in asyncio, aiohttp or zmq.

Each module is imported in a fresh interpreter, so what another test imported cannot hide
(or fake) a dependency.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import pushy_shard.core

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("asyncio", "aiohttp", "zmq")
CORE_MODULES = ["pushy_shard.core"] + sorted(
    info.name for info in pkgutil.walk_packages(pushy_shard.core.__path__, "pushy_shard.core.")
)

PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {forbidden})))
"""


def loaded_forbidden(*modules: str) -> list[str]:
    code = PROBE.format(forbidden=set(FORBIDDEN))
    result = subprocess.run(
        [sys.executable, "-c", code, *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_the_core_modules_are_found() -> None:
    expected = {"auth", "channels", "config", "protocol", "routing", "session", "sockjs",
                "trigger"}
    assert {f"pushy_shard.core.{name}" for name in expected} <= set(CORE_MODULES)


def test_the_probe_sees_a_forbidden_import() -> None:
    assert "asyncio" in loaded_forbidden("asyncio")


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_no_io_framework(module: str) -> None:
    assert loaded_forbidden(module) == []


def test_all_core_modules_together() -> None:
    assert loaded_forbidden(*CORE_MODULES) == []
