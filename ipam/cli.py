"""``podnet ipam``: the IPAM's query views in a terminal, its endpoint, and manifest loading.

Whoever debugs an address problem needs the answers of the query endpoint where the
endpoint may not run (a laptop with a port-forward to Redis, a CI job), so the
subcommands print the same views (``ipam.api``'s view functions) as aligned tables or
as the endpoint's JSON. ``load`` registers Kube-OVN ``Subnet`` and ``IPPool`` manifests,
reporting every invalid object by file and name rather than stopping at the first.

The environment is read here and only here (``PODNET_REDIS_URL``); everything below the
CLI gets its settings as arguments. Expected failures are one line on stderr and exit
status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

from aiohttp import web

from ipam import errors
from ipam.api import (
    NotFound,
    ip_owner,
    ip_page,
    make_app,
    pod_allocation,
    subnet_detail,
    subnet_list,
)
from ipam.options import add_redis_options, redis_settings
from ipam.register import Registration, register_ipam_objects
from ipam.store import Ipam
from podnet_plumbing.manifests import Manifest, read_manifests
from podnet_plumbing.signals import STOP_SIGNALS

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:8080"
KUBEOVN_API_VERSION = "kubeovn.io/v1"
PAGE_SIZE = 1000

JsonObject = dict[str, object]
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Runner = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


# ------------------------------------------------------------------ table shaping


@dataclass(frozen=True)
class Table:
    """Rows of text under a header; ``numeric`` columns are right-aligned."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: frozenset[int] = frozenset()


def format_table(table: Table) -> str:
    widths = [len(title) for title in table.header]
    for row in table.rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if index in table.numeric else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(table.header), *(line(row) for row in table.rows)])


def format_fields(fields: Sequence[tuple[str, str]]) -> str:
    """``label:  value`` lines with the values aligned, for one object."""
    width = max((len(label) for label, _ in fields), default=0) + 1
    return "\n".join(f"{label + ':':<{width}}  {value}" for label, value in fields)


def text(value: object) -> str:
    """A JSON value as a table cell: ``-`` for nothing, lists and maps comma-joined."""
    if value is None or value in ("", [], {}):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ",".join(f"{key}={item}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ",".join(text(item) for item in value)
    return str(value)


def time_text(ms: object) -> str:
    """Milliseconds since the epoch as UTC time; ``-`` when unset."""
    if not isinstance(ms, int) or isinstance(ms, bool) or ms <= 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def percent(part: object, whole: object) -> str:
    if not isinstance(part, int) or not isinstance(whole, int) or whole <= 0:
        return "-"
    return f"{100 * part / whole:.1f}%"


def owner_text(allocation: Mapping[str, object]) -> str:
    """Who holds an allocation: the pod, else the StatefulSet ordinal it is kept for."""
    owner = allocation.get("owner")
    if isinstance(owner, Mapping):
        return f"{owner.get('namespace')}/{owner.get('name')}"
    key = allocation.get("statefulset_key")
    return f"statefulset {key}" if key else "-"


def _count(item: Mapping[str, object], key: str) -> int:
    value = item.get(key)
    return value if isinstance(value, int) else 0


def subnets_table(items: Sequence[Mapping[str, object]]) -> Table:
    """The subnet list (``GET /api/v1/subnets``) as a table."""
    header = ("NAME", "PROTOCOL", "CIDR", "GATEWAY", "TOTAL", "USED", "RESERVED", "FREE",
              "EXCLUDED", "USE%")
    rows = tuple(
        (
            text(item.get("name")) + (" (fenced)" if item.get("fenced") else ""),
            text(item.get("protocol")),
            text(item.get("cidrBlock")),
            text(item.get("gateway")),
            *(str(_count(item, key)) for key in ("total", "used", "reserved", "free", "excluded")),
            percent(_count(item, "used") + _count(item, "reserved"), item.get("total")),
        )
        for item in items
    )
    return Table(header, rows, frozenset(range(4, 10)))


def allocations_table(items: Sequence[Mapping[str, object]]) -> Table:
    """Allocations (``GET /api/v1/subnets/{name}/ips`` items) as a table."""
    header = ("IPS", "MAC", "STATE", "OWNER", "SINCE")
    rows = tuple(
        (
            text(item.get("ips")),
            text(item.get("mac")),
            text(item.get("state")),
            owner_text(item),
            time_text(item.get("since_ms")),
        )
        for item in items
    )
    return Table(header, rows)


def allocation_fields(item: Mapping[str, object]) -> list[tuple[str, str]]:
    """One allocation (``GET /api/v1/ips/{ip}`` or ``/pods/...``) as labelled fields."""
    owner = item.get("owner")
    uid = owner.get("uid") if isinstance(owner, Mapping) else None
    return [
        ("IPs", text(item.get("ips"))),
        ("MAC", text(item.get("mac"))),
        ("Subnet", text(item.get("subnet"))),
        ("State", text(item.get("state"))),
        ("Owner", owner_text(item)),
        ("Pod UID", text(uid)),
        ("StatefulSet key", text(item.get("statefulset_key"))),
        ("Reservation", text(item.get("reservation"))),
        ("Since", time_text(item.get("since_ms"))),
        ("Expires", time_text(item.get("expires_ms"))),
    ]


def family_text(family: Mapping[str, object]) -> str:
    return (
        f"{_count(family, 'total')} usable: {_count(family, 'used')} used, "
        f"{_count(family, 'reserved')} reserved, {_count(family, 'free')} free "
        f"({_count(family, 'excluded')} excluded)"
    )


def subnet_fields(detail: Mapping[str, object]) -> list[tuple[str, str]]:
    """One subnet (``GET /api/v1/subnets/{name}``) as labelled fields."""
    fields = [
        ("Name", text(detail.get("name"))),
        ("Protocol", text(detail.get("protocol"))),
        ("CIDR", text(detail.get("cidrBlock"))),
        ("Gateway", text(detail.get("gateway"))),
        ("Exclude IPs", text(detail.get("excludeIps"))),
        ("Namespaces", text(detail.get("namespaces"))),
        ("Node selector", text(detail.get("nodeSelector"))),
        ("Default", text(detail.get("default"))),
        ("Private", text(detail.get("private"))),
        ("Allow subnets", text(detail.get("allowSubnets"))),
        ("NAT outgoing", text(detail.get("natOutgoing"))),
        ("Gateway type", text(detail.get("gatewayType"))),
        ("Gateway node", text(detail.get("gatewayNode"))),
        ("ACLs", acls_text(detail.get("acls"))),
        ("Allow EW traffic", text(detail.get("allowEWTraffic"))),
        ("Fenced", text(detail.get("fenced"))),
        ("Kept", text(detail.get("kept"))),
    ]
    families = detail.get("families")
    for family in families if isinstance(families, list) else []:
        if isinstance(family, Mapping):
            fields.append((f"{family.get('family')} {family.get('cidr')}", family_text(family)))
    return fields


def acls_text(value: object) -> str:
    """A subnet's ``spec.acls``, one ``direction priority match action`` each."""
    acls = [acl for acl in value if isinstance(acl, Mapping)] if isinstance(value, list) else []
    if not acls:
        return "-"
    return "; ".join(f"{acl.get('direction')} {acl.get('priority')} {acl.get('match')} "
                     f"{acl.get('action')}" for acl in acls)


def ip_sort_key(item: Mapping[str, object]) -> list[tuple[int, int]]:
    """Order allocations by address (IPv4 before IPv6), as people read them."""
    ips = item.get("ips")
    key: list[tuple[int, int]] = []
    for value in ips if isinstance(ips, list) else []:
        address = ipaddress.ip_address(str(value))
        key.append((address.version, int(address)))
    return key


# ------------------------------------------------------------------------ parsing


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 hosts in brackets: ``[::1]:8080``) for ``--listen``."""
    host, colon, port_text = value.strip().rpartition(":")
    example = "expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080"
    if not colon or not host:
        raise argparse.ArgumentTypeError(f"{value!r}: {example}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"{value!r}: put an IPv6 host in brackets ({example})")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return int(value)


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# ------------------------------------------------------------------------ running


def fail(message: str) -> int:
    print(f"podnet: error: {message}", file=sys.stderr)
    return 1


def note(message: str) -> None:
    print(f"podnet: note: {message}", file=sys.stderr)


def emit_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def _command(run: Runner) -> Callable[[argparse.Namespace], int]:
    """A subcommand handler: run ``run`` to completion, expected errors as one line."""

    def handler(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(run(args))
        except (errors.IpamError, NotFound) as exc:
            return fail(str(exc))

    return handler


def connect(args: argparse.Namespace) -> Ipam:
    try:
        return Ipam.connect(redis_settings(args))
    except ValueError as exc:
        raise errors.MalformedValue("--redis", args.redis, str(exc)) from None


@asynccontextmanager
async def connected(args: argparse.Namespace) -> AsyncIterator[Ipam]:
    ipam = connect(args)
    try:
        yield ipam
    finally:
        await ipam.close()


# ------------------------------------------------------------------- subcommands


async def run_subnets(args: argparse.Namespace) -> int:
    async with connected(args) as ipam:
        if args.name:
            detail = await subnet_detail(ipam, args.name)
            if args.output == "json":
                emit_json(detail)
            else:
                print(format_fields(subnet_fields(detail)))
            return 0
        items = await subnet_list(ipam)
    if args.output == "json":
        emit_json(items)
    elif items:
        print(format_table(subnets_table(items)))
    else:
        note(f"no subnets under prefix {args.prefix!r} in {args.redis}")
    return 0


async def collect_allocations(
    ipam: Ipam, subnet: str, limit: int | None = None, page_size: int = PAGE_SIZE
) -> list[JsonObject]:
    """A subnet's allocations, page after page (at most ``limit``), in address order."""
    found: dict[str, JsonObject] = {}
    cursor = 0
    while limit is None or len(found) < limit:
        want = page_size if limit is None else min(limit - len(found), page_size)
        page = await ip_page(ipam, subnet, cursor, want)
        for item in page["items"]:  # a rehash during the scan may repeat an entry
            found.setdefault(str(item.get("reservation")), item)
        cursor = page["next_cursor"]
        if cursor == 0:
            break
    ordered = sorted(found.values(), key=ip_sort_key)
    return ordered if limit is None else ordered[:limit]


async def run_ips(args: argparse.Namespace) -> int:
    async with connected(args) as ipam:
        items = await collect_allocations(ipam, args.subnet, args.limit)
    if args.output == "json":
        emit_json(items)
    elif items:
        print(format_table(allocations_table(items)))
    else:
        note(f"subnet {args.subnet} has no allocations")
    return 0


async def find_target(ipam: Ipam, target: str) -> JsonObject:
    """The allocation of ``NAMESPACE/POD``, or of the pod holding an IP."""
    if "/" in target:
        namespace, _, name = target.partition("/")
        if not namespace or not name or "/" in name:
            raise errors.MalformedValue("target", target, "is neither an IP nor NAMESPACE/POD")
        return await pod_allocation(ipam, namespace, name)
    try:
        ipaddress.ip_address(target.strip())
    except ValueError:
        raise errors.MalformedValue(
            "target", target, "is neither an IP address nor NAMESPACE/POD"
        ) from None
    return await ip_owner(ipam, target)


async def run_show(args: argparse.Namespace) -> int:
    async with connected(args) as ipam:
        item = await find_target(ipam, args.target)
    if args.output == "json":
        emit_json(item)
    else:
        print(format_fields(allocation_fields(item)))
    return 0


async def until_signalled() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = STOP_SIGNALS
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        await stop.wait()
    finally:
        for number in signals:
            loop.remove_signal_handler(number)


async def run_serve(args: argparse.Namespace) -> int:
    host, port = args.listen
    runner = web.AppRunner(make_app(connect(args), owns_ipam=True), access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            return fail(f"cannot listen on {url_of(host, port)}: {exc.strerror or exc}")
        log.info("IPAM query endpoint on %s (Redis %s, prefix %r)",
                 url_of(host, port), args.redis, args.prefix)
        await until_signalled()
        log.info("stopping")
    finally:
        await runner.cleanup()
    return 0


# -------------------------------------------------------------------------- load


def is_ipam_object(manifest: Manifest) -> bool:
    return manifest.is_kubeovn and manifest.kind in ("Subnet", "IPPool")


async def run_load(args: argparse.Namespace) -> int:
    manifests, problems = read_manifests(args.paths)
    for manifest in manifests:
        if not is_ipam_object(manifest):
            version = manifest.obj.get("apiVersion") or "no apiVersion"
            note(f"skipping {manifest.describe()} ({version}): not a {KUBEOVN_API_VERSION} "
                 "Subnet or IPPool")
    outcome = Registration()
    if any(is_ipam_object(m) for m in manifests):
        async with connected(args) as ipam:
            outcome = await register_ipam_objects(ipam, manifests)
    for line in outcome.registered:
        print(f"{line} loaded")
    for line in outcome.unchanged:
        print(f"{line} unchanged")
    failures = problems + outcome.problems
    for problem in failures:
        print(f"podnet: error: {problem}", file=sys.stderr)
    skipped = sum(not is_ipam_object(m) for m in manifests)
    print(f"loaded {len(outcome.registered)}, unchanged {len(outcome.unchanged)}, "
          f"skipped {skipped}, failed {len(failures)}")
    return 1 if failures else 0


# ------------------------------------------------------------------ registration


def _store_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_redis_options(parent.add_argument_group("store"))
    return parent


def _output_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-o", "--output", choices=["table", "json"], default="table",
        help="an aligned table (default) or the query endpoint's JSON",
    )
    return parent


def describe(prose: str, examples: Sequence[str] = ()) -> str:
    """A subcommand's description: wrapped prose, then examples kept as written."""
    wrapped = textwrap.fill(prose, width=78)
    if not examples:
        return wrapped
    return wrapped + "\n\nexamples:\n" + "\n".join(f"  {example}" for example in examples)


def _add(
    sub: Subcommands, name: str, run: Runner, *, summary: str, description: str,
    parents: Sequence[argparse.ArgumentParser], examples: Sequence[str] = (),
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=describe(description, examples),
        parents=list(parents),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=_command(run))
    return parser


def register(commands: Subcommands) -> None:
    """Add ``podnet ipam`` and its subcommands."""
    ipam_parser = commands.add_parser(
        "ipam", help="inspect and load the IP address management (IPAM)",
        description="Inspect podnet's address index in Redis, serve it over HTTP, or load "
        "Kube-OVN Subnet and IPPool manifests into it.",
    )
    sub = ipam_parser.add_subparsers(dest="ipam_command", metavar="SUBCOMMAND", required=True)
    store, output = _store_options(), _output_options()
    _register_serve(sub, store)
    _register_subnets(sub, store, output)
    _register_ips(sub, store, output)
    _register_show(sub, store, output)
    _register_load(sub, store)


def _register_serve(sub: Subcommands, store: argparse.ArgumentParser) -> None:
    serve = _add(
        sub, "serve", run_serve, summary="serve the read-only query endpoint over HTTP",
        description="Serve the IPAM's read-only JSON endpoint (/api/v1/...), its OpenAPI "
        "document (/api/v1/openapi.json), Prometheus metrics (/metrics) and health checks "
        "(/healthz, /readyz) until SIGINT or SIGTERM.",
        examples=["podnet ipam serve --listen 0.0.0.0:8080 --redis redis://redis:6379/0"],
        parents=[store],
    )
    serve.add_argument(
        "--listen", metavar="HOST:PORT", type=parse_listen, default=DEFAULT_LISTEN,
        help=f"address to listen on, IPv6 in brackets (default: {DEFAULT_LISTEN})",
    )


def _register_subnets(
    sub: Subcommands, store: argparse.ArgumentParser, output: argparse.ArgumentParser
) -> None:
    subnets = _add(
        sub, "subnets", run_subnets, summary="list subnets with their utilisation",
        description="List every subnet with its address counts (total, used, reserved, "
        "free, excluded), or show one subnet with its spec.",
        examples=["podnet ipam subnets", "podnet ipam subnets ovn-default -o json"],
        parents=[store, output],
    )
    subnets.add_argument("name", nargs="?", metavar="NAME", help="show only this subnet, in full")


def _register_ips(
    sub: Subcommands, store: argparse.ArgumentParser, output: argparse.ArgumentParser
) -> None:
    ips = _add(
        sub, "ips", run_ips, summary="list the allocations of a subnet",
        description="List the addresses held in a subnet, in address order: by which pod, "
        "in which state (reserved at admission, bound to a stored pod, kept for a "
        "StatefulSet ordinal), since when.",
        parents=[store, output],
    )
    ips.add_argument("subnet", metavar="SUBNET", help="the subnet's name")
    ips.add_argument(
        "--limit", type=positive_int, metavar="N",
        help="show at most N allocations (default: all, fetched page by page)",
    )


def _register_show(
    sub: Subcommands, store: argparse.ArgumentParser, output: argparse.ArgumentParser
) -> None:
    show = _add(
        sub, "show", run_show, summary="show who holds an IP, or what a pod holds",
        description="Show the allocation holding an IP address, or the allocation of a "
        "pod.",
        examples=["podnet ipam show 10.16.0.5", "podnet ipam show default/web-0 -o json"],
        parents=[store, output],
    )
    show.add_argument("target", metavar="IP|NAMESPACE/POD", help="an IP address or a pod")


def _register_load(sub: Subcommands, store: argparse.ArgumentParser) -> None:
    load = _add(
        sub, "load", run_load, summary="register Subnet and IPPool manifests",
        description=f"Register every {KUBEOVN_API_VERSION} Subnet and then every IPPool "
        "found in the YAML files given, or in the .yaml, .yml and .json files of the "
        "directories given (in name order). Other kinds are skipped with a note. Invalid "
        "objects are reported (file, object, reason) and the rest still loaded; the exit "
        "status is 1 if any object failed.",
        examples=["podnet ipam load manifests/ --redis redis://10.0.0.5:6379/0"],
        parents=[store],
    )
    load.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="a manifest file or a directory of them"
    )
