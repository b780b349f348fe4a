"""Who may connect: browser Origins against `allowed_origins`, and the client address behind
trusted proxies (README, Limits). Pure functions of their arguments."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from urllib.parse import urlsplit


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """True when `origin` (the Origin header; None when absent) may connect.

    Entries: "*" allows any; "https://app.example.com[:port]" one origin exactly;
    "*.example.com" any scheme and port on example.com or below it. A request without an
    Origin (not a browser) is allowed; "null" (sandboxed pages, files) only by "*"."""
    if "*" in allowed or origin is None:
        return True
    text = origin.strip().lower()
    if text == "null":
        return False
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        return False
    if not parts.scheme or not host:
        return False
    for entry in allowed:
        entry = entry.strip().lower().rstrip("/")
        if entry.startswith("*."):
            domain = entry[2:]
            if host == domain or host.endswith("." + domain):
                return True
        elif entry == text.rstrip("/"):
            return True
    return False


@lru_cache(maxsize=64)
def _networks(trusted: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                 ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def _trusted(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
             ) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[str, ...]) -> str:
    """The client's address: the peer itself, unless the peer is a trusted proxy; then the
    right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    peer = peer or "unknown"
    if not trusted or not forwarded_for:
        return peer
    networks = _networks(trusted)
    if not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer
