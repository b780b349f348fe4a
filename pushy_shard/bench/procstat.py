"""What the server's processes cost, read from /proc: CPU time, RSS, PSS, fd limits.

CPU is `utime + stime` of `/proc/PID/stat` (every thread, ZeroMQ's I/O threads included, and
the softirq work, such as loopback TCP of the other end, that ran while the process did).
"""

from __future__ import annotations

import os
import re
import resource
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Memory:
    rss: int  # bytes, summed over the processes
    pss: int  # bytes; proportional set size (shared pages split), RSS where unavailable


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    text = _read(PROC / str(pid) / "stat")
    if text is None:
        return None
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    return text[text.rfind(")") + 2:].split()


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def descendants(root: int) -> list[int]:
    """`root` and every process below it (a server's supervisor, shards and fronts)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(found)


def pids_matching(pattern: str) -> list[int]:
    """Processes whose command line matches the regular expression (not this one)."""
    regex = re.compile(pattern)
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        raw = _read(entry / "cmdline")
        if raw and regex.search(raw.replace("\0", " ").strip()):
            found.append(int(entry.name))
    return sorted(found)


def cpu_ns(pids: list[int]) -> dict[int, int]:
    """CPU time used so far by each of these processes still alive: utime + stime, all threads
    (ended ones too)."""
    found = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            found[pid] = (int(fields[11]) + int(fields[12])) * TICK_NS
    return found


@dataclass(frozen=True)
class MachineCpu:
    """CPU time the whole machine spent so far (all cores), from /proc/stat."""

    tasks_ns: int  # user + nice + system: what processes' own CPU times add up to
    irq_ns: int  # hardirq + softirq ticks (loopback TCP), also inside processes' utime+stime
    steal_ns: int  # time a hypervisor ran something else while this machine wanted the CPU


def machine_cpu() -> MachineCpu:
    text = _read(PROC / "stat") or ""
    fields = [int(v) for v in text.splitlines()[0].split()[1:]] if text else []
    if len(fields) < 8:
        return MachineCpu(0, 0, 0)
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return MachineCpu((user + nice + system) * TICK_NS, (irq + softirq) * TICK_NS,
                      steal * TICK_NS)


def memory(pids: list[int]) -> Memory:
    rss = pss = 0
    for pid in pids:
        status = _read(PROC / str(pid) / "status") or ""
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        proc_rss = int(match.group(1)) * 1024 if match else 0
        rollup = _read(PROC / str(pid) / "smaps_rollup") or ""
        match = re.search(r"^Pss:\s+(\d+) kB", rollup, re.M)
        rss += proc_rss
        pss += int(match.group(1)) * 1024 if match else proc_rss
    return Memory(rss, pss)


def open_files_limit(pid: int) -> int | None:
    """The soft RLIMIT_NOFILE of another process (None if unreadable or unlimited)."""
    text = _read(PROC / str(pid) / "limits") or ""
    match = re.search(r"^Max open files\s+(\d+)", text, re.M)
    return int(match.group(1)) if match else None


def raise_open_files() -> tuple[int, int]:
    """Raise this process's soft fd limit to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard
