"""One result per measured run, the readable table, and the JSON record."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


@dataclass
class Result:
    """What one scenario run measured. Rates are per second, latency in ms, memory in bytes."""

    scenario: str
    server: str
    params: dict[str, Any]
    ok: bool  # every subscriber got exactly what it should
    check: str  # "ok: ..." or "LOST: ..." with the counts
    delivered: int = 0
    expected: int = 0
    seconds: float = 0.0  # the timed span: first trigger sent -> last delivery received
    deliveries_per_s: float | None = None
    triggers_per_s: float | None = None
    offered_per_s: float | None = None  # (c): the fixed trigger rate asked for
    ops_per_s: float | None = None  # (e): joins + leaves per second
    latency_ms: dict[str, float] | None = None
    server_cpu_s: float | None = None
    cpu_us_per_delivery: float | None = None
    cpu_us_per_op: float | None = None  # per trigger, or per join/leave in (e)
    client_cpu_s: float | None = None  # the load generator's own CPU (is it the bottleneck?)
    client_deliveries_per_read: float | None = None  # how well the subscribers batch reads
    softirq_s: float | None = None  # machine irq+softirq CPU in the span (loopback TCP)
    memory: dict[str, float] | None = None
    connections_per_front: dict[str, int] | None = None
    notes: list[str] = field(default_factory=list)
    server_log_problems: list[str] = field(default_factory=list)


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(nofile: tuple[int, int], compiler: str | None) -> dict[str, Any]:
    packages = ("pushy-shard", "aiohttp", "pyzmq", "orjson", "uvloop", "matplotlib")
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _package_version(name) for name in packages},
        "open_files_limit": {"soft": nofile[0], "hard": nofile[1]},
        "compiler": compiler,
    }


def record(results: list[Result], info: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    return {
        "tool": "pushy-shard bench",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": argv,
        "machine": info,
        "all_ok": all(r.ok for r in results),
        "results": [asdict(r) for r in results],
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def load(path: Path) -> list[Result]:
    """The results of a JSON record written by `write_json`."""
    data = json.loads(path.read_text())
    return [Result(**item) for item in data["results"]]


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _params(result: Result) -> str:
    skip = {"server"}
    return " ".join(f"{k}={v}" for k, v in result.params.items() if k not in skip)


def _latency(result: Result, key: str) -> str:
    return _num(result.latency_ms[key], 2) if result.latency_ms else "-"


def _render(rows: list[list[str]]) -> str:
    """Rows of cells as aligned columns, the first row a header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table(results: list[Result]) -> str:
    """A plain-text table, one row per run."""
    header = ["scenario", "server", "params", "deliv/s", "trig/s", "ops/s", "p50 ms",
              "p99 ms", "p99.9 ms", "max ms", "CPU us/deliv", "RSS MiB", "KiB/conn", "check"]
    rows = [header]
    for r in results:
        mem = r.memory or {}
        rss = mem.get("rss_after", mem.get("rss"))
        rows.append([
            r.scenario, r.server, _params(r), _num(r.deliveries_per_s), _num(r.triggers_per_s),
            _num(r.ops_per_s), _latency(r, "p50"), _latency(r, "p99"), _latency(r, "p99.9"),
            _latency(r, "max"), _num(r.cpu_us_per_delivery, 1),
            _num(rss / MIB if rss is not None else None, 1),
            _num(mem["rss_per_conn"] / 1024 if "rss_per_conn" in mem else None, 1),
            "ok" if r.ok else "LOST",
        ])
    return _render(rows)


# What each scenario is judged by, as (label, value of a result)
_METRICS: dict[str, list[tuple[str, Any]]] = {
    "a": [("deliveries/s", lambda r: r.deliveries_per_s),
          ("CPU us/delivery", lambda r: r.cpu_us_per_delivery)],
    "b": [("triggers/s", lambda r: r.triggers_per_s),
          ("CPU us/delivery", lambda r: r.cpu_us_per_delivery)],
    "c": [("p50 ms", lambda r: (r.latency_ms or {}).get("p50")),
          ("p99 ms", lambda r: (r.latency_ms or {}).get("p99")),
          ("CPU us/delivery", lambda r: r.cpu_us_per_delivery)],
    "d": [("KiB/conn", lambda r: (r.memory or {}).get("rss_per_conn", 0) / 1024 or None)],
    "e": [("joins+leaves/s", lambda r: r.ops_per_s),
          ("CPU us/op", lambda r: r.cpu_us_per_op)],
}


def is_floor(result: Result) -> bool:
    return result.params.get("reference") == "floor"


def _same_run(ours: Result, other: Result, protocol: bool) -> bool:
    """The same scenario (and offered rate) as `ours`; the same protocol if `protocol`."""
    return (other.scenario == ours.scenario and other.offered_per_s == ours.offered_per_s
            and other.ok and (not protocol or other.params.get("protocol", "pushy")
                              == ours.params.get("protocol", "pushy")))


def ratios(results: list[Result], originals: list[Result]) -> str:
    """Ours / floor (the reference run of the same scenario and protocol) beside ours /
    original (a record of the original server: Pushy only, so every protocol of ours is set
    against it); "" when there is neither."""
    floors = [r for r in results if is_floor(r)]
    if not floors and not originals:
        return ""
    header = ["scenario", "protocol", "metric", "ours", "floor", "ours/floor", "original",
              "ours/original"]
    rows = [header]
    for ours in results:
        if is_floor(ours) or not ours.ok:
            continue
        floor = next((f for f in floors if _same_run(ours, f, True)), None)
        original = next((o for o in originals if _same_run(ours, o, False)), None)
        if floor is None and original is None:
            continue
        rate = f" @{ours.offered_per_s:g}/s" if ours.offered_per_s else ""
        for label, value in _METRICS.get(ours.scenario[:1], []):
            mine = value(ours)
            if mine is None:
                continue
            cells = [ours.scenario + rate, str(ours.params.get("protocol", "pushy")), label,
                     _num(mine, 1)]
            for other in (floor, original):
                theirs = value(other) if other is not None else None
                cells += [_num(theirs, 1), _num(mine / theirs, 2) if theirs else "-"]
            rows.append(cells)
    if len(rows) == 1:
        return ""
    return _render(rows)


def details(results: list[Result]) -> str:
    """What the table leaves out: the checks, memory, notes, server log problems."""
    out = []
    for r in results:
        out.append(f"[{r.scenario} {r.server} {_params(r)}] {r.check}")
        if r.server_cpu_s is not None:
            client = f", load generator CPU {r.client_cpu_s:.2f}s" if r.client_cpu_s else ""
            if r.client_deliveries_per_read:
                client += f" ({r.client_deliveries_per_read:.1f} deliveries per read)"
            per_op = (f", {r.cpu_us_per_op:.1f} us per trigger/op" if r.cpu_us_per_op
                      else "")
            out.append(f"    server CPU {r.server_cpu_s:.2f}s over {r.seconds:.2f}s{per_op}"
                       f"{client}")
        if r.softirq_s and r.server_cpu_s is not None:
            out.append(f"    of all CPU above, {r.softirq_s:.2f}s was kernel irq/softirq "
                       "(loopback TCP of both ends, charged to whichever process ran)")
        if r.memory:
            out.append("    memory " + ", ".join(
                f"{k} {v / 1024:.1f} KiB" if k.endswith("per_conn") else f"{k} {v / MIB:.1f} MiB"
                for k, v in r.memory.items()))
        if r.connections_per_front:
            out.append(f"    connections per front: {r.connections_per_front}")
        out.extend(f"    note: {note}" for note in r.notes)
        out.extend(f"    server log: {line}" for line in r.server_log_problems[:5])
    return "\n".join(out)
