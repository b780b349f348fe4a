"""`python -m pushy_shard.bench SCENARIO [options]`: measure a Pushy server.

Scenarios (letters work too):
  burst     (a) one channel, S subscribers, a burst of E events: deliveries/s
  channels  (b) many channels with small audiences: triggers/s and deliveries/s
  latency   (c) fixed offered trigger rates: p50/p99/p99.9/max from the intended send time
  idle      (d) C idle subscribed connections: server memory, per connection above empty
  presence  (e) presence churn: joins+leaves/s on channels of M members
  scaling   (f) (a) and (b) with fronts = workers = 1, 2, 4, 8
  all       every one of them
  report    one table and plot of saved --json records (two servers side by side)

Without --url the tool starts pushy-shard itself (a fresh server per scenario, on a free
loopback port, with --workers and --fronts). With --url it measures any server speaking Pushy
over the SockJS websocket transport; give --server-pids or --server-pattern so it can read
that server's CPU and memory from /proc. Every run checks that each subscriber got exactly
what it should and says LOST otherwise (exit status 1). With --floor each scenario (a-e)
also runs on a reference server in C (floorserver.c: one send() per member, nothing else),
and the report adds ours / floor.

Examples:
  python -m pushy_shard.bench burst --subscribers 2000 --events 200 --workers 2 --fronts 2
  python -m pushy_shard.bench all --json bench.json --plot bench.png
  python -m pushy_shard.bench channels --url http://127.0.0.1:8234 --secret secret \\
      --server-pattern 'node server.js' --label original --json original.json
  python -m pushy_shard.bench report ours.json original.json --plot both.png
  python -m pushy_shard.bench latency --channels 1 --per-channel 2000 --rates 22 --floor \\
      --original original.json       # ours / floor and ours / original beside the table
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pushy_shard.bench import fanout, native, plot, procstat, report, sessions, target
from pushy_shard.bench.errors import BenchError
from pushy_shard.bench.measure import Settings
from pushy_shard.bench.report import Result

SCENARIOS = {"burst": "a", "channels": "b", "latency": "c", "idle": "d", "presence": "e",
             "scaling": "f", "cluster": "g"}
SUMMARY = {
    "burst": "one channel, a burst of events",
    "channels": "many channels, small audiences",
    "latency": "latency at fixed offered rates",
    "idle": "memory of idle subscribed connections",
    "presence": "presence joins and leaves",
    "scaling": "(a) and (b) over fronts = workers",
    "cluster": "(a) and (b): two instances on Redis beside one with as many processes",
}


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def _options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    server = common.add_argument_group("server under test")
    server.add_argument("--url", help="measure this server (http://HOST:PORT) instead of "
                        "starting pushy-shard")
    server.add_argument("--secret", default="secret", help="its secretKey (default: secret)")
    server.add_argument("--prefix", default="/pushy/socket", help="its SockJS prefix")
    server.add_argument("--label", help="name of the server in the table and plot")
    server.add_argument("--workers", type=int, default=2, help="shards of a started server")
    server.add_argument("--fronts", type=int, default=1, help="fronts of a started server")
    server.add_argument("--server-pids", type=_ints, default=[],
                        help="with --url: comma-separated pids to measure CPU/RSS of")
    server.add_argument("--server-pattern",
                        help="with --url: regex over /proc/PID/cmdline of the server's processes")
    server.add_argument("--webhooks", choices=("off", "on", "both"), default="off",
                        help="a started server posts every webhook event of both protocols "
                        "to a sink in this tool (both: each scenario without, then with)")
    server.add_argument("--floor", action="store_true",
                        help="after each scenario (a-e) on pushy-shard, the same on the C "
                        "reference floor (floorserver.c, one writer thread per front): the "
                        "report adds ours / floor")
    server.add_argument("--original", type=Path, action="append", default=[],
                        help="a JSON record of the original server (made with --url ... "
                        "--json): the report adds ours / original")
    server.add_argument("--protocol", choices=("pushy", "pusher", "both"),
                        help="the client protocol to drive: each scenario once per protocol, "
                        "on a fresh server each (default: both for a started server, pushy "
                        "with --url; (f) scaling is Pushy's only)")
    load = common.add_argument_group("load generator")
    load.add_argument("--clients", type=int, default=2, help="subscriber processes (default 2)")
    load.add_argument("--pub-conns", type=int, default=32,
                      help="publisher keep-alive connections (default 32)")
    load.add_argument("--client-nap-us", type=int, default=1000,
                      help="subscribers pause this long after each busy poll while counting "
                      "throughput (fewer wakeups, less CPU taken from the server; 0: never)")
    load.add_argument("--timeout", type=float, default=60.0,
                      help="seconds any one phase may take (default 60)")
    out = common.add_argument_group("output")
    out.add_argument("--json", type=Path, help="write the JSON record here")
    out.add_argument("--plot", type=Path, help="write a PNG (latency vs rate, scaling) here")
    sizes = common.add_argument_group("scenario sizes")
    sizes.add_argument("--subscribers", type=int, default=2000, help="(a) subscribers")
    sizes.add_argument("--events", type=int, default=200, help="(a) events in the burst")
    sizes.add_argument("--channels", type=int, default=100, help="(b, c) channels")
    sizes.add_argument("--per-channel", type=int, default=20, help="(b, c) subscribers each")
    sizes.add_argument("--triggers", type=int, default=10000, help="(b) triggers in all")
    sizes.add_argument("--rates", type=_floats, default=[500.0, 1000.0, 2000.0, 3000.0],
                       help="(c) offered triggers/s, comma-separated")
    sizes.add_argument("--duration", type=float, default=3.0, help="(c) seconds per rate")
    sizes.add_argument("--connections", type=int, default=5000, help="(d) idle connections")
    sizes.add_argument("--settle", type=float, default=1.0,
                       help="(d) seconds to settle before reading memory")
    sizes.add_argument("--presence-channels", type=int, default=20, help="(e) channels")
    sizes.add_argument("--members", type=int, default=20, help="(e) members per channel")
    sizes.add_argument("--cycles", type=int, default=100, help="(e) joins+leaves per churner")
    sizes.add_argument("--sizes", type=_ints, default=[1, 2, 4, 8],
                       help="(f) fronts = workers values")
    sizes.add_argument("--scale-events", type=int, default=100,
                       help="(f) burst events per run (subscribers as in a)")
    sizes.add_argument("--scale-triggers", type=int, default=5000,
                       help="(f) triggers per run (channels as in b)")

    parser = argparse.ArgumentParser(prog="python -m pushy_shard.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for name, letter in SCENARIOS.items():
        commands.add_parser(name, aliases=[letter], parents=[common],
                            help=f"({letter}) {SUMMARY[name]}")
    commands.add_parser("all", parents=[common], help="every scenario")
    merge = commands.add_parser("report", help="table and plot of saved JSON records together "
                                "(e.g. two servers side by side)")
    merge.add_argument("records", nargs="+", type=Path, help="JSON records written by --json")
    merge.add_argument("--plot", type=Path, help="write a PNG here")
    merge.add_argument("--original", type=Path, action="append", default=[],
                       help="a record of the original server: the report adds ours / original")
    return parser


Runner = Callable[[Settings, target.Target], list[Result]]


def _runners(args: argparse.Namespace) -> dict[str, Runner]:
    return {
        "burst": lambda s, t: [fanout.burst(s, t, args.subscribers, args.events)],
        "channels": lambda s, t: [fanout.channels(s, t, args.channels, args.per_channel,
                                                  args.triggers)],
        "latency": lambda s, t: fanout.latency(s, t, args.rates, args.duration, args.channels,
                                               args.per_channel),
        "idle": lambda s, t: [sessions.idle(s, t, args.connections, args.settle)],
        "presence": lambda s, t: [sessions.presence(s, t, args.presence_channels, args.members,
                                                    args.cycles)],
    }


def _scaling(settings: Settings, args: argparse.Namespace) -> list[Result]:
    results = []
    for n in args.sizes:
        print(f"-- (f) fronts = workers = {n}", file=sys.stderr, flush=True)
        server = target.local(n, n, args.secret, args.prefix)
        try:
            runs = [
                fanout.burst(settings, server, args.subscribers, args.scale_events, "f burst"),
                fanout.channels(settings, server, args.channels, args.per_channel,
                                args.scale_triggers, "f channels"),
            ]
        finally:
            server.stop()
        for result in runs:
            result.params.update({"fronts": n, "workers": n})
        results.extend(runs)
    return results


def _cluster(settings: Settings, args: argparse.Namespace, protocols: list[str]
             ) -> list[Result]:
    """(g) Two instances of --workers/--fronts on one redis-server, subscribers split over
    both, triggers through the first; beside one instance of twice as many processes."""
    results = []
    for proto in protocols:
        for pair in (False, True):
            if pair:
                server = target.cluster_pair(args.workers, args.fronts, args.secret,
                                             args.prefix, proto)
            else:
                server = target.local(2 * args.workers, 2 * args.fronts, args.secret,
                                      args.prefix, proto)
            print(f"-- (g) cluster, {proto}: {server.label}", file=sys.stderr, flush=True)
            try:
                runs = [fanout.burst(settings, server, args.subscribers, args.events,
                                     "g burst"),
                        fanout.channels(settings, server, args.channels, args.per_channel,
                                        args.triggers, "g channels")]
            finally:
                server.stop()
            for result in runs:
                result.params.update({"protocol": proto, "instances": 2 if pair else 1})
            results.extend(runs)
    return results


def _run(args: argparse.Namespace, settings: Settings) -> list[Result]:
    chosen = {v: k for k, v in SCENARIOS.items()}.get(args.scenario, args.scenario)
    names = list(SCENARIOS) if chosen == "all" else [chosen]
    protocol = args.protocol or ("pushy" if args.url else "both")
    protocols = ["pushy", "pusher"] if protocol == "both" else [protocol]
    runners = _runners(args)
    results: list[Result] = []
    for name in names:
        if name == "scaling":
            if args.url:
                print("(f) scaling needs a server this tool starts; skipped with --url",
                      file=sys.stderr)
                continue
            results.extend(_scaling(settings, args))
            continue
        if name == "cluster":
            if args.url:
                print("(g) cluster needs servers this tool starts; skipped with --url",
                      file=sys.stderr)
                continue
            if chosen == "all" and shutil.which("redis-server") is None:
                print("(g) cluster needs redis-server (apt-get install redis-server); skipped",
                      file=sys.stderr)
                continue
            results.extend(_cluster(settings, args, protocols))
            continue
        hooks = {"off": [False], "on": [True], "both": [False, True]}[args.webhooks]
        for proto, webhooks in [(p, w) for p in protocols for w in hooks]:
            print(f"-- ({SCENARIOS[name]}) {name}, {proto}" + (", webhooks" if webhooks
                                                              else ""),
                  file=sys.stderr, flush=True)
            if args.url:
                server = target.external(args.url, args.secret, args.prefix, args.server_pids,
                                         args.server_pattern, args.label)
                server.protocol = proto
            else:
                server = target.local(args.workers, args.fronts, args.secret, args.prefix,
                                      proto, webhooks)
                if args.label:
                    server.label = args.label + (" pusher" if proto == "pusher" else "")
            try:
                runs = runners[name](settings, server)
            finally:
                sink = server.server.sink if server.server is not None else None
                server.stop()
            for result in runs:
                result.params["protocol"] = proto
                if sink is not None:
                    result.params["webhooks"] = f"{sink.events} events in {sink.posts} posts"
            results.extend(runs)
            if args.floor and not webhooks and not args.url:
                results.extend(_on_floor(settings, args, runners[name], name, proto))
    return results


def _on_floor(settings: Settings, args: argparse.Namespace, runner: Runner, name: str,
              proto: str) -> list[Result]:
    """The same scenario on the reference floor, one writer per front of ours."""
    print(f"-- ({SCENARIOS[name]}) {name}, {proto}, floor", file=sys.stderr, flush=True)
    floor = target.floor(native.floorserver(), args.fronts, args.secret, args.prefix, proto)
    try:
        runs = runner(settings, floor)
    finally:
        floor.stop()
    for result in runs:
        result.params.update({"protocol": proto, "reference": "floor"})
    return runs


def _compiler_version() -> str | None:
    compiler = native.find_compiler()
    if compiler is None:
        return None
    done = subprocess.run([compiler, "--version"], capture_output=True, text=True)
    return done.stdout.splitlines()[0] if done.stdout else compiler


def _show(results: list[Result], plot_path: Path | None,
          originals: list[Result] | None = None) -> int:
    print(report.table(results))
    print()
    ratios = report.ratios(results, originals or [])
    if ratios:
        print(ratios)
        print()
    print(report.details(results))
    if plot_path:
        try:
            plot.write(plot_path, results)
            print(f"plot: {plot_path}")
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
    lost = [r for r in results if not r.ok]
    if lost:
        print(f"{len(lost)} run(s) LOST deliveries or failed their check", file=sys.stderr)
    return 1 if lost else 0


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a `timeout`, a CI job cancelled) unwinds like an error, so every server and
    load client this run started is stopped by its `finally` instead of left running."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _options().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    if args.scenario == "report":
        try:
            return _show([r for path in args.records for r in report.load(path)], args.plot,
                         [r for path in args.original for r in report.load(path)])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"bench: cannot read the records: {exc}", file=sys.stderr)
            return 2
    try:
        originals = [r for path in args.original for r in report.load(path)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"bench: cannot read the --original records: {exc}", file=sys.stderr)
        return 2
    nofile = procstat.raise_open_files()
    try:
        exe = native.loadclient()
        settings = Settings(exe=exe, clients=max(1, args.clients),
                            pub_conns=max(1, args.pub_conns), timeout=args.timeout,
                            run_id=secrets.token_hex(3), nofile=nofile[0],
                            nap_us=max(0, args.client_nap_us))
        if args.url and not (args.server_pids or args.server_pattern):
            print("note: no --server-pids/--server-pattern: server CPU and memory are not "
                  "measured", file=sys.stderr)
        results = _run(args, settings)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    data = report.record(results, report.machine(nofile, _compiler_version()),
                         [sys.executable, "-m", "pushy_shard.bench", *(argv or sys.argv[1:])])
    if args.json:
        report.write_json(args.json, data)
        print(f"JSON record: {args.json}", file=sys.stderr)
    return _show(results, args.plot, originals)
