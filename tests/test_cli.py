"""``podnet ipam`` as an operator uses it: real Redis, real argument parsing, real output.

Most tests call ``podnet.cli.main`` in-process (fast, output via capsys); two run the
installed ``podnet`` command as a subprocess, so the entry point, exit statuses and
signal handling are checked the way a shell or a supervisor sees them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ipam.api import subnet_list
from ipam.cli import Table, collect_allocations, format_table, parse_listen
from ipam.records import Allocation
from ipam.settings import RedisSettings
from ipam.store import Ipam, open_ipam
from ipam.subnet import build_subnet
from podnet.cli import main
from podnet.daemons import free_port
from tests.test_api import BLUE_USABLE, seed_blue

PODNET = Path(sys.executable).parent / "podnet"
T = TypeVar("T")


def with_ipam(settings: RedisSettings, work: Callable[[Ipam], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` on an IPAM of its own (CLI tests are synchronous, like the CLI)."""

    async def run() -> T:
        async with open_ipam(settings) as ipam:
            return await work(ipam)

    return asyncio.run(run())


@pytest.fixture
def store(redis_settings: RedisSettings) -> list[str]:
    """The options that point a command at this test's keys."""
    return ["--redis", redis_settings.url, "--prefix", redis_settings.prefix]


@pytest.fixture
def blue(redis_settings: RedisSettings) -> list[Allocation]:
    return with_ipam(redis_settings, seed_blue)


def podnet(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["ipam", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_subnets_prints_an_aligned_table_of_utilisation(
    capsys: pytest.CaptureFixture[str], store: list[str], blue: list[Allocation]
) -> None:
    status, out, err = podnet(capsys, "subnets", *store)
    assert (status, err) == (0, "")
    header, row = out.splitlines()
    assert header.split() == [
        "NAME", "PROTOCOL", "CIDR", "GATEWAY", "TOTAL", "USED", "RESERVED", "FREE", "EXCLUDED",
        "USE%",
    ]
    assert row.split() == [
        "blue", "IPv4", "10.10.0.0/24", "10.10.0.1", str(BLUE_USABLE), "1", "2",
        str(BLUE_USABLE - 3), "13", "1.2%",
    ]
    assert header.index("TOTAL") + len("TOTAL") == row.index(" 243 ") + len(" 243")


def test_subnets_as_json_is_the_endpoint_view(
    capsys: pytest.CaptureFixture[str], store: list[str], redis_settings: RedisSettings,
    blue: list[Allocation],
) -> None:
    status, out, _ = podnet(capsys, "subnets", *store, "-o", "json")
    assert status == 0
    assert json.loads(out) == with_ipam(redis_settings, subnet_list)


def test_one_subnet_is_shown_with_its_spec(
    capsys: pytest.CaptureFixture[str], store: list[str], blue: list[Allocation]
) -> None:
    status, out, _ = podnet(capsys, "subnets", "blue", *store)
    assert status == 0
    fields = dict(line.split(":  ", 1) for line in out.splitlines())
    assert fields["Namespaces"].strip() == "team-a"
    assert fields["Node selector"].strip() == "zone=a"
    assert fields["NAT outgoing"].strip() == "yes"
    assert fields["IPv4 10.10.0.0/24"].strip() == (
        f"{BLUE_USABLE} usable: 1 used, 2 reserved, {BLUE_USABLE - 3} free (13 excluded)"
    )


def test_ips_lists_every_allocation_in_address_order(
    capsys: pytest.CaptureFixture[str], store: list[str], blue: list[Allocation]
) -> None:
    status, out, _ = podnet(capsys, "ips", "blue", *store)
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split() == ["IPS", "MAC", "STATE", "OWNER", "SINCE"]
    held = sorted((a.ips[0] for a in blue), key=int)
    assert [row.split()[0] for row in rows] == [str(ip) for ip in held]
    owners = {row.split()[0]: row.split()[3] for row in rows}
    assert owners[str(blue[0].ips[0])] == "shop/web-0"
    assert owners[str(blue[2].ips[0])] == "-"


def test_ips_stops_at_the_limit(
    capsys: pytest.CaptureFixture[str], store: list[str], blue: list[Allocation]
) -> None:
    status, out, _ = podnet(capsys, "ips", "blue", *store, "--limit", "2", "-o", "json")
    assert status == 0
    items = json.loads(out)
    assert len(items) == 2
    assert {item["subnet"] for item in items} == {"blue"}


async def test_collecting_allocations_follows_the_cursor_to_the_end(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("wide", "10.20.0.0/24"))
    reserved = [(await ipam.reserve("wide", f"tok-{n}")).ips[0] for n in range(200)]
    items = await collect_allocations(ipam, "wide", page_size=50)
    assert [item["ips"] for item in items] == [[str(ip)] for ip in sorted(reserved, key=int)]


def test_show_finds_the_holder_of_an_ip_and_the_allocation_of_a_pod(
    capsys: pytest.CaptureFixture[str], store: list[str], blue: list[Allocation]
) -> None:
    status, out, _ = podnet(capsys, "show", str(blue[0].ips[0]), *store)
    assert status == 0
    fields = {k: v.strip() for k, v in (line.split(":  ", 1) for line in out.splitlines())}
    assert (fields["Owner"], fields["Pod UID"], fields["State"]) == (
        "shop/web-0", "uid-web-0", "bound",
    )
    status, out, _ = podnet(capsys, "show", "shop/web-1", *store, "-o", "json")
    assert status == 0
    assert json.loads(out)["ips"] == blue[1].ip_strings()


def test_an_ip_nobody_holds_is_one_error_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], store: list[str], blue: list[Allocation]
) -> None:
    assert podnet(capsys, "show", "10.10.0.250", *store) == (
        1, "", "podnet: error: no allocation holds IP 10.10.0.250\n",
    )


def test_show_refuses_a_target_that_is_neither_an_ip_nor_a_pod(
    capsys: pytest.CaptureFixture[str], store: list[str]
) -> None:
    status, out, err = podnet(capsys, "show", "not-an-ip", *store)
    assert (status, out) == (1, "")
    assert err == "podnet: error: target not-an-ip: is neither an IP address nor NAMESPACE/POD\n"


def test_an_unknown_subnet_is_one_error_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], store: list[str]
) -> None:
    assert podnet(capsys, "ips", "nosuch", *store) == (
        1, "", "podnet: error: subnet nosuch does not exist\n",
    )


def test_an_unreachable_redis_is_one_error_line_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    status, out, err = podnet(capsys, "subnets", "--redis", url)
    assert (status, out) == (1, "")
    assert err.startswith("podnet: error: redis") and err.count("\n") == 1


def test_a_malformed_redis_url_is_reported_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = podnet(capsys, "subnets", "--redis", "http://example.test/")
    assert status == 1
    assert err.startswith("podnet: error: --redis http://example.test/:")


def test_the_redis_url_comes_from_podnet_redis_url_when_not_given(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    redis_settings: RedisSettings, blue: list[Allocation],
) -> None:
    monkeypatch.setenv("PODNET_REDIS_URL", redis_settings.url)
    status, out, _ = podnet(capsys, "subnets", "--prefix", redis_settings.prefix, "-o", "json")
    assert status == 0
    assert [subnet["name"] for subnet in json.loads(out)] == ["blue"]


SUBNETS_YAML = """\
apiVersion: kubeovn.io/v1
kind: Subnet
metadata:
  name: green
  creationTimestamp: 2024-05-01T10:00:00Z
spec:
  cidrBlock: 10.30.0.0/24
  namespaces: [garden]
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata:
  name: broken
spec:
  cidrBlock: 10.40.0.0/33
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data: {}
"""

GREEN_YAML = SUBNETS_YAML.split("---", maxsplit=1)[0]

# Named to sort first: pools must still be registered after the subnets they use.
POOLS_YAML = """\
apiVersion: kubeovn.io/v1
kind: IPPool
metadata:
  name: green-pool
spec:
  subnet: green
  ips: ["10.30.0.10..10.30.0.20"]
---
apiVersion: kubeovn.io/v1
kind: IPPool
metadata:
  name: orphan-pool
spec:
  subnet: nosuch
  ips: ["10.50.0.10"]
"""


def test_load_registers_subnets_then_pools_and_reports_each_invalid_object(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, store: list[str],
    redis_settings: RedisSettings,
) -> None:
    (tmp_path / "a-pools.yaml").write_text(POOLS_YAML)
    (tmp_path / "b-subnets.yaml").write_text(SUBNETS_YAML)
    status, out, err = podnet(capsys, "load", str(tmp_path), *store)
    assert status == 1
    errors = [line for line in err.splitlines() if line.startswith("podnet: error:")]
    assert len(errors) == 2
    assert "b-subnets.yaml" in errors[0] and "Subnet broken" in errors[0]
    assert "spec.cidrBlock 10.40.0.0/33: is not a valid CIDR" in errors[0]
    assert "IPPool orphan-pool" in errors[1] and "subnet nosuch does not exist" in errors[1]
    assert "ConfigMap settings" in err and "podnet: note: skipping" in err
    assert "subnet green (10.30.0.0/24) loaded" in out
    assert "ippool green-pool (subnet green, 11 addresses) loaded" in out
    assert out.splitlines()[-1] == "loaded 2, unchanged 0, skipped 1, failed 2"

    async def registered(ipam: Ipam) -> tuple[list[str], list[str]]:
        return await ipam.subnet_names(), [pool.name for pool in await ipam.pools()]

    assert with_ipam(redis_settings, registered) == (["green"], ["green-pool"])


def test_loading_the_same_manifests_again_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, store: list[str]
) -> None:
    manifest = tmp_path / "subnet.yaml"
    manifest.write_text(GREEN_YAML)
    assert podnet(capsys, "load", str(manifest), *store)[0] == 0
    status, out, _ = podnet(capsys, "load", str(manifest), *store)
    assert status == 0
    assert out.splitlines()[-1] == "loaded 0, unchanged 1, skipped 0, failed 0"


def test_load_reports_unreadable_files_and_still_loads_the_rest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, store: list[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GREEN_YAML)
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Subnet\n  metadata: [unclosed\n")
    missing = tmp_path / "missing.yaml"
    status, out, err = podnet(capsys, "load", str(bad), str(missing), str(good), *store)
    assert status == 1
    assert f"podnet: error: {bad}: cannot be read" in err
    assert f"podnet: error: {missing}: cannot be read" in err
    assert "subnet green (10.30.0.0/24) loaded" in out


def test_the_installed_command_prints_subnets_as_json(
    redis_settings: RedisSettings, store: list[str], blue: list[Allocation]
) -> None:
    result = subprocess.run(
        [str(PODNET), "ipam", "subnets", *store, "-o", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    (subnet,) = json.loads(result.stdout)
    assert (subnet["name"], subnet["used"], subnet["reserved"]) == ("blue", 1, 2)


def http_get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def wait_for_http(url: str, process: subprocess.Popen[str], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            http_get(url)
        except OSError:
            time.sleep(0.05)
            continue
        return
    raise AssertionError(f"{url} did not answer within {timeout_s}s")


def test_serve_answers_over_http_until_sigterm(
    store: list[str], blue: list[Allocation]
) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [str(PODNET), "ipam", "serve", "--listen", base.removeprefix("http://"), *store],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for_http(f"{base}/healthz", process)
        assert http_get(f"{base}/readyz") == (200, {"status": "ok"})
        status, subnets = http_get(f"{base}/api/v1/subnets")
        assert (status, [s["name"] for s in subnets]) == (200, ["blue"])
        status, body = http_get(f"{base}/api/v1/ips/10.10.0.250")
        assert (status, body["error"]["code"]) == (404, "not_found")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_serve_reports_a_port_already_in_use(
    capsys: pytest.CaptureFixture[str], store: list[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, err = podnet(capsys, "serve", "--listen", f"127.0.0.1:{port}", *store)
    assert status == 1
    assert err.startswith(f"podnet: error: cannot listen on http://127.0.0.1:{port}:")


def test_serve_refuses_a_malformed_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ipam", "serve", "--listen", "8080"])
    assert exit_info.value.code == 2
    assert "argument --listen: '8080': expected HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("0.0.0.0:80", ("0.0.0.0", 80)),
     ("[::1]:9000", ("::1", 9000)), ("localhost:65535", ("localhost", 65535))],
)
def test_listen_addresses_are_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8080", ":8080", "host:", "host:0", "host:65536", "::1:80",
                                  "host:http"])
def test_malformed_listen_addresses_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"HOST:PORT|port must be|brackets"):
        parse_listen(text)


@pytest.mark.parametrize("subcommand", ["serve", "subnets", "ips", "show", "load"])
def test_every_subcommand_explains_itself(
    capsys: pytest.CaptureFixture[str], subcommand: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ipam", subcommand, "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert f"usage: podnet ipam {subcommand}" in help_text
    assert "--redis URL" in help_text and "PODNET_REDIS_URL" in help_text


def test_tables_right_align_numeric_columns() -> None:
    table = Table(("NAME", "FREE"), (("a", "5"), ("longer", "1234")), frozenset({1}))
    assert format_table(table).splitlines() == [
        "NAME    FREE",
        "a          5",
        "longer  1234",
    ]
