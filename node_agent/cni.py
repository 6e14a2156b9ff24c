"""``podnet-cni``: the executable a container runtime runs; a thin shim to the node agent.

A runtime execs a CNI plugin for every pod it starts or stops, so the plugin must start
fast and must not hold state: everything stateful (OVSDB and netlink connections, the
pod informer, the IPAM) lives in the long-running ``podnet agent``. The shim reads the
``CNI_*`` environment and the network configuration on stdin, answers VERSION itself,
forwards every other call over the agent's root-only unix socket (path from the
configuration's ``socket`` key), and prints the agent's answer: a result, nothing, or a
CNI error JSON (``code``, ``msg``, ``details``). It never prints a traceback.

It imports nothing beyond what the interpreter loads anyway (``os``, ``sys``), the C
modules ``_socket`` and ``_json``, and podnet's tiny ``errors`` and ``protocol``; run by
the launcher ``podnet agent --install-cni`` writes (``python -I -S``), it starts in about
the time of a bare interpreter.
"""

from __future__ import annotations

import _socket
import os
import sys

from node_agent import errors, protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import IO, Any

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
NEEDS_CONTAINER = ("ADD", "DEL", "CHECK")
NEEDS_NETNS = ("ADD", "CHECK")
DEFAULT_TIMEOUT_S = 180.0
"""How long the shim waits for the agent; the agent's own waits are shorter."""


def version_answer() -> dict[str, object]:
    return {"cniVersion": errors.CNI_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}


def read_config(stdin: IO[bytes]) -> dict[str, Any]:
    """The network configuration from stdin; a CNI error when it is not a JSON object."""
    raw = stdin.read(protocol.MAX_MESSAGE_BYTES + 1)
    if len(raw) > protocol.MAX_MESSAGE_BYTES:
        raise errors.DecodingFailure("podnet-cni: the network configuration is too large")
    try:
        config = protocol.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.DecodingFailure(
            "podnet-cni: the network configuration on stdin is not valid JSON", str(exc)
        ) from exc
    if not isinstance(config, dict):
        raise errors.InvalidConfig("podnet-cni: the network configuration is not a JSON object")
    version = config.get("cniVersion", "")
    if version and version not in SUPPORTED_VERSIONS:
        raise errors.IncompatibleVersion(
            f"podnet-cni: cniVersion {version} is not supported",
            f"supported: {', '.join(SUPPORTED_VERSIONS)}",
        )
    return config


def build_request(env: Mapping[str, str], config: dict[str, Any]) -> protocol.Request:
    """The request for the agent; checks the variables the command cannot do without."""
    command = env.get("CNI_COMMAND", "")
    if command in NEEDS_CONTAINER:
        for name in ("CNI_CONTAINERID", "CNI_IFNAME"):
            if not env.get(name):
                raise errors.InvalidEnvironment(f"podnet-cni: {name} is not set")
    if command in NEEDS_NETNS and not env.get("CNI_NETNS"):
        raise errors.InvalidEnvironment("podnet-cni: CNI_NETNS is not set")
    return protocol.request(
        command, config, container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""), ifname=env.get("CNI_IFNAME", ""),
        args=env.get("CNI_ARGS", ""), path=env.get("CNI_PATH", ""),
    )


def call_agent(path: str, message: protocol.Request, timeout_s: float) -> protocol.Reply:
    """Send one request over the agent's socket and read its one-line answer."""
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.settimeout(timeout_s)
        try:
            conn.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise errors.AgentUnreachable(
                f"podnet-cni: the podnet agent is not running on this node (socket {path})",
                str(exc),
            ) from exc
        except OSError as exc:
            raise errors.AgentUnreachable(
                f"podnet-cni: cannot reach the podnet agent at {path}", str(exc)
            ) from exc
        try:
            conn.sendall(protocol.encode(message))
            answer = _read_line(conn)
        except TimeoutError as exc:
            raise errors.TryAgainLater(
                f"podnet-cni: the podnet agent did not answer in {timeout_s:.0f}s"
            ) from exc
        except OSError as exc:
            raise errors.IoFailure("podnet-cni: the agent connection failed", str(exc)) from exc
    finally:
        conn.close()
    if not answer:
        raise errors.ProtocolError("podnet-cni: the agent closed the connection without answer")
    return protocol.decode_reply(answer)


def _read_line(conn: _socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > protocol.MAX_MESSAGE_BYTES:
            break
    return b"".join(chunks)


def timeout_of(config: Mapping[str, Any]) -> float:
    value = config.get("timeout", DEFAULT_TIMEOUT_S)
    return float(value) if isinstance(value, int | float) and value > 0 else DEFAULT_TIMEOUT_S


def run(env: Mapping[str, str], stdin: IO[bytes], stdout: IO[str]) -> int:
    """One CNI call; prints the answer and returns the exit status. Raises CniError."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise errors.InvalidEnvironment("podnet-cni: CNI_COMMAND is not set")
    if command == "VERSION":
        stdout.write(protocol.dumps(version_answer()) + "\n")
        return 0
    if command not in protocol.COMMANDS:
        raise errors.InvalidEnvironment(
            f"podnet-cni: unknown CNI_COMMAND {command!r}",
            f"known: VERSION, {', '.join(protocol.COMMANDS)}",
        )
    config = read_config(stdin)
    message = build_request(env, config)
    path = config.get("socket") or protocol.DEFAULT_SOCKET
    if not isinstance(path, str):
        raise errors.InvalidConfig("podnet-cni: the configuration's socket is not a path")
    reply = call_agent(path, message, timeout_of(config))
    if not reply["ok"]:
        body = reply.get("error", {"code": errors.InternalError.code, "msg": "no error"})
        _print_error(stdout, body, _version(config))
        return 1
    if "result" in reply:
        stdout.write(protocol.dumps(reply["result"]) + "\n")
    return 0


def _version(config: object) -> str:
    if isinstance(config, dict) and isinstance(config.get("cniVersion"), str):
        return str(config["cniVersion"]) or errors.CNI_VERSION
    return errors.CNI_VERSION


def _print_error(stdout: IO[str], body: Mapping[str, object], cni_version: str) -> None:
    stdout.write(protocol.dumps({"cniVersion": cni_version, **body}) + "\n")


def main() -> int:
    """The ``podnet-cni`` entry point: any failure becomes a CNI error JSON on stdout."""
    try:
        return run(os.environ, sys.stdin.buffer, sys.stdout)
    except errors.CniError as exc:
        _print_error(sys.stdout, exc.to_json(), errors.CNI_VERSION)
    except BaseException as exc:  # never a traceback: the runtime shows stdout to users
        error = errors.InternalError(f"podnet-cni: {type(exc).__name__}: {exc}")
        _print_error(sys.stdout, error.to_json(), errors.CNI_VERSION)
    sys.stdout.flush()
    return 1


if __name__ == "__main__":
    sys.exit(main())
