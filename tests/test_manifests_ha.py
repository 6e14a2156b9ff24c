"""The highly available control plane (components ovn-central/ and redis/sentinel/)
builds with kustomize into valid Kubernetes objects, spreads every member over its own
node with a disruption budget and probes, and points every podnet component at all
three members, from the three addresses of podnet-config."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ipam.redis_url import parse_sentinel_url
from tests.test_manifests import KUBERNETES_VERSIONS, MANIFESTS, SKIP_KUBECTL, ident, kustomize

pytestmark = SKIP_KUBECTL
COMPONENTS = {"ovn-central": ["ovn-central"], "redis-sentinel": ["redis/sentinel"],
              "both": ["ovn-central", "redis/sentinel"]}


def build(tmp_path: Path, components: list[str]) -> dict[str, dict[str, Any]]:
    relative = os.path.relpath(MANIFESTS, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [relative], "components": [f"{relative}/{c}" for c in components],
    }))
    return {ident(o): o for o in kustomize(tmp_path)}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return build(tmp_path_factory.mktemp("ha"), COMPONENTS["both"])


def members(objects: dict[str, dict[str, Any]]) -> list[str]:
    data = objects["ConfigMap/podnet-config"]["data"]
    return [data[f"member-{i}"] for i in (1, 2, 3)]


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == name)
    return found


def expanded_args(objects: dict[str, dict[str, Any]], c: dict[str, Any]) -> dict[str, str]:
    """The container's --flag=value arguments with $(VAR) replaced as the kubelet does,
    every variable from podnet-config (a missing key fails here, as it would there)."""
    data = objects["ConfigMap/podnet-config"]["data"]
    env = {e["name"]: data[e["valueFrom"]["configMapKeyRef"]["key"]] for e in c["env"]
           if "configMapKeyRef" in e.get("valueFrom", {})}
    args = {}
    for arg in c["args"]:
        flag, _, value = arg.partition("=")
        args[flag] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), value)
    return args


@pytest.mark.parametrize("name", COMPONENTS)
def test_each_component_builds_and_every_object_is_valid(tmp_path: Path, name: str) -> None:
    for obj in build(tmp_path, COMPONENTS[name]).values():
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_every_config_map_key_a_pod_reads_exists(built: dict[str, dict[str, Any]]) -> None:
    for obj in built.values():
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        if not spec:
            continue
        for c in (*spec["containers"], *spec.get("initContainers", [])):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["key"] in built[f"ConfigMap/{ref['name']}"]["data"], ident(obj)
            names = [e["name"] for e in c.get("env", [])]
            assert len(names) == len(set(names)), (ident(obj), names)


def spread_and_budgeted(built: dict[str, dict[str, Any]], workload: str, budget: str) -> None:
    obj = built[workload]
    spec = obj["spec"]["template"]["spec"]
    assert obj["spec"]["replicas"] == 3
    assert spec["hostNetwork"] is True
    assert spec["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    [term] = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    labels = obj["spec"]["template"]["metadata"]["labels"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()
    pdb = built[budget]["spec"]
    assert pdb["maxUnavailable"] == 1 and pdb["selector"]["matchLabels"].items() <= labels.items()


def test_ovn_central_runs_three_members_one_per_control_plane_node(
    built: dict[str, dict[str, Any]],
) -> None:
    spread_and_budgeted(built, "Deployment/podnet-ovn-central",
                        "PodDisruptionBudget/podnet-ovn-central")
    central = built["Deployment/podnet-ovn-central"]
    ports = {p["name"]: p["containerPort"] for n in ("nb", "sb")
             for p in container(central, n)["ports"]}
    assert ports == {"nb": 6641, "nb-raft": 6643, "sb": 6642, "sb-raft": 6644}
    for name in ("nb", "sb"):
        c = container(central, name)
        assert c["readinessProbe"]["exec"]["command"][-2:] == [name, "ready"]
        assert c["livenessProbe"]["exec"]["command"][-2:] == [name, "alive"]
    assert container(central, "northd")["readinessProbe"]["exec"]["command"][-1] == "northd"
    scripts = built["ConfigMap/podnet-ovn-central"]["data"]
    assert "cluster/status" in scripts["probe.sh"]
    for option in ("--db-$db-cluster-local-addr", "--db-$db-cluster-remote-addr",
                   "--db-$db-create-insecure-remote=no", '"run_${db}_ovsdb"',
                   '--remote="pssl:$port:$NODE_IP"', "--db-$db-cluster-local-proto=ssl"):
        assert option in scripts["ovn-central.sh"], option
    volumes = {v["name"]: v for v in central["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "podnet-ovn-central-tls"


def test_redis_runs_three_servers_and_three_sentinels(built: dict[str, dict[str, Any]]) -> None:
    spread_and_budgeted(built, "StatefulSet/podnet-redis", "PodDisruptionBudget/podnet-redis")
    redis = built["StatefulSet/podnet-redis"]
    assert container(redis, "sentinel")["readinessProbe"]["tcpSocket"]["port"] == 26379
    config = built["ConfigMap/podnet-redis-ha"]["data"]
    for line in ("min-replicas-to-write 1", "min-replicas-max-lag 10", "port 0",
                 "tls-port 16379", "tls-replication yes", "masteruser podnet-replica",
                 "aclfile /etc/podnet/redis-auth/users.acl"):
        assert line in config["redis.conf"].splitlines(), line
    assert {"port 0", "tls-port 26379", "tls-replication yes"} <= set(
        config["sentinel.conf"].splitlines())
    assert 'echo "sentinel monitor podnet $primary 16379 2"' in config["configure.sh"]
    assert "user default off" not in config["sentinel.conf"]  # clients ask unauthenticated


def test_every_component_names_all_three_members(built: dict[str, dict[str, Any]]) -> None:
    nodes = members(built)
    sync = expanded_args(built, container(built["Deployment/podnet-sync"], "sync"))
    assert sync["--ovn-nb"].split(",") == [f"ssl:{m}:6641" for m in nodes]
    agent = expanded_args(built, container(built["DaemonSet/podnet-agent"], "agent"))
    assert agent["--ovn-remote"].split(",") == [f"ssl:{m}:6642" for m in nodes]
    for workload, name in (("Deployment/podnet-webhook", "webhook"),
                           ("Deployment/podnet-sync", "sync"), ("DaemonSet/podnet-agent", "agent")):
        args = expanded_args(built, container(built[workload], name))
        url = parse_sentinel_url(args["--redis"])
        assert url.sentinels == tuple((m, 26379) for m in nodes), workload
        assert (url.master, url.db, url.tls, url.username, url.password) == (
            "podnet", 0, True, f"podnet-{name}", "")
        assert url.query == "ssl_ca_certs=/etc/podnet/redis-tls/ca.crt"
        assert args.get("--redis-min-replica-acks") == (None if name == "agent" else "1")


def test_the_shell_scripts_parse(built: dict[str, dict[str, Any]]) -> None:
    scripts = {**built["ConfigMap/podnet-ovn-central"]["data"],
               "configure.sh": built["ConfigMap/podnet-redis-ha"]["data"]["configure.sh"]}
    for name, text in scripts.items():
        if name.endswith(".sh"):
            subprocess.run(["sh", "-n"], input=text, text=True, check=True)
