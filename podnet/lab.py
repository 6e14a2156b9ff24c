"""``podnet up`` / ``status`` / ``down``: podnet on one machine, with no cluster needed.

``up`` starts what podnet needs as background processes it tracks by pidfile in a
state directory of its own (Redis with AOF on, the IPAM query endpoint), registers the
subnets and pools of a directory of ordinary manifests, and reports what it runs.
Running it twice is safe: what already runs is kept, and registration is idempotent.
``down`` stops exactly the processes ``up`` started and removes the state directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from ipam import errors
from ipam.api import subnet_list
from ipam.cli import format_table, subnets_table
from ipam.settings import RedisSettings
from ipam.store import open_ipam
from podnet.daemons import BackgroundProcess, DaemonError, RedisServer
from podnet.manifests import ManifestProblem, read_manifests, register_ipam_objects

DEFAULT_STATE_DIR = Path("/var/lib/podnet")
DEFAULT_MANIFESTS = Path(__file__).resolve().parent.parent / "examples"


@dataclass(frozen=True)
class LabSettings:
    """Where ``podnet up`` keeps its state and what it listens on."""

    state_dir: Path = DEFAULT_STATE_DIR
    redis_port: int = 16379
    ipam_listen: str = "127.0.0.1:8080"
    manifests: tuple[Path, ...] = (DEFAULT_MANIFESTS,)

    @property
    def redis(self) -> RedisServer:
        return RedisServer(self.state_dir / "redis", port=self.redis_port)

    @property
    def redis_settings(self) -> RedisSettings:
        return RedisSettings(url=self.redis.url)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = commands.add_parser(
        "up", help="run podnet on this machine and register the example manifests",
        description="Start Redis and the IPAM endpoint in the background, register the "
        "Subnets and IPPools of the manifests, and report what runs.",
    )
    _common_options(up)
    up.add_argument(
        "--manifests", type=Path, action="append",
        help=f"manifest file or directory (repeatable; default {DEFAULT_MANIFESTS.name}/)",
    )
    up.add_argument("--redis-port", type=int, default=16379, help="Redis port (default 16379)")
    up.add_argument(
        "--listen", default="127.0.0.1:8080", help="IPAM endpoint HOST:PORT (default %(default)s)"
    )
    up.set_defaults(handler=_run_up)
    status = commands.add_parser("status", help="show what podnet up runs")
    _common_options(status)
    status.set_defaults(handler=_run_status)
    down = commands.add_parser("down", help="stop what podnet up started and remove its state")
    _common_options(down)
    down.add_argument("--keep-data", action="store_true", help="keep the Redis data directory")
    down.set_defaults(handler=_run_down)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR,
        help="where podnet keeps pidfiles, logs and Redis data (default %(default)s)",
    )


def _settings(args: argparse.Namespace) -> LabSettings:
    """Settings from the command line; status and down reuse what up recorded."""
    recorded = args.state_dir / "lab.json"
    if not hasattr(args, "listen") and recorded.exists():
        saved = json.loads(recorded.read_text())
        return LabSettings(
            state_dir=args.state_dir, redis_port=saved["redis_port"],
            ipam_listen=saved["ipam_listen"],
        )
    return LabSettings(
        state_dir=args.state_dir,
        redis_port=getattr(args, "redis_port", 16379),
        ipam_listen=getattr(args, "listen", "127.0.0.1:8080"),
        manifests=tuple(getattr(args, "manifests", None) or (DEFAULT_MANIFESTS,)),
    )


def _processes(settings: LabSettings) -> dict[str, BackgroundProcess]:
    return {
        name: BackgroundProcess(name, settings.state_dir)
        for name in ("redis", "ipam-endpoint")
    }


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


def _run_up(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        up(settings)
    except (DaemonError, errors.IpamError, OSError) as exc:
        print(f"podnet: error: {exc}", file=sys.stderr)
        return 1
    return 0


def up(settings: LabSettings) -> list[ManifestProblem]:
    """Bring podnet up (idempotent); returns the manifest problems it reported."""
    processes = _processes(settings)
    redis = settings.redis
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "lab.json").write_text(json.dumps(
        {"redis_port": settings.redis_port, "ipam_listen": settings.ipam_listen}
    ))
    _step(f"Redis on 127.0.0.1:{redis.port} (data in {redis.directory}, AOF on)")
    redis.directory.mkdir(parents=True, exist_ok=True)
    processes["redis"].start(redis.argv())
    redis.wait_ready()
    _step("registering subnets and pools from " + ", ".join(map(str, settings.manifests)))
    problems = asyncio.run(_register(settings))
    for problem in problems:
        print(f"    ! {problem}", flush=True)
    _step(f"IPAM endpoint on http://{settings.ipam_listen}")
    processes["ipam-endpoint"].start([
        sys.executable, "-m", "podnet.cli", "ipam", "serve",
        "--listen", settings.ipam_listen, "--redis", redis.url,
    ])
    _wait_http(f"http://{settings.ipam_listen}/readyz", processes["ipam-endpoint"])
    print(status_report(settings), flush=True)
    print(f"Stop with: podnet down --state-dir {settings.state_dir}")
    return problems


async def _register(settings: LabSettings) -> list[ManifestProblem]:
    manifests, problems = read_manifests(settings.manifests)
    async with open_ipam(settings.redis_settings) as ipam:
        outcome = await register_ipam_objects(ipam, manifests, ensure_default=True)
    for line in outcome.registered:
        print(f"    {line}", flush=True)
    return problems + outcome.problems


def _wait_http(url: str, process: BackgroundProcess, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if process.pid() is None:
            raise DaemonError(f"{process.name} exited; see {process.logfile}")
        time.sleep(0.1)
    raise DaemonError(f"{url} not ready after {timeout_s}s; see {process.logfile}")


def status_report(settings: LabSettings) -> str:
    """The processes ``up`` started and, while Redis runs, every subnet's utilisation."""
    lines = ["", "process          pid      state"]
    for name, process in _processes(settings).items():
        pid = process.pid()
        lines.append(f"{name:<16} {pid or '-':<8} {'running' if pid else 'stopped'}")
    try:
        subnets = asyncio.run(_subnets(settings))
    except errors.IpamError:
        return "\n".join(lines)
    return "\n".join(lines) + "\n\n" + format_table(subnets_table(subnets)) + "\n"


async def _subnets(settings: LabSettings) -> list[dict[str, object]]:
    async with open_ipam(replace(settings.redis_settings, socket_timeout_s=1.0)) as ipam:
        return await subnet_list(ipam)


def _run_status(args: argparse.Namespace) -> int:
    print(status_report(_settings(args)))
    return 0


def down(settings: LabSettings, keep_data: bool = False) -> None:
    for name, process in reversed(list(_processes(settings).items())):
        if process.stop():
            _step(f"stopped {name}")
    if keep_data:
        return
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    _step(f"removed {settings.state_dir}")


def _run_down(args: argparse.Namespace) -> int:
    down(_settings(args), keep_data=args.keep_data)
    return 0
