"""SIGHUP in a front or shard: re-read config.json and say what changed (core/reload.py).

The caller installs the returned config where its process reads settings at use
(`front.config`, `worker.config`); a file that does not load changes nothing.
"""

from __future__ import annotations

import logging

from pushy_shard.core.config import Config, load_config
from pushy_shard.core.reload import plan_reload
from pushy_shard.errors import ConfigError

log = logging.getLogger(__name__)


def reread(path: str, current: Config) -> Config | None:
    """The config to run with after SIGHUP, or None (logged) when the file is unusable."""
    try:
        new = load_config(path)
    except ConfigError as exc:
        log.error("reload: %s; keeping the running config", exc)
        return None
    plan = plan_reload(current, new)
    for key in plan.refused:
        log.warning("reload: %s cannot change while running; keeping the old value "
                    "(restart the process to apply it)", key)
    log.info("reload: applied %s", ", ".join(plan.applied) if plan.applied else "nothing")
    set_log_level(plan.config.log_level)
    return plan.config


def set_log_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
