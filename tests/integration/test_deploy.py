"""The shipped ways to run pushy-shard: supervisord, a Procfile, the role commands, and the
built-in supervisor's process titles and signal handling. Real processes, waits on log lines."""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from pushy_shard.core.routing import shard_for
from tests.integration.harness import (
    PORT_TAKEN,
    SECRET,
    TIMEOUT,
    Cluster,
    LogFollower,
    PushyClient,
    free_port,
    iter_children,
    on_free_port,
    sign,
    write_config,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: pushy-shard, supervisord, supervisorctl
SHIPPED_CONF = ROOT / "supervisor" / "supervisord.conf"
STOP_TIMEOUT = 30.0  # supervisord's stopwaitsecs is 15


def _env(**extra: str) -> dict[str, str]:
    """Our environment with the venv's bin first on PATH (the deployments find `pushy-shard`
    there) and no PORT inherited from the caller."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONUNBUFFERED="1")
    env.pop("PORT", None)
    env.pop("PUSHY_WORKERS", None)
    env.pop("PUSHY_FRONTS", None)
    env.update(extra)
    return env


def _running(pid: int) -> bool:
    """True while `pid` exists and has not exited (a zombie has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _title(pid: int) -> str:
    """The process title as ps shows it (setproctitle rewrites /proc/PID/cmdline)."""
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return raw.replace(b"\0", b" ").decode().strip()


async def _trigger(port: int, channel: str, event: str, data: Any,
                   ssl: Any = None) -> tuple[int, Any]:
    """A signed trigger (PROTOCOL.md 4) without a Cluster: deployments here are not Clusters."""
    ts = int(time.time())
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    query = urllib.parse.urlencode({
        "event": event, "timestamp": str(ts),
        "auth_key": sign(f"{channel.lower()}:{event}:{ts}:{body}:{SECRET}"),
    })
    url = f"http://127.0.0.1:{port}/pushy/channel/{urllib.parse.quote(channel, safe='')}/trigger"
    async with aiohttp.ClientSession() as http, http.post(
        f"{url}?{query}", data=body.encode(), headers={"Content-Type": "application/json"}
    ) as response:
        return response.status, await response.json(content_type=None)


def _ws_url(port: int, session: str) -> str:
    return f"ws://127.0.0.1:{port}/pushy/socket/000/{session}/websocket"


async def _client_on(port: int, front: int) -> PushyClient:
    """A client the kernel's SO_REUSEPORT balancing put on `front`."""
    for n in range(200):
        client = await PushyClient.connect(_ws_url(port, f"s{n:07d}"))
        if client.front == front:
            return client
        await client.close()
    raise AssertionError(f"could not land a connection on front {front}")


# -- supervisord --------------------------------------------------------------------------------


def _supervisord_copy(directory: Path, workers: int, fronts: int) -> Path:
    """The shipped supervisord.conf with only numprocs and the per-deployment paths changed,
    so the test runs the shipped structure (programs, group, commands, log routing)."""
    conf = configparser.RawConfigParser()
    conf.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    conf.read(SHIPPED_CONF)
    sock = directory / "supervisor.sock"
    conf["supervisord"]["pidfile"] = str(directory / "supervisord.pid")
    conf["unix_http_server"]["file"] = str(sock)
    conf["supervisorctl"]["serverurl"] = f"unix://{sock}"
    conf["program:pushy-shard"]["numprocs"] = str(workers)
    conf["program:pushy-front"]["numprocs"] = str(fronts)
    path = directory / "supervisord.conf"
    with path.open("w") as f:
        conf.write(f)
    return path


def test_shipped_supervisord_conf_matches_shipped_config() -> None:
    """numprocs cannot be derived by supervisord, so the two shipped files must agree."""
    conf = configparser.RawConfigParser()
    conf.read(SHIPPED_CONF)
    config = json.loads((ROOT / "config.json").read_text())
    assert conf["program:pushy-shard"]["numprocs"] == str(config["workers"])
    assert conf["program:pushy-front"]["numprocs"] == str(config["fronts"])
    for program in ("program:pushy-shard", "program:pushy-front", "program:pushy-hooks"):
        assert "%(ENV_PUSHY_CONFIG)s" in conf[program]["command"]
        assert conf[program]["stdout_logfile"] == "/dev/stdout"
    for program in ("program:pushy-shard", "program:pushy-front"):
        assert "%(process_num)d" in conf[program]["command"]
    assert conf["group:pushy"]["programs"] == "pushy-hooks,pushy-shard,pushy-front"


def test_supervisord_requires_pushy_config(tmp_path: Path) -> None:
    """Without PUSHY_CONFIG supervisord must refuse to start rather than run a wrong config."""
    conf = _supervisord_copy(tmp_path, workers=1, fronts=1)
    result = subprocess.run([BIN / "supervisord", "-c", conf], env=_env(), cwd=tmp_path,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode != 0
    assert "ENV_PUSHY_CONFIG" in result.stdout + result.stderr


@contextlib.contextmanager
def _supervisord(tmp_path: Path, workers: int, fronts: int
                 ) -> Iterator[tuple[subprocess.Popen[bytes], LogFollower, Path, int]]:
    """supervisord running a copy of the shipped conf, serving (every front ready); kills
    leftovers if the test failed."""
    conf = _supervisord_copy(tmp_path, workers, fronts)

    def cleanup(process: subprocess.Popen[bytes], log: LogFollower, config: dict[str, Any]
                ) -> None:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in _spawned(log):
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(config["link"]["directory"], ignore_errors=True)

    def launch() -> tuple[subprocess.Popen[bytes], LogFollower, dict[str, Any]]:
        config_path = write_config(tmp_path, workers=workers, fronts=fronts)
        config = json.loads(config_path.read_text())
        process = subprocess.Popen(
            [BIN / "supervisord", "-c", conf], cwd=tmp_path,
            env=_env(PUSHY_CONFIG=str(config_path)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log = LogFollower(process.stdout)
        try:
            log.wait_for(rf"front \d/{fronts} ready", fronts, fail=PORT_TAKEN)
        except BaseException:
            cleanup(process, log, config)
            raise
        return process, log, config

    process, log, config = on_free_port(launch)
    try:
        yield process, log, conf, config["port"]
    finally:
        cleanup(process, log, config)


def _supervisorctl(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "supervisorctl"), "-c", str(conf), *args], env=_env(),
                          capture_output=True, text=True, timeout=STOP_TIMEOUT)


def _spawned(log: LogFollower) -> dict[int, str]:
    """pid -> program process name, for every process supervisord has spawned so far."""
    out: dict[int, str] = {}
    for line in list(log.lines):
        if match := re.search(r"spawned: '([\w-]+)' with pid (\d+)", line):
            out[int(match.group(2))] = match.group(1)
    return out


async def test_supervisord(tmp_path: Path) -> None:
    """The shipped supervisord.conf serves pub/sub, restarts one front while the other keeps
    its clients, brings a crashed shard back, and stops every process cleanly on SIGTERM."""
    with _supervisord(tmp_path, workers=2, fronts=2) as (process, log, conf, port):
        await asyncio.to_thread(log.wait_for, r"front \d/2 ready: linked to 2 shards", 2)
        log.wait_for(r"shard \d/2 listening on ipc://", 2)  # every program logs to stdout
        spawned = _spawned(log)
        assert sorted(spawned.values()) == [
            "pushy-front-0", "pushy-front-1", "pushy-hooks", "pushy-shard-0", "pushy-shard-1"]
        for pid, name in spawned.items():  # supervisord ran the role commands themselves
            if name == "pushy-hooks":
                assert _title(pid) == "pushy-shard: hooks"
                continue
            role, index = name.removeprefix("pushy-").rsplit("-", 1)
            assert _title(pid) == f"pushy-shard: {role} {int(index) + 1}/2"

        survivor = await _client_on(port, front=1)
        leaving = await _client_on(port, front=0)
        try:
            await survivor.subscribe("news")
            await leaving.subscribe("news")
            status, body = await _trigger(port, "news", "flash", {"n": 1})
            assert (status, body) == (201, {"status": {"code": 201, "message": "Ok"}})
            for client in (survivor, leaving):
                assert await client.next() == {
                    "event": "flash", "channel": "news", "data": {"n": 1}}

            # rolling restart of front 0 as the conf's comment documents it; its client
            # reads meanwhile, and answers the close as a browser does
            closing = asyncio.ensure_future(leaving.until_closed())
            mark = log.mark
            result = await asyncio.to_thread(_supervisorctl, conf, "restart",
                                             "pushy:pushy-front-0")
            assert result.returncode == 0, result.stdout + result.stderr
            assert "pushy:pushy-front-0: started" in result.stdout, result.stdout
            await asyncio.to_thread(log.wait_for, r"front 1/2 ready", 1, mark)
            log.wait_for(r"front 1/2 stopping", start=mark)
            assert [m.group(1) for m in log.wait_for(
                r"spawned: '([\w-]+)'", start=mark)] == ["pushy-front-0"]

            # its front went away: a graceful stop, not a kill
            assert (await closing)[0] == 'c[3000,"Server shutting down, please reconnect"]'
            # a reload as the conf's comment documents it: every program re-reads the file
            mark = log.mark
            result = await asyncio.to_thread(_supervisorctl, conf, "signal", "HUP", "pushy:*")
            assert result.returncode == 0, result.stdout + result.stderr
            await asyncio.to_thread(log.wait_for, r"reload: applied nothing", 4, mark)
            # the other front kept its client and its subscription, and front 0 is back
            fresh = await _client_on(port, front=0)
            try:
                await fresh.subscribe("news")
                status, _ = await _trigger(port, "news", "flash", {"n": 2})
                assert status == 201
                for client in (survivor, fresh):
                    assert await client.next() == {
                        "event": "flash", "channel": "news", "data": {"n": 2}}

                # autorestart: a crashed shard comes back and the fronts replay its members
                owner = f"pushy-shard-{shard_for('news', 2)}"
                (crashed,) = [pid for pid, name in _spawned(log).items() if name == owner]
                mark = log.mark
                os.kill(crashed, signal.SIGKILL)
                await asyncio.to_thread(log.wait_for, rf"spawned: '{owner}'", 1, mark)
                await asyncio.to_thread(
                    log.wait_for, rf"shard {owner[-1]} restarted, replayed 1 members", 2, mark)
                status, _ = await _trigger(port, "news", "flash", {"n": 3})
                assert status == 201
                for client in (survivor, fresh):
                    assert await client.next() == {
                        "event": "flash", "channel": "news", "data": {"n": 3}}
            finally:
                await fresh.close()
        finally:
            await survivor.close()
            await leaving.close()

        spawned = _spawned(log)
        assert len(spawned) == 7  # five, the restarted front and the restarted shard
        mark = log.mark
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, STOP_TIMEOUT) == 0
        left = [pid for pid in spawned if _running(pid)]
        assert left == [], f"processes left after supervisord exited: {left}"
        stopped = {m.group(1) for m in log.wait_for(
            r"stopped: ([\w-]+) \(exit status 0\)", 4, mark)}  # each stopped on TERM
        assert stopped == set(spawned.values())


# -- Procfile -----------------------------------------------------------------------------------


def _procfile_web() -> str:
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    kind, _, command = lines[0].partition(":")
    assert kind == "web"
    return command.strip()


async def test_procfile(tmp_path: Path) -> None:
    """The Procfile's web command runs everything on $PORT (as platforms set it), not on
    config.json's port, and stops cleanly when the platform SIGTERMs the process group."""
    command = _procfile_web()

    def launch() -> tuple[dict[str, Any], int, subprocess.Popen[bytes], LogFollower]:
        config = json.loads(write_config(tmp_path, workers=2, fronts=2).read_text())
        port = free_port()
        assert port != config["port"]
        process = subprocess.Popen(
            command, shell=True, cwd=tmp_path, env=_env(PORT=str(port)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log = LogFollower(process.stdout)
        try:
            log.wait_for(r"front \d/2 ready", 2, fail=PORT_TAKEN)
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            shutil.rmtree(config["link"]["directory"], ignore_errors=True)
            raise
        return config, port, process, log

    config, port, process, log = on_free_port(launch)
    try:
        async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{port}/pushy/socket/info"
        ) as response:
            assert response.status == 200
            info = await response.json()
        assert info["websocket"] is True
        assert info["cookie_needed"] is False
        with socket.socket() as sock, contextlib.suppress(ConnectionRefusedError):
            sock.connect(("127.0.0.1", config["port"]))
            raise AssertionError(f"config.json's port {config['port']} is listening")

        children = [int(m.group(1)) for m in log.wait_for(r"started \(pid (\d+)\)", 4)]
        os.killpg(process.pid, signal.SIGTERM)  # what Heroku-like platforms and honcho do
        # /bin/sh may run the command as its child instead of exec'ing it; the shell then dies
        # of the signal itself, and the supervisor's exit shows only in its log
        assert await asyncio.to_thread(process.wait, STOP_TIMEOUT) in (0, -signal.SIGTERM)
        # end of output: every process holding the pipe (supervisor and children) has exited
        await asyncio.to_thread(log.wait_for, r"^<eof>$", 1, 0, STOP_TIMEOUT)
        assert re.search(r"supervisor INFO stopped$", log.lines[-2]), log.lines[-5:]
        assert not any("did not stop" in line for line in log.lines)
        assert [pid for pid in children if _running(pid)] == []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(config["link"]["directory"], ignore_errors=True)


# -- role commands ------------------------------------------------------------------------------


def _pushy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "pushy-shard"), *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_role_commands(tmp_path: Path) -> None:
    """Misconfiguration stops the process at once with status 2 and names what is wrong."""
    config_path = write_config(tmp_path, workers=2, fronts=1)
    config = json.loads(config_path.read_text())
    try:
        result = _pushy("check", "config.json", cwd=tmp_path)
        assert (result.returncode, result.stdout) == (0, "pushy-shard: config.json is valid\n")

        result = _pushy("front", "--index", "5", "config.json", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "--index must be between 0 and 0" in result.stderr
        result = _pushy("shard", "--index", "2", "config.json", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "--index must be between 0 and 1" in result.stderr

        without_secret = {k: v for k, v in config.items() if k != "secretKey"}
        (tmp_path / "no-secret.json").write_text(json.dumps(without_secret))
        result = _pushy("no-secret.json", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("pushy-shard: config: secretKey: is required")

        (tmp_path / "typo.json").write_text(json.dumps({**config, "wrokers": 2}))
        for args in (["typo.json"], ["check", "typo.json"], ["front", "typo.json"]):
            result = _pushy(*args, cwd=tmp_path)
            assert result.returncode == 2, result.stderr
            assert result.stderr.startswith("pushy-shard: config: wrokers: unknown key")
            assert "ready" not in result.stderr
    finally:
        shutil.rmtree(config["link"]["directory"], ignore_errors=True)


# -- the built-in supervisor ----------------------------------------------------------------------


def test_process_titles(tmp_path: Path) -> None:
    """ps shows each process's role and index, numbered from 1 like the log lines."""
    cluster = Cluster(tmp_path)
    try:
        assert _title(cluster.process.pid) == "pushy-shard: supervisor"
        titles = {_title(cluster.pid(role, index)) for role, index in iter_children(cluster)}
        assert titles == {
            "pushy-shard: hooks",
            "pushy-shard: shard 1/3", "pushy-shard: shard 2/3", "pushy-shard: shard 3/3",
            "pushy-shard: front 1/2", "pushy-shard: front 2/2",
        }
    finally:
        assert cluster.stop() == 0


def test_sigint_stops_everything(tmp_path: Path) -> None:
    """Ctrl-C on the supervisor leaves no shard or front behind."""
    cluster = Cluster(tmp_path)
    try:
        pids = [cluster.pid(role, index) for role, index in iter_children(cluster)]
        assert all(_running(pid) for pid in pids)
        cluster.process.send_signal(signal.SIGINT)
        assert cluster.process.wait(timeout=STOP_TIMEOUT) == 0
        assert [pid for pid in pids if _running(pid)] == []
        cluster.log.wait_for(r"received SIGINT, stopping")
    finally:
        cluster.stop()
