"""Start and stop the daemons podnet runs beside itself, each in a directory it owns.

``podnet up`` and the test fixtures both use this: a daemon gets its own data
directory, socket and log file, and is stopped by the PID we started, never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from podnet_plumbing.processes import running


class DaemonError(RuntimeError):
    """A daemon could not be started or did not become ready."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def require_binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise DaemonError(f"{name} is not installed (run scripts/bootstrap)")
    return path


@dataclass
class RedisServer:
    """A redis-server in ``directory`` listening on loopback ``port`` and a unix socket."""

    directory: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = True
    appendfsync: str = "everysec"
    """``always`` makes every acknowledged write survive a SIGKILL, at a cost in speed."""
    password: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"unix://{auth}{self.socket_path}?db=0"

    def argv(self) -> list[str]:
        """The redis-server command line for this server."""
        args = [
            require_binary("redis-server"),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL)
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise DaemonError(
                    f"redis-server exited with {self.process.returncode}; "
                    f"see {self.directory / 'redis.log'}"
                )
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.2
            ) as conn:
                conn.sendall(b"PING\r\n")
                reply = conn.recv(64)
                if reply.startswith((b"+PONG", b"-NOAUTH")):
                    return
            time.sleep(0.02)
        raise DaemonError(f"redis-server on port {self.port} not ready after {timeout_s}s")

    def stop(self, kill: bool = False) -> None:
        """Stop the server we started (SIGKILL with ``kill``, to simulate a crash)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass(frozen=True)
class BackgroundProcess:
    """A daemon that outlives the command that started it, tracked by a pidfile.

    ``stop`` signals only the PID we recorded, and only if that process still runs the
    program we started (a PID can be reused after a reboot).
    """

    name: str
    state_dir: Path

    @property
    def pidfile(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) and self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` still runs the executable we started (daemons may retitle
        themselves, so the executable is compared, not the command line)."""
        try:
            recorded = self.pidfile.read_text().split()[1]
            running = os.readlink(f"/proc/{pid}/exe")
        except (OSError, IndexError):
            return False
        return os.path.realpath(recorded) == os.path.realpath(running)

    def start(self, argv: list[str]) -> int:
        """Start ``argv`` detached (own session, output to the log); returns its PID."""
        running = self.pid()
        if running is not None:
            return running
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        self.pidfile.write_text(f"{process.pid} {' '.join(argv)}\n")
        return process.pid

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the recorded process; returns whether one was running."""
        pid = self.pid()
        self.pidfile.unlink(missing_ok=True)
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it was our child
        return True
