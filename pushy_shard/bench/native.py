"""Builds the bench's C programs (the load generator, the floor server) once per source
version into a cache folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from pushy_shard.bench.errors import BenchError

HERE = Path(__file__).parent
CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-pthread"]
STALE_SECONDS = 24 * 3600


class NoCompiler(BenchError):
    """No C compiler on PATH (or in $CC): the bench's C programs cannot be built."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pushy-shard-bench"


def find_compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (path := shutil.which(name)):
            return path
    return None


def loadclient() -> Path:
    """The compiled load generator (loadclient.c)."""
    return build("loadclient")


def floorserver() -> Path:
    """The compiled reference floor server (floorserver.c)."""
    return build("floorserver")


def build(name: str) -> Path:
    """The path of program `name` (`name`.c beside this file), compiled if its source is
    new."""
    source_path = HERE / f"{name}.c"
    source = source_path.read_bytes() + (HERE / "shared.h").read_bytes()  # what it includes
    digest = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:16]
    exe = cache_dir() / f"{name}-{digest}"
    if exe.exists():
        return exe
    compiler = find_compiler()
    if compiler is None:
        raise NoCompiler(f"no C compiler found (tried $CC, cc, gcc, clang): {source_path.name} "
                         "must be compiled; install gcc")
    exe.parent.mkdir(parents=True, exist_ok=True)
    partial = exe.with_name(f"{exe.name}.{os.getpid()}.tmp")
    done = subprocess.run([compiler, *CFLAGS, "-o", str(partial), str(source_path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BenchError(f"compiling {source_path} failed:\n{done.stderr}")
    os.replace(partial, exe)
    stale = time.time() - STALE_SECONDS
    for old in exe.parent.glob(f"{name}-*"):
        # builds of earlier sources; a recent one may still be running in another bench
        try:
            if old != exe and old.stat().st_mtime < stale:
                old.unlink()
        except OSError:
            pass  # another bench removed it first
    return exe
