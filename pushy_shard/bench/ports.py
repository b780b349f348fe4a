"""Free loopback ports for servers the benchmark and the tests start.

A port found free may be taken by another process before the server binds it. Outgoing
connections take theirs from the kernel's ephemeral range, so ports are picked outside it;
only a listening process can then take one, and the caller retries on a new port when the
server says PORT_TAKEN.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

# What a process that lost its port logs: the supervisor's check ("port N is already in
# use"), a front's failed bind ("address already in use"), ZeroMQ's ("Address already in use").
PORT_TAKEN = r"(?i)already in use"
PORT_ATTEMPTS = 5


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(count: int = 1) -> int:
    """The first of `count` consecutive loopback ports nobody listens on now, outside the
    ephemeral range."""
    low, high = ephemeral_range()
    choices = [p for p in range(10_000, 65_536 - count) if p + count - 1 < low or p > high]
    for _ in range(200):
        first = secrets.choice(choices)
        held: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise OSError("no free port found")
