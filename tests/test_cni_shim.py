"""``podnet-cni`` and its socket: what a runtime sees for every kind of input.

The shim is run in-process with fake streams where that is enough, and as the real
launcher (``python -I -S``) where start-up cost and stdout matter. The agent side is the
real :class:`node_agent.server.CniServer` with a stub handler.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from node_agent import cni, errors, protocol
from node_agent.install import install_cni, launcher_text
from node_agent.server import CniServer, SocketInUse


def shim(env: dict[str, str], stdin: bytes = b"") -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    try:
        code = cni.run(env, io.BytesIO(stdin), out)
    except errors.CniError as exc:
        return 1, exc.to_json()
    return code, json.loads(out.getvalue()) if out.getvalue() else {}


ADD = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0",
       "CNI_NETNS": "/run/netns/x", "CNI_ARGS": "K8S_POD_NAME=web"}


# --- the wire format --------------------------------------------------------------------


def test_json_round_trips_through_the_fast_codec() -> None:
    value = {"a": [1, 2.5, "é", None, True], "b": {"c": ""}}
    assert protocol.loads(protocol.dumps(value)) == value
    assert protocol.loads(b' {"x": 1}\n') == {"x": 1}


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "[1,", "nul", '"open'])
def test_malformed_json_raises_a_value_error_naming_the_position(text: str) -> None:
    with pytest.raises(ValueError, match="char"):
        protocol.loads(text)


def test_a_request_from_another_wire_version_is_a_protocol_error() -> None:
    with pytest.raises(errors.ProtocolError, match="wire version"):
        protocol.decode_request(b'{"wire": 99, "command": "ADD", "config": {}}\n')


# --- the shim alone ----------------------------------------------------------------------


def test_version_is_answered_by_the_shim_itself() -> None:
    code, answer = shim({"CNI_COMMAND": "VERSION"})
    assert code == 0 and "1.0.0" in answer["supportedVersions"]


@pytest.mark.parametrize(("env", "stdin", "code"), [
    ({}, b"{}", 4),
    ({"CNI_COMMAND": "FROB"}, b"{}", 4),
    ({**ADD, "CNI_CONTAINERID": ""}, b"{}", 4),
    ({**ADD, "CNI_NETNS": ""}, b"{}", 4),
    (ADD, b"{not json", 6),
    (ADD, b"[1, 2]", 7),
    (ADD, b'{"cniVersion": "0.1.0"}', 1),
    (ADD, b'{"cniVersion": "1.0.0", "socket": 5}', 7),
])
def test_bad_input_is_refused_before_reaching_the_agent(
    env: dict[str, str], stdin: bytes, code: int,
) -> None:
    status, answer = shim(env, stdin)
    assert (status, answer["code"]) == (1, code)


def test_an_unexpected_failure_is_still_one_line_of_cni_error_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    def explode(*args: object) -> int:
        raise KeyError("surprise")

    monkeypatch.setattr(cni, "run", explode)
    assert cni.main() == 1
    out = capsys.readouterr()
    answer = json.loads(out.out)
    assert answer["code"] == 199 and "KeyError" in answer["msg"]
    assert "Traceback" not in out.out + out.err


# --- shim and server -------------------------------------------------------------------------


@pytest.fixture
def socket_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = Path(os.path.realpath("/tmp")) / f"pn-shim-{os.getpid()}-{id(tmp_path_factory)}"
    yield directory / "cni.sock"
    if directory.exists():
        for item in directory.iterdir():
            item.unlink()
        directory.rmdir()


async def handler(request: protocol.Request) -> dict[str, Any] | None:
    command = request["command"]
    if command == "ADD":
        return {"cniVersion": "1.0.0", "echo": request["containerId"]}
    if command == "CHECK":
        raise errors.CheckFailed("podnet: not healthy", "eth0 is down")
    if command == "GC":
        raise RuntimeError("a bug")
    return None


@pytest.fixture
async def server(socket_path: Path) -> AsyncIterator[CniServer]:
    served = CniServer(str(socket_path), handler)
    await served.start()
    yield served
    await served.stop()


async def call(socket_path: Path, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    stdin = json.dumps({"cniVersion": "1.0.0", "name": "n", "socket": str(socket_path)})
    return await asyncio.to_thread(shim, env, stdin.encode())


async def test_the_agents_result_is_printed_as_the_cni_result(
    server: CniServer, socket_path: Path,
) -> None:
    assert await call(socket_path, ADD) == (0, {"cniVersion": "1.0.0", "echo": "c1"})


async def test_an_agent_error_keeps_its_code_and_details(
    server: CniServer, socket_path: Path,
) -> None:
    code, answer = await call(socket_path, {**ADD, "CNI_COMMAND": "CHECK"})
    assert code == 1
    assert answer == {"cniVersion": "1.0.0", "code": 105, "msg": "podnet: not healthy",
                      "details": "eth0 is down"}


async def test_a_bug_in_the_agent_is_an_internal_error_not_a_hang(
    server: CniServer, socket_path: Path,
) -> None:
    code, answer = await call(socket_path, {**ADD, "CNI_COMMAND": "GC"})
    assert (code, answer["code"]) == (1, 199)
    assert "RuntimeError: a bug" in answer["msg"]


async def test_calls_without_a_result_print_nothing(
    server: CniServer, socket_path: Path,
) -> None:
    assert await call(socket_path, {**ADD, "CNI_COMMAND": "DEL"}) == (0, {})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_socket_is_for_root_alone(server: CniServer, socket_path: Path) -> None:
    assert mode(socket_path) == 0o600
    assert mode(socket_path.parent) == 0o700


async def test_a_second_agent_on_the_same_socket_is_refused(
    server: CniServer, socket_path: Path,
) -> None:
    with pytest.raises(SocketInUse):
        await CniServer(str(socket_path), handler).start()


async def test_a_stale_socket_of_a_dead_agent_is_replaced(socket_path: Path) -> None:
    first = CniServer(str(socket_path), handler)
    await first.start()
    assert first._server is not None
    first._server.close()  # dies without removing its socket file
    second = CniServer(str(socket_path), handler)
    await second.start()
    try:
        assert (await call(socket_path, ADD))[0] == 0
    finally:
        await second.stop()


# --- the launcher -----------------------------------------------------------------------------


def test_the_launcher_runs_isolated_without_site(tmp_path: Path) -> None:
    text = launcher_text(python="/usr/bin/python3")
    assert text.startswith("#!/usr/bin/python3 -IS\n")
    plugin = install_cni(tmp_path / "bin")
    assert os.access(plugin, os.X_OK)
    done = subprocess.run([str(plugin)], env={"CNI_COMMAND": "VERSION"}, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and json.loads(done.stdout)["cniVersion"] == "1.1.0"


def test_the_shim_imports_nothing_heavy() -> None:
    root = Path(cni.__file__).resolve().parent.parent
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import node_agent.cni; "
             "print(' '.join(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(root)],
                          capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert not loaded & {"json", "re", "typing", "socket", "asyncio", "dataclasses",
                         "pyroute2", "ovsdbapp", "ipam"}
