"""Every manifest of Kube-OVN's documentation: podnet accepts it, or refuses it by name.

``../shared/kube-ovn-examples`` (beside the repository) holds 91 manifests copied from
Kube-OVN's docs. For each file the table below says what podnet does with it:

- ``accept``: every object in it is honoured, and does what Kube-OVN would do;
- ``refuse``: at least one object is refused, and each refusal names the field,
  annotation or kind podnet does not support (the table names one it must mention);
- ``unparseable``: the file is not valid YAML as written (duplicate keys included,
  which a lenient loader would silently merge into one wrong object).

Accepted subnets are registered in a real IPAM and must hand out the first address
Kube-OVN would; accepted pods and workloads go through real admission over HTTPS.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from ipam.settings import RedisSettings
from ipam.store import Ipam
from ipam.subnet import parse_subnet
from podnet_plumbing.manifests import load_documents
from tests.test_webhook_server import Harness, annotations_of, patch_of, review
from tests.tls import client_context, make_certificate
from webhook.compat import Verdict, check_object
from webhook.patch import apply_patch
from webhook.server import running_webhook
from webhook.settings import ServerSettings

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "kube-ovn-examples"

pytestmark = pytest.mark.skipif(
    not EXAMPLES.is_dir(), reason=f"the Kube-OVN examples are not at {EXAMPLES}"
)

ACCEPT, REFUSE, UNPARSEABLE = "accept", "refuse", "unparseable"

EXPECTED: dict[str, tuple[str, str]] = {
    "01": (ACCEPT, ""),
    "02": (ACCEPT, ""),
    "03": (ACCEPT, ""),
    "04": (ACCEPT, ""),
    "05": (ACCEPT, ""),
    "06": (ACCEPT, ""),
    "07": (REFUSE, "spec.gatewayNodeSelectors"),
    "08": (ACCEPT, ""),  # spec.acls on the switch; allowEWTraffic false adds nothing
    "09": (ACCEPT, ""),
    "10": (REFUSE, "spec.cidrBlock"),  # a fragment: only disableGatewayCheck, no CIDR
    "11": (REFUSE, "spec.enableMulticastSnoop"),
    "12": (REFUSE, "spec.mtu"),
    "13": (ACCEPT, ""),
    "14": (ACCEPT, ""),
    "15": (REFUSE, "spec.externalEgressGateway"),
    "16": (ACCEPT, ""),  # an edit of ovn-default: keeps its built-in CIDR
    "17": (ACCEPT, ""),
    "18": (REFUSE, "attachnet.default.kubernetes.io/ip_address.net1"),
    "19": (ACCEPT, ""),
    "20": (ACCEPT, ""),
    "21": (ACCEPT, ""),
    "22": (ACCEPT, ""),
    "23": (ACCEPT, ""),
    "24": (ACCEPT, ""),
    "25": (ACCEPT, ""),
    "26": (UNPARSEABLE, "expected '<document start>'"),
    "27": (REFUSE, "ovn.kubernetes.io/ip_family"),
    "28": (REFUSE, "attachnet.default.ovn.kubernetes.io/ip_family"),
    "29": (REFUSE, "attachnet.default.ovn.net1.kubernetes.io/ip_family"),
    "30": (REFUSE, "kind Vip"),
    "31": (REFUSE, "kind Vip"),
    "32": (REFUSE, "kind Vip"),
    "33": (REFUSE, "ovn.kubernetes.io/aaps"),
    "34": (REFUSE, "kind Vip"),
    "35": (REFUSE, "kind Vip"),
    "36": (REFUSE, "ovn.kubernetes.io/vip"),
    "37": (REFUSE, "kind OvnFip"),
    "38": (ACCEPT, ""),  # podnet ic (docs/interconnection.md)
    "39": (ACCEPT, ""),
    "40": (ACCEPT, ""),  # podnet ic (docs/interconnection.md)
    "41": (ACCEPT, ""),  # podnet ic (docs/interconnection.md)
    "42": (ACCEPT, ""),  # podnet ic (docs/interconnection.md)
    "43": (REFUSE, "spec.vpc"),
    "44": (REFUSE, "ovn.kubernetes.io/routes"),
    "45": (REFUSE, "spec.template.metadata.annotations: annotation ovn.kubernetes.io/routes"),
    "46": (REFUSE, "ovn.kubernetes.io/eip"),
    "47": (REFUSE, "ovn.kubernetes.io/mirror"),
    "48": (ACCEPT, ""),  # port_security "true": podnet always sets port security
    "49": (REFUSE, "ovn.kubernetes.io/security_groups"),
    "50": (REFUSE, "ovn.kubernetes.io/security_groups"),
    "51": (REFUSE, "ovn.kubernetes.io/security_groups"),
    "52": (REFUSE, "spec.provider"),
    "53": (REFUSE, "ovn.kubernetes.io/logical_router"),
    "54": (REFUSE, "spec.provider"),
    "55": (REFUSE, "macvlan.default.kubernetes.io/ip_address"),
    "56": (REFUSE, "macvlan.default.kubernetes.io/ip_pool"),
    "57": (ACCEPT, ""),  # provider: ovn is the primary network
    "58": (REFUSE, "macvlan.default.kubernetes.io/logical_switch"),
    "59": (REFUSE, "spec.provider"),
    "60": (REFUSE, "attachnet.default.ovn.kubernetes.io/routes"),
    "61": (REFUSE, "attachnet.default.ovn.kubernetes.io/routes"),
    "62": (ACCEPT, ""),
    "63": (REFUSE, "attachnet.default.ovn.kubernetes.io/logical_switch"),
    "64": (REFUSE, "spec.provider"),
    "65": (REFUSE, "ovn-dpdk.default.ovn.kubernetes.io/ip_address"),
    "66": (REFUSE, "spec.vlan"),
    "67": (REFUSE, "spec.vlan"),
    "68": (REFUSE, "v1.multus-cni.io/default-network"),
    "69": (REFUSE, "kind ProviderNetwork"),
    "70": (ACCEPT, ""),  # names underlay subnet vlan0, which admission then refuses
    "71": (REFUSE, "kind Vlan"),
    "72": (REFUSE, "spec.enableExternalLBAddress"),
    "73": (ACCEPT, ""),  # names underlay-subnet, which admission then refuses
    "74": (UNPARSEABLE, "duplicate key 'apiVersion'"),
    "75": (UNPARSEABLE, "duplicate key 'apiVersion'"),
    "76": (REFUSE, "spec.vpc"),
    "77": (REFUSE, "spec.config: type kube-ovn"),
    "78": (REFUSE, "kind Vpc"),
    "79": (ACCEPT, ""),  # names VPC subnets net1/net2, which admission then refuses
    "80": (REFUSE, "spec.provider"),
    "81": (REFUSE, "kind Vpc"),
    "82": (UNPARSEABLE, "duplicate key 'kind'"),
    "83": (UNPARSEABLE, "duplicate key 'apiVersion'"),
    "84": (REFUSE, "spec.vpc"),
    "85": (REFUSE, "spec.provider"),
    "86": (REFUSE, "spec.nodeNetwork"),
    "87": (REFUSE, "spec.nodeNetwork"),
    "88": (REFUSE, "spec.vpc"),
    "89": (REFUSE, "ovn.kubernetes.io/dhcp-v4-options"),
    "90": (REFUSE, "net1.ns1.ovn.kubernetes.io/dhcp-v4-options"),
    "91": (REFUSE, "spec.enableDHCP"),
}

NAMES_WHAT = re.compile(
    r"(spec\.[A-Za-z.]+|annotation [\w./-]+|kind \w+|data\.[\w-]+|spec\.config)"
)
"""A refusal names a spec field, an annotation, a kind or a ConfigMap key."""


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("[0-9][0-9]-*.yaml")) if EXAMPLES.is_dir() else []


def example(number: str) -> Path:
    return next(EXAMPLES.glob(f"{number}-*.yaml"))


def load(path: Path) -> list[dict[str, Any]]:
    """The objects of one file; raises ``yaml.YAMLError`` for what is not valid YAML."""
    return [d for d in load_documents(path.read_text()) if d is not None]


def objects(number: str) -> list[dict[str, Any]]:
    return load(example(number))


def verdicts(path: Path) -> list[Verdict]:
    return [check_object(obj) for obj in load(path)]


# ------------------------------------------------------------------ the walk


def test_the_table_covers_every_example_and_the_index_lists_them_all() -> None:
    numbers = [path.name[:2] for path in example_files()]
    assert len(numbers) == 91
    assert numbers == sorted(EXPECTED)
    index = (EXAMPLES / "INDEX.md").read_text()
    assert all(path.name in index for path in example_files())


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_each_example_is_accepted_or_refused_naming_what_podnet_lacks(path: Path) -> None:
    expected, named = EXPECTED[path.name[:2]]
    try:
        found = verdicts(path)
    except yaml.YAMLError as exc:
        assert expected == UNPARSEABLE, f"{path.name} does not parse: {exc}"
        assert named in str(exc)
        return
    assert expected != UNPARSEABLE, f"{path.name} parses, but the table says it does not"
    refusals = [v.reason for v in found if not v.accepted]
    if expected == ACCEPT:
        assert refusals == []
        return
    assert refusals, f"{path.name} is accepted, but the table says podnet refuses it"
    assert all(NAMES_WHAT.search(reason) for reason in refusals), refusals
    assert any(named in reason for reason in refusals), refusals


def test_a_lenient_loader_would_silently_merge_the_unparseable_examples() -> None:
    mangled = list(yaml.safe_load_all(example("74").read_text()))
    assert [d["kind"] for d in mangled] == ["Subnet"]  # ProviderNetwork and Vlan vanish


# -------------------------------------------------- accepted subnets and pools


def accepted_subnets() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in example_files():
        if EXPECTED[path.name[:2]][0] != ACCEPT:
            continue
        for obj in load(path):
            if obj.get("kind") == "Subnet":
                yield f"{path.name[:2]}-{obj['metadata']['name']}", obj


def first_free(obj: Mapping[str, Any]) -> list[str]:
    """The first address Kube-OVN hands out in each family, worked out independently:
    the lowest host address that is not the gateway nor in ``excludeIps``."""
    spec = parse_subnet(obj)
    excluded = list(spec.exclude_ips)
    found = []
    for layout in spec.families:
        for address in layout.network.hosts():
            if address == layout.gateway or any(in_span(address, s) for s in excluded):
                continue
            found.append(str(address))
            break
    return found


def in_span(address: ipaddress.IPv4Address | ipaddress.IPv6Address, span: str) -> bool:
    low, _, high = span.partition("..")
    first, last = ipaddress.ip_address(low), ipaddress.ip_address(high or low)
    return first.version == address.version and first <= address <= last  # type: ignore[operator]


@pytest.mark.parametrize(("name", "obj"), list(accepted_subnets()), ids=lambda v: str(v)[:20])
async def test_an_accepted_subnet_hands_out_the_first_address_kube_ovn_would(
    ipam: Ipam, name: str, obj: dict[str, Any]
) -> None:
    spec = await ipam.ensure_subnet(obj)
    allocation = await ipam.reserve(spec.name, f"walk-{name}")
    assert allocation.ip_strings() == first_free(obj)


# --------------------------------------------------- accepted pods, admitted


def pods_of(obj: Mapping[str, Any], namespace: str = "default") -> list[dict[str, Any]]:
    """The pods a workload's controller would create (a pod is itself)."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace") or namespace
    if obj["kind"] == "Pod":
        return [{**obj, "metadata": {**metadata, "namespace": namespace}}]
    template = obj["spec"]["template"]
    replicas = int(obj["spec"].get("replicas") or 1)
    name = metadata["name"]
    created = []
    for ordinal in range(replicas):
        pod_meta: dict[str, Any] = {**template.get("metadata", {}), "namespace": namespace}
        if obj["kind"] == "StatefulSet":
            pod_meta["name"] = f"{name}-{ordinal}"
            owner = ("StatefulSet", name)
        else:
            pod_meta["generateName"] = f"{name}-7c9f8d6b5-"
            pod_meta["labels"] = {**pod_meta.get("labels", {}), "pod-template-hash": "7c9f8d6b5"}
            owner = ("ReplicaSet", f"{name}-7c9f8d6b5")
        pod_meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0],
                                        "name": owner[1], "uid": str(uuid.uuid4()),
                                        "controller": True}]
        created.append({"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
                        "spec": template["spec"]})
    return created


@pytest.fixture
async def examples_webhook(
    tmp_path: Path, redis_settings: RedisSettings, ipam: Ipam
) -> AsyncIterator[Harness]:
    """The webhook with the accepted subnet of example 03 and the IPPool of example 22."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    for number in ("03", "22"):
        (folder / example(number).name).write_text(
            yaml.safe_dump_all(objects(number))
        )
    cert, key = make_certificate(tmp_path / "tls")
    settings = ServerSettings(
        tls_cert=cert, tls_key=key, host="127.0.0.1", port=0, redis=redis_settings,
        manifests=folder,
    )
    connector = aiohttp.TCPConnector(ssl=client_context(cert))
    async with running_webhook(settings) as running, aiohttp.ClientSession(
        connector=connector
    ) as session:
        yield Harness(running, session, ipam, cert, key)


async def admit_all(webhook: Harness, number: str, namespace: str = "default") -> list[Any]:
    """Admit every pod of example ``number``: the stored pod, or the denial's message."""
    results: list[Any] = []
    for obj in objects(number):
        if obj["kind"] not in ("Pod", "Deployment", "StatefulSet"):
            continue
        for pod in pods_of(obj, namespace):
            answer = await webhook.send(review(pod))
            response = answer["response"]
            if response["allowed"]:
                results.append(apply_patch(pod, patch_of(answer)))
            else:
                results.append(response["status"]["message"])
    return results


def ip_of(pod: Any) -> str:
    assert isinstance(pod, dict), pod
    return annotations_of(pod)["ovn.kubernetes.io/ip_address"]


async def test_accepted_pods_and_workloads_are_admitted_as_kube_ovn_would(
    examples_webhook: Harness,
) -> None:
    webhook = examples_webhook
    # 04: the pod names subnet1 (example 03) and gets its first free address.
    [pod] = await admit_all(webhook, "04")
    assert annotations_of(pod)["ovn.kubernetes.io/logical_switch"] == "subnet1"
    assert ip_of(pod) == "10.66.0.11"
    assert annotations_of(pod)["ovn.kubernetes.io/gateway"] == "10.66.0.1"
    # 17: the static address and MAC, exactly.
    [pod] = await admit_all(webhook, "17")
    assert ip_of(pod) == "10.16.0.15"
    assert annotations_of(pod)["ovn.kubernetes.io/mac_address"] == "00:00:00:53:6b:b6"
    # 21: the docs' webhook example: the same address again is refused, naming the holder.
    assert await admit_all(webhook, "21") == [
        "ovn.kubernetes.io/ip_address 10.16.0.15 is already used by pod default/static-ip"
    ]
    # 19: two replicas take the pool's unused entries (10.16.0.15 is held by 17).
    assert sorted(ip_of(p) for p in await admit_all(webhook, "19")) == [
        "10.16.0.16", "10.16.0.17"
    ]
    # 20: a StatefulSet without annotations gets addresses of the default subnet.
    web = await admit_all(webhook, "20")
    assert [p["metadata"]["name"] for p in web] == ["web-0", "web-1"]
    assert all(ip_of(p).startswith("10.16.") for p in web)
    # 22 + 23: the Deployment naming pool-1, in the namespace pool-1 is bound to.
    pool_1 = {str(a) for a in ipaddress.ip_network("10.16.0.208/29")} | {"10.16.0.201"} | {
        f"10.16.0.{n}" for n in range(220, 231)
    }
    replicas = await admit_all(webhook, "23", namespace="ns-1")
    assert len(replicas) == 2 and all(ip_of(p) in pool_1 for p in replicas)
    # 22: a pod of ns-1 that asks for nothing still takes its address from pool-1.
    plain = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain", "namespace": "ns-1"},
             "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    assert ip_of(await webhook.admit(plain)) in pool_1
    # 24: QoS annotations are kept for the node agent.
    [pod] = await admit_all(webhook, "24")
    assert annotations_of(pod)["ovn.kubernetes.io/ingress_rate"] == "3"
    # 48: port security on is what podnet does anyway.
    [pod] = await admit_all(webhook, "48")
    assert ip_of(pod).startswith("10.16.")
    # 70: the pod's name has capitals, which kube-apiserver refuses after admission; the
    # webhook refuses it first, so no address is reserved for a pod that cannot exist.
    assert await admit_all(webhook, "70") == [
        "metadata.name 'nginx-underlay-noVF' must be a lowercase RFC 1123 subdomain: lower "
        "case letters, digits, '-' and '.', starting and ending with a letter or digit, at "
        "most 253 long"
    ]
    # 73, 79: their subnets are underlay or VPC subnets, refused, so they do not exist.
    denials = await admit_all(webhook, "73")
    assert denials == ["ovn.kubernetes.io/logical_switch underlay-subnet: subnet "
                       "underlay-subnet does not exist"] * 3
    assert await admit_all(webhook, "79") == [
        "ovn.kubernetes.io/logical_switch net1: subnet net1 does not exist",
        "ovn.kubernetes.io/logical_switch net2: subnet net2 does not exist",
    ]


async def test_refused_pods_are_denied_at_admission_naming_the_annotation(
    examples_webhook: Harness,
) -> None:
    refused_pods = [n for n, (verdict, _) in EXPECTED.items() if verdict == REFUSE
                    and all(o["kind"] in ("Pod", "Deployment") for o in objects(n))]
    assert refused_pods, "the examples hold refused pods"
    for number in refused_pods:
        messages = await admit_all(examples_webhook, number)
        assert messages and all(isinstance(m, str) for m in messages), (number, messages)
        annotation = EXPECTED[number][1].split()[-1]
        assert all(NAMES_WHAT.search(m) for m in messages), (number, messages)
        assert any(annotation in m for m in messages), (number, messages)
    assert await examples_webhook.held() == 0

