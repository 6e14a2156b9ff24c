"""The deployment manifests are valid Kubernetes, build with kustomize, and fit podnet.

Every object is validated offline against the Kubernetes OpenAPI schemas shipped in
``kubernetes-validate`` (strict: an unknown field is an error, so a typo cannot hide).
Subnet and IPPool objects, which those schemas do not know, are validated against our
own CRDs' ``openAPIV3Schema`` with ``jsonschema``, and checked for fields the API server
would prune. cert-manager objects and the scheduler configuration are checked against
the small part of their APIs they use. Then the wiring: the webhook configurations
call routes the server serves, Services select the pods they front, RBAC names the
accounts the pods run as.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import ssl
import stat
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import aiohttp
import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml

from ipam import errors
from ipam.pool import _IPPOOL_FIELDS
from ipam.settings import RedisSettings
from ipam.store import Ipam
from ipam.subnet import _DEFAULT_ONLY_FIELDS, _INERT_FIELDS, _SUPPORTED_FIELDS, build_subnet
from podnet.daemons import free_port
from tests.test_kube_ovn_examples import example_files, load
from webhook.admit import AdmitContext, CatalogCache
from webhook.compat import check_object
from webhook.manifests import ManifestSource
from webhook.memo import ReviewMemo
from webhook.metrics import WebhookMetrics
from webhook.server import WebhookState, build_app, running_webhook
from webhook.settings import ServerSettings

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
KUBECTL = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists()
                                      else None)
KUBERNETES_VERSIONS = ("1.28", kubernetes_validate.latest_version())
"""The oldest Kubernetes podnet's manifests promise to work on, and the newest known."""
OWN_KINDS = {"Issuer", "Certificate"}
SKIP_KUBECTL = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl is not installed (Debian package kubernetes-client): "
           "kustomize builds are not checked",
)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def kustomization(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((path / "kustomization.yaml").read_text())
    return found


def base_objects() -> list[dict[str, Any]]:
    """Every object the top kustomization lists, read from its files (no kubectl)."""
    return [
        obj for resource in kustomization(MANIFESTS)["resources"]
        for obj in documents(MANIFESTS / resource)
    ]


def component_objects() -> list[dict[str, Any]]:
    folder = MANIFESTS / "cert-manager"
    return [obj for r in kustomization(folder)["resources"] for obj in documents(folder / r)]


def by_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    return next(o for o in base_objects()
                if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


def ident(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# ------------------------------------------------------ Kubernetes validity


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("obj", base_objects(), ids=ident)
def test_every_object_validates_against_the_kubernetes_openapi_schema(
    obj: dict[str, Any], version: str
) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{ident(obj)} at {list(exc.path)}: {exc.message}")


def test_every_listed_file_exists_and_no_manifest_is_left_out() -> None:
    listed = {MANIFESTS / r for r in kustomization(MANIFESTS)["resources"]}
    on_disk = {
        p for p in MANIFESTS.rglob("*.yaml")
        if p.name != "kustomization.yaml"
        and not p.is_relative_to(MANIFESTS / "cert-manager")
        and not p.is_relative_to(MANIFESTS / "agent-own-node")
        and not p.is_relative_to(MANIFESTS / "ovn-nb-ssl")
        and not p.is_relative_to(MANIFESTS / "ovn-central")
        and not p.is_relative_to(MANIFESTS / "ic")
        and not p.is_relative_to(MANIFESTS / "redis" / "sentinel")
        and not p.is_relative_to(MANIFESTS / "scheduler")
    }
    assert listed == on_disk


def test_every_object_uses_the_podnet_image_or_a_pinned_redis() -> None:
    images = {
        container["image"]
        for obj in base_objects() if "template" in obj.get("spec", {})
        for key in ("containers", "initContainers")
        for container in obj["spec"]["template"]["spec"].get(key, [])
    }
    assert images == {"ghcr.io/podnet/podnet:0.1.0", "docker.io/library/redis:7.2"}


# ------------------------------------------------------------ kustomize


def kustomize(folder: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    built = subprocess.run(
        [KUBECTL, "kustomize", str(folder)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(built) if d]


@SKIP_KUBECTL
def test_kubectl_kustomize_builds_the_manifests_and_every_object_is_valid() -> None:
    built = kustomize(MANIFESTS)
    assert sorted(map(ident, built)) == sorted(map(ident, base_objects()))
    for obj in built:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "podnet"
        kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)


@SKIP_KUBECTL
def test_the_cert_manager_component_builds_and_asks_for_ca_injection(tmp_path: Path) -> None:
    relative = os.path.relpath(MANIFESTS, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [relative], "components": [f"{relative}/cert-manager"],
    }))
    built = kustomize(tmp_path)
    kinds = {o["kind"] for o in built}
    assert {"Issuer", "Certificate"} <= kinds
    for obj in built:
        if obj["kind"].endswith("WebhookConfiguration"):
            annotations = obj["metadata"]["annotations"]
            assert annotations["cert-manager.io/inject-ca-from"] == "podnet-system/podnet-webhook"
        if obj["kind"] not in OWN_KINDS:
            kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)


# ---------------------------------------------------- CRDs and their objects


def crd(kind: str) -> dict[str, Any]:
    return next(o for o in base_objects()
                if o["kind"] == "CustomResourceDefinition" and o["spec"]["names"]["kind"] == kind)


def crd_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def pruned_fields(schema: Mapping[str, Any], value: Any, path: str = "") -> list[str]:
    """Fields of ``value`` the API server would drop: not declared by a structural schema."""
    if isinstance(value, dict) and schema.get("type") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return []
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        found: list[str] = []
        for key, item in value.items():
            if properties is not None and key in properties:
                found += pruned_fields(properties[key], item, f"{path}.{key}")
            elif isinstance(extra, dict):
                found += pruned_fields(extra, item, f"{path}.{key}")
            elif properties is not None and not (path == "" and key == "metadata"):
                found.append(f"{path}.{key}".lstrip("."))
        return found
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [p for item in value for p in pruned_fields(schema["items"], item, f"{path}[]")]
    return []


def crd_problems(obj: Mapping[str, Any]) -> list[str]:
    schema = crd_schema(str(obj["kind"]))
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(obj)]
    return errors + [f"{p} would be pruned" for p in pruned_fields(schema, obj)]


@pytest.mark.parametrize("kind", ["Subnet", "IPPool"])
def test_the_crds_are_kube_ovns_cluster_scoped_kubeovn_io_v1_resources(kind: str) -> None:
    definition = crd(kind)
    assert definition["spec"]["group"] == "kubeovn.io"
    assert definition["spec"]["scope"] == "Cluster"
    version = definition["spec"]["versions"][0]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    assert version["additionalPrinterColumns"]
    assert "nodeSelector" in version["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]


def test_the_subnet_crd_declares_every_field_podnets_parser_reads() -> None:
    declared = set(crd_schema("Subnet")["properties"]["spec"]["properties"])
    assert set(_SUPPORTED_FIELDS) | set(_INERT_FIELDS) | set(_DEFAULT_ONLY_FIELDS) <= declared
    assert set(_IPPOOL_FIELDS) <= set(crd_schema("IPPool")["properties"]["spec"]["properties"])


def test_a_subnet_with_every_podnet_field_is_stored_whole() -> None:
    subnet = {
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "zone-a"},
        "spec": {
            "cidrBlock": "10.20.0.0/24", "gateway": "10.20.0.1", "excludeIps": ["10.20.0.2"],
            "namespaces": ["edge"], "protocol": "IPv4", "private": True,
            "allowSubnets": ["10.16.0.0/16"], "natOutgoing": True, "gatewayType": "centralized",
            "gatewayNode": "node-1", "disableInterConnection": True, "default": False,
            "nodeSelector": {"podnet.io/zone": "a"},
        },
    }
    assert check_object(subnet).accepted
    assert crd_problems(subnet) == []


def test_the_crd_check_finds_a_field_the_api_server_would_prune() -> None:
    subnet = {"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "s"},
              "spec": {"cidr": "10.0.0.0/24", "nodeSelector": {"a": 1}}}
    assert crd_problems(subnet) == ["['spec', 'nodeSelector', 'a']: 1 is not of type 'string'",
                                    "spec.cidr would be pruned"]


def accepted_crd_objects() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in example_files():
        try:
            found = load(path)
        except yaml.YAMLError:
            continue
        for obj in found:
            if obj.get("kind") in ("Subnet", "IPPool") and check_object(obj).accepted:
                yield f"{path.name[:2]}-{obj['metadata']['name']}", obj


@pytest.mark.parametrize(("name", "obj"), list(accepted_crd_objects()),
                         ids=lambda v: str(v)[:24])
def test_every_kube_ovn_example_podnet_accepts_passes_our_crd_schema_unpruned(
    name: str, obj: dict[str, Any]
) -> None:
    assert crd_problems(obj) == [], name


def test_every_kube_ovn_example_subnet_passes_our_crd_schema_even_if_podnet_refuses_it() -> None:
    """A superset of Kube-OVN's schema: podnet's webhook names the field, nothing is pruned
    (one example, 84, misspells cidrBlock as cidr, which Kube-OVN's schema prunes too)."""
    for path in example_files():
        try:
            found = load(path)
        except yaml.YAMLError:
            continue
        for obj in found:
            if obj.get("kind") in ("Subnet", "IPPool"):
                expected = ["spec.cidr would be pruned"] if path.name.startswith("84") else []
                assert crd_problems(obj) == expected, path.name


# ---------------------------------------------------------- the wiring


def served_routes() -> set[str]:
    settings = ServerSettings(tls_cert=Path("unused"), tls_key=Path("unused"))
    context = AdmitContext(cast(ReviewMemo, None), CatalogCache(1.0))
    state = WebhookState(cast(Ipam, None), settings, context, ManifestSource(None),
                         WebhookMetrics())
    return {r.resource.canonical for r in build_app(state).router.routes()
            if r.method == "POST" and r.resource is not None}


def test_the_mutating_webhook_is_configured_as_podnet_needs() -> None:
    [hook] = by_kind("MutatingWebhookConfiguration")["webhooks"]
    assert hook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                              "resources": ["pods"], "scope": "Namespaced"}]
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["failurePolicy"] == "Fail"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 1 <= hook["timeoutSeconds"] <= 30
    assert hook["namespaceSelector"]["matchExpressions"] == [{
        "key": "kubernetes.io/metadata.name", "operator": "NotIn",
        "values": ["kube-system", "podnet-system"],
    }]


def test_the_validating_webhooks_cover_subnets_and_ippools_on_every_change() -> None:
    hooks = {h["clientConfig"]["service"]["path"]: h
             for h in by_kind("ValidatingWebhookConfiguration")["webhooks"]}
    for path, resource in (("/validate-subnets", "subnets"), ("/validate-ippools", "ippools")):
        [rule] = hooks[path]["rules"]
        assert (rule["apiGroups"], rule["resources"]) == (["kubeovn.io"], [resource])
        assert rule["operations"] == ["CREATE", "UPDATE", "DELETE"]
        assert hooks[path]["failurePolicy"] == "Fail"


def test_every_webhook_and_extender_path_is_a_route_the_server_serves() -> None:
    routes = served_routes()
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for hook in by_kind(kind)["webhooks"]:
            service = hook["clientConfig"]["service"]
            assert (service["name"], service["namespace"], service["port"]) == (
                "podnet-webhook", "podnet-system", 443)
            assert service["path"] in routes
    [extender] = documents(MANIFESTS / "scheduler" / "scheduler-config.yaml")[0]["extenders"]
    prefix = extender["urlPrefix"].split(":443", 1)[1]
    assert {f"{prefix}/{extender['filterVerb']}", f"{prefix}/{extender['prioritizeVerb']}"} <= (
        routes)


def pod_labels(workload: Mapping[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_the_webhook_runs_two_replicas_behind_its_service_and_disruption_budget() -> None:
    deployment = by_kind("Deployment", "podnet-webhook")
    assert deployment["spec"]["replicas"] == 2
    labels = pod_labels(deployment)
    service = by_kind("Service", "podnet-webhook")
    assert selects(service["spec"]["selector"], labels)
    [port] = service["spec"]["ports"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    budget = by_kind("PodDisruptionBudget", "podnet-webhook")
    assert selects(budget["spec"]["selector"]["matchLabels"], labels)
    assert budget["spec"]["minAvailable"] == 1
    assert container["args"][0] == "webhook"


def test_the_sync_worker_runs_podnet_sync() -> None:
    [container] = by_kind("Deployment", "podnet-sync")["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["podnet"] and container["args"][0] == "sync"


def test_the_sync_worker_is_probed_on_the_port_it_serves_metrics_on() -> None:
    [container] = by_kind("Deployment", "podnet-sync")["spec"]["template"]["spec"]["containers"]
    [listen] = [arg for arg in container["args"] if arg.startswith("--listen=")]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["metrics"] == int(listen.rpartition(":")[2])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_the_node_agent_is_privileged_on_the_host_network_and_installs_the_cni() -> None:
    spec = by_kind("DaemonSet", "podnet-agent")["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and not spec.get("hostPID")
    [agent] = spec["containers"]
    assert agent["securityContext"]["privileged"] is True
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounted = {host_paths[m["name"]] for c in (*spec["containers"], *spec["initContainers"])
               for m in c["volumeMounts"] if m["name"] in host_paths}
    assert {"/var/run/openvswitch", "/etc/cni/net.d", "/opt/cni/bin"} <= mounted
    [install] = spec["initContainers"]
    script = install["command"][-1]
    assert "/host/opt/cni/bin/podnet-cni" in script
    assert "/host/etc/cni/net.d/10-podnet.conflist" in script


def test_the_cni_network_config_is_a_conflist_calling_podnet_cni() -> None:
    config = by_kind("ConfigMap", "podnet-cni")["data"]
    conflist = json.loads(config["10-podnet.conflist"])
    assert conflist["name"] == "podnet" and conflist["cniVersion"] == "1.0.0"
    assert [p["type"] for p in conflist["plugins"]] == ["podnet-cni"]


def test_podnet_speaks_tls_to_redis_with_a_password_file_never_in_argv_or_env() -> None:
    for workload in (by_kind("Deployment", "podnet-webhook"), by_kind("Deployment", "podnet-sync"),
                     by_kind("DaemonSet", "podnet-agent")):
        spec = workload["spec"]["template"]["spec"]
        [container] = [c for c in spec["containers"] if "--redis" in " ".join(c["args"])]
        [url] = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--redis=")]
        assert url.startswith("rediss://") and url.endswith(
            "/0?ssl_ca_certs=/etc/podnet/redis-tls/ca.crt"), ident(workload)
        assert ":" not in url.removeprefix("rediss://").split("@")[0], ident(workload)
        assert "--redis-password-file=/etc/podnet/redis/password" in container["args"]
        assert not [e for e in container.get("env", []) if "secretKeyRef" in e.get(
            "valueFrom", {})], ident(workload)
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["redis-auth"]["mountPath"] == "/etc/podnet/redis"
        assert mounts["redis-auth"]["readOnly"] is True
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["redis-auth"]["secret"]["secretName"] == "podnet-redis-auth"
        user = url.split("@")[0].removeprefix("rediss://")
        [item] = volumes["redis-auth"]["secret"]["items"]  # its own password, nothing else
        assert (user, item) == (f"podnet-{item['key']}", {"key": item["key"],
                                                           "path": "password"})
        assert volumes["redis-tls"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        assert mounts["redis-tls"]["mountPath"] == "/etc/podnet/redis-tls"


def test_redis_listens_on_its_nodes_address_with_an_acl_file_and_no_password_in_argv() -> None:
    [redis] = by_kind("StatefulSet", "podnet-redis")["spec"]["template"]["spec"]["containers"]
    args = redis["args"]
    assert args[args.index("--bind") + 1:args.index("--bind") + 3] == ["$(NODE_IP)", "127.0.0.1"]
    assert args[args.index("--aclfile") + 1] == "/etc/podnet/redis-auth/users.acl"
    assert args[args.index("--port") + 1] == "0"  # TLS only
    assert args[args.index("--tls-port") + 1] == "16379"
    assert "--requirepass" not in args and not [
        e for e in redis["env"] if "secretKeyRef" in e.get("valueFrom", {})]


async def allocate_as_writer_and_read_as_reader(secrets: Path, port: int) -> None:
    def user(name: str) -> Ipam:
        url = (f"rediss://podnet-{name}@127.0.0.1:{port}/0"
               f"?ssl_ca_certs={secrets / 'ca.crt'}")
        return Ipam.connect(RedisSettings(url=url, password=(secrets / name).read_text()))

    writer, reader = user("webhook"), user("agent")
    try:
        for _ in range(100):  # until redis-server listens
            with contextlib.suppress(errors.StoreUnavailable):
                await writer.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
                break
            await asyncio.sleep(0.05)
        held = await writer.reserve("s", "token")
        assert (await reader.lookup_token("token", "s")) == held
        with pytest.raises(errors.StoreUnavailable, match="no permissions"):
            await reader.reserve("s", "other")
    finally:
        await writer.close()
        await reader.close()


def test_redis_as_shipped_speaks_tls_and_lets_writers_allocate_and_readers_only_read(
    tmp_path: Path,
) -> None:
    """The ACL of make-redis-auth.sh and the certificate of make-certs.sh, with the
    options of redis/redis.yaml, against a real redis-server."""
    subprocess.run([str(MANIFESTS / "redis" / "make-redis-auth.sh"), "--out", str(tmp_path),
                    "--no-kubectl"], check=True, capture_output=True)
    subprocess.run([str(MAKE_CERTS), "--out", str(tmp_path), "--no-kubectl",
                    "--redis-address", "127.0.0.1"], check=True, capture_output=True)
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    process = subprocess.Popen([
        shutil.which("redis-server") or "/usr/bin/redis-server", "--port", "0",
        "--tls-port", str(port), "--tls-cert-file", str(tmp_path / "redis.crt"),
        "--tls-key-file", str(tmp_path / "redis.key"), "--tls-ca-cert-file",
        str(tmp_path / "ca.crt"), "--tls-auth-clients", "no", "--bind", "127.0.0.1",
        "--aclfile", str(tmp_path / "users.acl"), "--dir", str(data), "--save", ""],
        stdout=subprocess.DEVNULL)
    try:
        asyncio.run(allocate_as_writer_and_read_as_reader(tmp_path, port))
        anonymous = redis.Redis(host="127.0.0.1", port=port, ssl=True,
                                ssl_ca_certs=str(tmp_path / "ca.crt"))
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()  # the default user is off
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_every_pod_runs_as_a_service_account_bound_to_its_own_role() -> None:
    accounts = {o["metadata"]["name"] for o in base_objects() if o["kind"] == "ServiceAccount"}
    bindings = {o["subjects"][0]["name"]: o["roleRef"]["name"]
                for o in base_objects() if o["kind"] == "ClusterRoleBinding"}
    roles = {o["metadata"]["name"] for o in base_objects() if o["kind"] == "ClusterRole"}
    for name in ("podnet-webhook", "podnet-sync", "podnet-agent"):
        assert name in accounts and bindings[name] == name and name in roles
    used = {o["spec"]["template"]["spec"].get("serviceAccountName")
            for o in base_objects() if o["kind"] in ("Deployment", "DaemonSet")}
    assert used == {"podnet-webhook", "podnet-sync", "podnet-agent"}


def test_rbac_grants_no_wildcards_no_secrets_and_writes_only_where_needed() -> None:
    writes = {"create", "update", "patch", "delete", "deletecollection"}
    granted: dict[str, set[str]] = {}
    for role in (o for o in base_objects() if o["kind"] == "ClusterRole"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
            assert "secrets" not in rule["resources"]
            if writes & set(rule["verbs"]):
                granted.setdefault(role["metadata"]["name"], set()).update(rule["resources"])
    assert granted == {"podnet-sync": {"pods", "events", "subnets/status"},
                       "podnet-agent": {"nodes", "events"}}


def test_every_rbac_rule_says_why_it_is_there() -> None:
    for path in sorted((MANIFESTS / "rbac").glob("*.yaml")):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            if line.startswith("- apiGroups:"):
                assert lines[index - 1].startswith("# "), f"{path.name}:{index + 1}"


@SKIP_KUBECTL
def test_the_ovn_nb_ssl_component_gives_the_sync_worker_its_certificate(tmp_path: Path) -> None:
    relative = os.path.relpath(MANIFESTS, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [relative], "components": [f"{relative}/ovn-nb-ssl"],
    }))
    built = {ident(o): o for o in kustomize(tmp_path)}
    assert built["ConfigMap/podnet-config"]["data"]["ovn-nb"].startswith("ssl:")
    sync = built["Deployment/podnet-sync"]
    kubernetes_validate.validate(sync, KUBERNETES_VERSIONS[-1], strict=True)
    [container] = sync["spec"]["template"]["spec"]["containers"]
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    files = {arg.split("=", 1)[0]: arg.split("=", 1)[1] for arg in container["args"]
             if arg.startswith("--ovn-nb-") and "=" in arg}
    assert set(files) == {"--ovn-nb-private-key", "--ovn-nb-certificate", "--ovn-nb-ca-cert"}
    assert all(path.startswith(mounted["ovn-nb-tls"] + "/") for path in files.values())


@SKIP_KUBECTL
def test_the_agent_own_node_component_builds_a_valid_admission_policy(tmp_path: Path) -> None:
    relative = os.path.relpath(MANIFESTS, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [relative], "components": [f"{relative}/agent-own-node"],
    }))
    built = {ident(o): o for o in kustomize(tmp_path)}
    policy = built["ValidatingAdmissionPolicy/podnet-agent-own-node"]
    assert built["ValidatingAdmissionPolicyBinding/podnet-agent-own-node"]["spec"][
        "policyName"] == "podnet-agent-own-node"
    kubernetes_validate.validate(policy, KUBERNETES_VERSIONS[-1], strict=True)
    assert "authentication.kubernetes.io/node-name" in policy["spec"]["validations"][0][
        "expression"]


# ------------------------------------------- cert-manager, scheduler config


CERTIFICATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["secretName", "issuerRef"],
    "additionalProperties": False,
    "properties": {
        "secretName": {"type": "string"},
        "duration": {"type": "string", "pattern": "^[0-9]+h$"},
        "renewBefore": {"type": "string", "pattern": "^[0-9]+h$"},
        "commonName": {"type": "string", "maxLength": 64},
        "dnsNames": {"type": "array", "items": {"type": "string"}},
        "privateKey": {"type": "object", "additionalProperties": False, "properties": {
            "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
            "size": {"type": "integer"},
            "rotationPolicy": {"enum": ["Never", "Always"]},
        }},
        "usages": {"type": "array", "items": {"enum": [
            "server auth", "client auth", "digital signature", "key encipherment",
        ]}},
        "issuerRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                      "properties": {"name": {"type": "string"},
                                     "kind": {"enum": ["Issuer", "ClusterIssuer"]},
                                     "group": {"type": "string"}}},
    },
}
"""The fields of cert-manager's ``cert-manager.io/v1`` Certificate spec that podnet uses."""


def test_the_cert_manager_certificate_covers_the_webhook_service_names() -> None:
    objects = {o["kind"]: o for o in component_objects()}
    issuer, certificate = objects["Issuer"], objects["Certificate"]
    assert issuer["apiVersion"] == certificate["apiVersion"] == "cert-manager.io/v1"
    assert issuer["spec"] == {"selfSigned": {}}
    jsonschema.validate(certificate["spec"], CERTIFICATE_SCHEMA)
    assert certificate["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    assert certificate["spec"]["secretName"] == "podnet-webhook-tls"
    assert "podnet-webhook.podnet-system.svc" in certificate["spec"]["dnsNames"]
    volumes = by_kind("Deployment", "podnet-webhook")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "podnet-webhook-tls"}} in volumes


EXTENDER_FIELDS = {
    "urlPrefix", "filterVerb", "preemptVerb", "prioritizeVerb", "weight", "bindVerb",
    "enableHTTPS", "tlsConfig", "httpTimeout", "nodeCacheCapable", "managedResources",
    "ignorable",
}
"""``Extender`` of ``kubescheduler.config.k8s.io/v1`` (k8s.io/kube-scheduler/config/v1)."""
TLS_FIELDS = {"insecure", "serverName", "certFile", "keyFile", "caFile", "certData",
              "keyData", "caData"}


def test_the_scheduler_config_example_names_only_real_extender_fields() -> None:
    [config] = documents(MANIFESTS / "scheduler" / "scheduler-config.yaml")
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert config["kind"] == "KubeSchedulerConfiguration"
    [extender] = config["extenders"]
    assert set(extender) <= EXTENDER_FIELDS and set(extender["tlsConfig"]) <= TLS_FIELDS
    assert extender["enableHTTPS"] is True and extender["weight"] >= 1
    assert extender["urlPrefix"].startswith("https://podnet-webhook.podnet-system.svc")


# -------------------------------------------------------- self-signed path


MAKE_CERTS = MANIFESTS / "self-signed" / "make-certs.sh"


def test_make_certs_writes_a_chain_for_the_webhook_service(tmp_path: Path) -> None:
    make_certs(tmp_path)
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")],
        capture_output=True, text=True, check=False,
    )
    assert verify.returncode == 0, verify.stderr
    names = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "tls.crt"), "-noout", "-ext",
         "subjectAltName"], capture_output=True, text=True, check=True,
    ).stdout
    assert "DNS:podnet-webhook.podnet-system.svc," in names


FAKE_KUBECTL = """#!/bin/sh
echo "$*" >> "$KUBECTL_LOG"
case "$*" in
  *"create secret"*) echo "kind: Secret" ;;
  "apply -f -") cat >> "$KUBECTL_LOG" ;;
  "get mutatingwebhookconfiguration"*) printf x ;;
  "get validatingwebhookconfiguration"*) printf xxxxx ;;
esac
"""


def test_make_certs_stores_the_secret_and_sets_the_ca_bundle_of_every_webhook(
    tmp_path: Path,
) -> None:
    """Against a stand-in kubectl that records what it is asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kubectl"
    fake.write_text(FAKE_KUBECTL)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "kubectl.log"
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                   "KUBECTL_LOG": str(log)}
    subprocess.run([str(MAKE_CERTS), "--out", str(tmp_path / "certs")], check=True,
                   capture_output=True, env=environment)
    calls = log.read_text().splitlines()
    # The secret is made by `create --dry-run | apply`: both run at once, in either order.
    assert any(c.startswith("-n podnet-system create secret tls podnet-webhook-tls")
               for c in calls)
    assert "kind: Secret" in calls
    patches = {line.split()[1]: json.loads(line.split(" -p ", 1)[1])
               for line in calls if line.startswith("patch ")}
    counts = {"mutatingwebhookconfiguration": 1, "validatingwebhookconfiguration": 5}
    ca = (tmp_path / "certs" / "ca.crt").read_bytes()
    for kind, count in counts.items():
        assert [p["path"] for p in patches[kind]] == [
            f"/webhooks/{i}/clientConfig/caBundle" for i in range(count)]
        assert all(base64.b64decode(p["value"]) == ca for p in patches[kind])
    assert count == len(by_kind("ValidatingWebhookConfiguration")["webhooks"])


async def test_the_webhook_serves_the_self_signed_certificate_under_its_service_name(
    tmp_path: Path, redis_settings: RedisSettings
) -> None:
    make_certs(tmp_path)
    settings = ServerSettings(tls_cert=tmp_path / "tls.crt", tls_key=tmp_path / "tls.key",
                              host="127.0.0.1", port=0, redis=redis_settings)
    trust = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    async with running_webhook(settings) as running, aiohttp.ClientSession() as session:
        response = await session.get(
            running.url + "/healthz", ssl=trust,
            server_hostname="podnet-webhook.podnet-system.svc",
        )
        assert response.status == 200
        response.release()


def make_certs(folder: Path) -> None:
    subprocess.run([str(MAKE_CERTS), "--out", str(folder), "--no-kubectl"], check=True,
                   capture_output=True)
