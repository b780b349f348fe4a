"""Command line: `pushy-shard CONFIG` runs everything; `front`/`shard`/`hooks` run one alone.

    pushy-shard config.json                       supervisor + shards + fronts + hooks
    pushy-shard front --index I config.json       front I only (supervisord, debugging)
    pushy-shard shard --index J config.json       shard J only
    pushy-shard hooks config.json                 the webhooks process only
    pushy-shard check config.json                 validate the config and exit
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from setproctitle import setproctitle

from pushy_shard import logs
from pushy_shard.core.config import Config, load_config
from pushy_shard.errors import EXIT_ADDRESS_IN_USE, AddressInUse, ConfigError

log = logging.getLogger("pushy_shard")

DEMO_WARNING = (
    "WARNING: config.json uses the DEMO secretKey shipped with pushy-shard. Anyone can sign "
    "triggers and private-channel tokens. Set your own secretKey before exposing this server."
)
DEMO_APP_WARNING = (
    "WARNING: config.json's Pusher app(s) {ids} use the DEMO secret shipped with pushy-shard. "
    "Anyone can trigger events and sign private and presence subscriptions. Set your own "
    "secret (and key) before exposing this server."
)


def _warn_demo(config: Config) -> None:
    if config.demo_secret:
        log.warning(DEMO_WARNING)
    if config.demo_apps:
        log.warning(DEMO_APP_WARNING.format(ids=", ".join(config.demo_apps)))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushy-shard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", nargs="?",
                        choices=["run", "front", "shard", "hooks", "check"], default="run")
    parser.add_argument("config", help="path to config.json")
    parser.add_argument("--index", type=int, default=None,
                        help="which front/shard this process is (0-based)")
    return parser


def _event_loop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> int:
    # A supervisor blocks signals to wait for them; its children must not inherit that.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    args_list = sys.argv[1:] if argv is None else argv
    if len(args_list) == 1 and args_list[0] not in ("-h", "--help"):
        args_list = ["run", *args_list]
    parser = _parser()
    args = parser.parse_intermixed_args(args_list)
    if args.role in ("front", "shard", "hooks"):
        # A reload (SIGHUP) that comes while a process starts must not kill it; the config
        # it reads below is the new one anyway. serve() installs the real handler.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"pushy-shard: {exc}", file=sys.stderr)
        return 2
    if args.role == "check":
        print(f"pushy-shard: {args.config} is valid")
        return 0
    if args.role in ("front", "shard", "hooks"):
        count = {"front": config.fronts, "shard": config.workers, "hooks": 1}[args.role]
        index = 0 if args.index is None else args.index
        if not 0 <= index < count:
            print(f"pushy-shard: --index must be between 0 and {count - 1} "
                  f"(config: {args.role} count {count})", file=sys.stderr)
            return 2
        logs.setup(args.role, index if args.role != "hooks" else None,
                   level=config.log_level, fmt=config.log_format)
        setproctitle("pushy-shard: hooks" if args.role == "hooks"
                     else f"pushy-shard: {args.role} {index + 1}/{count}")
        _event_loop()
        try:
            if args.role == "front":
                _warn_demo(config)
                from pushy_shard.front.server import serve as serve_front

                asyncio.run(serve_front(config, index, os.path.abspath(args.config)))
            elif args.role == "shard":
                from pushy_shard.shard.worker import serve as serve_shard

                asyncio.run(serve_shard(config, index, os.path.abspath(args.config)))
            else:
                from pushy_shard.hooks.worker import serve as serve_hooks

                asyncio.run(serve_hooks(config, os.path.abspath(args.config)))
        except AddressInUse as exc:
            log.error("%s", exc)
            return EXIT_ADDRESS_IN_USE
        return 0
    logs.setup("supervisor", None, level=config.log_level, fmt=config.log_format)
    _warn_demo(config)
    from pushy_shard.supervisor.process import Supervisor

    setproctitle("pushy-shard: supervisor")
    return Supervisor(config, os.path.abspath(args.config)).run()


if __name__ == "__main__":
    sys.exit(main())
