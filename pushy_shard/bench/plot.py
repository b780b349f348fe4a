"""The PNG: latency vs offered rate (c), and throughput vs fronts/workers (f).

matplotlib is imported here only, on demand; it comes with the `bench` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pushy_shard.bench.errors import BenchError
from pushy_shard.bench.report import Result

MISSING = ("matplotlib is not installed, so no plot was written: "
           "pip install 'pushy-shard[bench]' (or `make bench`)")


def _latency(ax: Any, results: list[Result]) -> None:
    runs = [r for r in results if r.scenario == "c latency" and r.latency_ms]
    servers = sorted({r.server for r in runs})
    for n, server in enumerate(servers):  # a colour per server, a line style per percentile
        mine = sorted((r for r in runs if r.server == server), key=lambda r: r.offered_per_s or 0)
        rates = [r.offered_per_s for r in mine]
        for key, style in (("p50", "-o"), ("p99", "--s"), ("p99.9", ":^"), ("max", "-.x")):
            ax.plot(rates, [r.latency_ms[key] for r in mine if r.latency_ms], style,
                    color=f"C{n}", label=f"{server} {key}")
    ax.set_title("(c) latency from intended send time")
    ax.set_xlabel("offered triggers/s")
    ax.set_ylabel("ms")
    if runs:
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no latency runs", ha="center", transform=ax.transAxes)


def _scaling(ax: Any, results: list[Result]) -> None:
    runs = [r for r in results if r.scenario.startswith("f ") and r.deliveries_per_s]
    for scenario in sorted({r.scenario for r in runs}):
        mine = sorted((r for r in runs if r.scenario == scenario),
                      key=lambda r: int(r.params["fronts"]))
        ax.plot([int(r.params["fronts"]) for r in mine], [r.deliveries_per_s for r in mine],
                "-o", label=scenario[2:] + " deliveries/s")
    ax.set_title("(f) scaling: fronts = workers")
    ax.set_xlabel("fronts = workers")
    ax.set_ylabel("deliveries/s")
    if runs:
        sizes = sorted({int(r.params["fronts"]) for r in runs})
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no scaling runs", ha="center", transform=ax.transAxes)


def write(path: Path, results: list[Result]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BenchError(MISSING) from exc
    panels = [draw for draw, wanted in ((_latency, "c latency"), (_scaling, "f "))
              if any(r.scenario.startswith(wanted) for r in results)] or [_latency, _scaling]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    for draw, ax in zip(panels, axes[0], strict=True):
        draw(ax, results)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
