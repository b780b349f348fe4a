"""The benchmark tool: `python -m pushy_shard.bench --help` (README, Performance).

A Python orchestrator (this package) drives a small compiled load generator
(`loadclient.c`, built at first use) against a server it starts or any Pushy URL, and
reports throughput, latency, server CPU per delivery and memory, checking that every
subscriber got every event.
"""
