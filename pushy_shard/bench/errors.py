"""The benchmark's one error type: a run that cannot go on, with the reason to print."""

from __future__ import annotations


class BenchError(Exception):
    """Setup or measurement failed; the message says why and what to do."""
