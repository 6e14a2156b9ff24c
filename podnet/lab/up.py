"""``podnet up``: the whole of podnet on one machine, multi-node, from ordinary manifests.

``up`` starts, each as a background process tracked by pidfile in the state directory
(or an OVS daemon with its own pidfile), and each left running if it already runs:

1. Redis (AOF on, data in ``<state>/redis``), the IPAM's store;
2. OVN central (NB and SB ovsdb-servers on unix sockets in ``<state>/ovn-central``,
   ovn-northd);
3. the lab's API server (``podnet.lab.apiserver``, objects kept in
   ``<state>/apiserver/objects.json``) and a kubeconfig per component;
4. the webhook over HTTPS with a certificate from the lab's own CA, following
   Namespaces, Subnets and IPPools in the API server (``--kubeconfig``) as it does in a
   cluster, and registered with the API server as Mutating/ValidatingWebhookConfigurations,
   as ``manifests/webhook/`` registers it;
5. the IPAM query endpoint;
6. N simulated nodes (``podnet.lab.nodes``) on an underlay bridge, their Node objects,
   and the external host standing for the world outside the cluster;
7. the sync worker (``podnet sync --kubeconfig``, the code that runs in a cluster), then
   a node agent per node (``podnet.lab.agents``), each ready once the sync worker gave
   its node a join address;
8. the lab's controllers (``podnet.lab.controllers``): workloads, scheduler, endpoint
   slices, and the kubelet's CNI side, which attaches pods by running ``podnet-cni``.

Then it applies the manifests (``podnet.lab.apply``). The webhook hands out no address in
a subnet before the sync worker's full resync has marked the subnet's index rebuilt
(``require_rebuilt``), so after the Subnets and IPPools ``up`` waits until each is
registered, written to OVN by a full sync step and not fenced, before it applies pods.
Workload pods refused meanwhile are retried by their controllers; a bare Pod refused at
apply time is reported. ``up`` watches the pods settle while printing progress, runs the
connectivity checks (``podnet.lab.checks``), and prints a table per pod, every problem,
and the checks. A bad manifest is a problem line; everything else stays up. Running
``up`` again keeps what runs and re-applies the manifests, which changes nothing that did
not change.

``down`` stops every process by the PID it recorded, removes every namespace, link and
bridge the ledger names (``podnet.lab.ledger``), and the state directory. It works on
whatever a half-finished ``up`` left.

``up --clusters N`` (``LabSettings.clusters``) does all of the above for each cluster
(``LabSettings.for_cluster``), after starting the IC databases they share, then joins
their underlays, applies each cluster's ``ovn-ic-config`` and starts its IC controller
(``podnet.lab.interconnect``), applies each cluster's manifests, runs each cluster's
checks and those across clusters. ``status`` and ``down`` cover every cluster.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ipam import annotations as keys
from ipam import errors
from ipam.api import subnet_list
from ipam.cli import format_table, subnets_table
from ipam.store import open_ipam
from ipam.subnet import DEFAULT_CIDR, DEFAULT_SUBNET, JOIN_SUBNET
from podnet.daemons import BackgroundProcess, DaemonError
from podnet.lab import agents, interconnect, keeper
from podnet.lab.apply import PHASES, Applied, apply_phase, in_phases
from podnet.lab.certs import Certificates
from podnet.lab.checks import (
    CheckResult,
    Host,
    node_addresses,
    plan_checks,
    plan_cross_checks,
    pod_host,
    run_checks,
    service_targets,
)
from podnet.lab.kubelet import NodeRuntime, sandbox_name
from podnet.lab.ledger import Ledger
from podnet.lab.nodes import (
    LabNode,
    ensure_external,
    ensure_underlay,
    known_nodes,
    lab_nodes,
    remove_link,
    start_node,
    stop_node,
)
from podnet.lab.objects import (
    REPLICA_FAILURE,
    pod_ready,
    spec_of,
    status_of,
    terminal,
    uid_of,
    write_kubeconfig,
)
from podnet.lab.report import Report, pod_row, workload_problems
from podnet.lab.rest import Rest
from podnet.lab.settings import DEFAULT_STATE_DIR, MAX_CLUSTERS, LabSettings
from podnet.ovn import Central, OvnError, netns_delete, netns_exists
from podnet.ovn_ic import IcDatabase
from podnet.ovn_raft import RaftCentral, RaftDatabase
from podnet_plumbing import kube
from podnet_plumbing.manifests import Manifest, ManifestProblem, read_manifests

PROCESSES = ("redis", "apiserver", "webhook", "ipam-endpoint", "sync", "controllers")
"""The lab's own processes; each node adds its agent, ``agent-<node>``."""
STOPPING_ORDER = ("ic", "controllers", "agents", "sync", "ipam-endpoint", "webhook",
                  "apiserver")
WEBHOOK_RESCAN_S = 0.25
ADMIN = "kubernetes-admin"
COMPONENT_USERS = {
    "admin": ADMIN,
    "webhook": "system:serviceaccount:podnet-system:podnet-webhook",
    "sync": "system:serviceaccount:podnet-system:podnet-sync",
    "controllers": "system:kube-controller-manager",
    "agent": "system:serviceaccount:podnet-system:podnet-agent",
    "ic": "system:serviceaccount:kube-system:podnet-ic",
}


class Progress:
    """Progress lines with the time since ``up`` began (and, with several clusters, the
    cluster they are about)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.label = ""

    def step(self, message: str) -> None:
        print(f"==> [{time.monotonic() - self.started:5.1f}s] {self.label}{message}",
              flush=True)

    def about(self, settings: LabSettings | None) -> None:
        """Label what follows with ``settings``'s cluster (nothing with one cluster)."""
        several = settings is not None and settings.clusters > 1
        self.label = f"[{settings.az_name}] " if several and settings else ""

    def note(self, message: str) -> None:
        print(f"    {message}", flush=True)


def lab_processes(settings: LabSettings) -> dict[str, BackgroundProcess]:
    """Every process ``up`` may have started, node agents after the sync worker."""
    found = {name: BackgroundProcess(name, settings.state_dir) for name in PROCESSES
             if name != "controllers"}
    if settings.ha:
        found.update(settings.redis_group.processes())
    for node in known_nodes(settings):
        process = agents.agent_process(settings, node.name)
        found[process.name] = process
    found["controllers"] = BackgroundProcess("controllers", settings.state_dir)
    if settings.clusters > 1:
        found[interconnect.IC_PROCESS] = interconnect.ic_process(settings)
    return found


def known_clusters(first: LabSettings) -> list[LabSettings]:
    """Every cluster of the lab whose first cluster ``first`` is: those it names, and any
    other an earlier ``up`` recorded under its state directory."""
    found = first.all_clusters()
    for cluster in range(first.clusters + 1, MAX_CLUSTERS + 1):
        recorded = LabSettings.recorded(first.state_dir / f"cluster-{cluster}")
        if recorded is not None:
            found.append(recorded)
    return found


def central_of(settings: LabSettings) -> Central:
    return settings.central()


def ledger_of(settings: LabSettings) -> Ledger:
    return Ledger(settings.state_dir / "created.ledger")


def python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


# ------------------------------------------------------------------ up


def up(settings: LabSettings) -> list[ManifestProblem]:
    """Bring podnet up (idempotent); returns the manifest problems it reported."""
    progress = Progress()
    settings = _keep_running(settings, progress)
    if settings.clusters > 1:
        return _up_clusters(settings, progress)
    settings.record()
    rest, central, attaching = _start_all(settings, progress)
    problems, report = asyncio.run(_apply_and_watch(settings, rest, central, attaching,
                                                    progress))
    report.connectivity = check_connectivity(settings, rest, progress)
    report.save(settings.state_dir)
    print("\n" + report.render(), flush=True)
    print(status_report(settings, with_pods=False), flush=True)
    print(next_steps(settings))
    return problems


def next_steps(settings: LabSettings) -> str:
    """How to drive the lab with the tools a Kubernetes user already has."""
    state = "" if settings.state_dir == DEFAULT_STATE_DIR else \
        f" --state-dir {settings.state_dir}"
    if settings.clusters > 1:
        return "\n".join([
            "Use it with kubectl, one kubeconfig per cluster:",
            *(f"  export KUBECONFIG={each.kubeconfig('admin')}   # cluster {each.cluster}, "
              f"{each.az_name}" for each in settings.all_clusters()),
            "  kubectl get pods -A -o wide",
            f"Run a command in a pod's network:  podnet exec{state} [--cluster K] "
            "NAMESPACE/POD -- ping -c1 IP",
            f"Trace a packet to the other cluster:  podnet trace{state} NAMESPACE/POD IP",
            f"Stop every cluster with: podnet down{state}",
        ])
    return "\n".join([
        "Use it with kubectl:",
        f"  export KUBECONFIG={settings.kubeconfig('admin')}",
        "  kubectl get pods -A -o wide",
        f"Run a command in a pod's network:  podnet exec{state} NAMESPACE/POD -- ping -c1 IP",
        f"Stop with: podnet down{state}",
    ])


# ------------------------------------------------------------ several clusters


Started = tuple[LabSettings, Rest, Central, bool]
"""A running cluster: its settings, its API server's client, its OVN central and
whether its nodes attach pods."""


def _up_clusters(first: LabSettings, progress: Progress) -> list[ManifestProblem]:
    """``up`` for several clusters interconnected over OVN-IC (see the module docstring)."""
    started = _start_clusters(first, progress)
    problems: list[ManifestProblem] = []
    reports = []
    for settings, rest, central, attaching in started:
        progress.about(settings)
        found, report = asyncio.run(_apply_and_watch(settings, rest, central, attaching,
                                                     progress))
        problems += found
        report.connectivity = check_connectivity(settings, rest, progress)
        reports.append(report)
    progress.about(None)
    reports[0].connectivity += check_across_clusters(first, progress)
    for (settings, *_), report in zip(started, reports, strict=True):
        report.save(settings.state_dir)
        print(f"\ncluster {settings.cluster} ({settings.az_name}, state in "
              f"{settings.state_dir}):\n" + report.render(), flush=True)
    print(status_report(first, with_pods=False), flush=True)
    print(next_steps(first))
    return problems


def _start_clusters(first: LabSettings, progress: Progress) -> list[Started]:
    """Start what does not run of every cluster, the IC databases they share, the routes
    between their underlays and each one's IC controller."""
    clusters = first.all_clusters()
    for settings in clusters:
        settings.record()
    databases = interconnect.ic_databases(first)
    shape = "3-member raft each" if first.ha else "standalone"
    progress.step(f"IC databases ({shape}) on {databases.db_host}, NB port "
                  f"{databases.nb_port}, SB port {databases.sb_port}")
    databases.start()
    started = []
    for settings in clusters:
        progress.about(settings)
        progress.step(f"cluster {settings.cluster} of {len(clusters)}, AZ "
                      f"{settings.az_name}, state in {settings.state_dir}")
        started.append((settings, *_start_all(settings, progress)))
    progress.about(None)
    progress.step("joining the clusters' underlays through their external hosts on "
                  f"{first.interconnect_bridge} ({first.interconnect_cidr})")
    for line in interconnect.join_underlays(clusters, ledger_of(first)):
        progress.note(line)
    for settings, rest, central, _ in started:
        progress.about(settings)
        _start_ic(settings, rest, central, databases, progress)
    progress.about(None)
    return started


def _start_ic(settings: LabSettings, rest: Rest, central: Central,
              databases: IcDatabase, progress: Progress) -> None:
    """The cluster's ``ovn-ic-config`` and its IC controller."""
    config = interconnect.config_map(settings, databases)
    _apply_object(rest, config)
    data = config["data"]
    progress.step(f"ConfigMap {interconnect.CONFIG_NAMESPACE}/{interconnect.CONFIG_MAP}: "
                  f"az-name {data['az-name']}, gw-nodes {data['gw-nodes']}, ic-db-host "
                  f"{data['ic-db-host']}, auto-route {data['auto-route']}")
    process = interconnect.ic_process(settings)
    progress.step(f"IC controller on http://{settings.ic_listen} (podnet ic: ovn-ic, the "
                  "transit switch ports, route learning)")
    _start(process, interconnect.ic_argv(settings, central))
    _wait_http(f"http://{settings.ic_listen}/readyz", process)


def revive(settings: LabSettings) -> list[str]:
    """Start again whatever of a running lab has stopped (a component that crashed, say),
    as a second ``up`` would, but without applying manifests or checking connectivity;
    the names of the processes started."""
    progress = Progress()
    settings = _keep_running(settings, progress)
    clusters = settings.all_clusters()
    before = {(each.cluster, name): process.pid() for each in clusters
              for name, process in lab_processes(each).items()}
    if settings.clusters > 1:
        _start_clusters(settings, progress)
    else:
        _start_all(settings, progress)
    label = (lambda each, name: name) if len(clusters) == 1 else \
        (lambda each, name: f"{each.az_name}/{name}")
    return [label(each, name) for each in clusters
            for name, process in lab_processes(each).items()
            if process.pid() != before.get((each.cluster, name))]


def _start_all(settings: LabSettings, progress: Progress) -> tuple[Rest, Central, bool]:
    """Start every process of the lab that does not run; the API server's client, OVN
    central and whether the nodes attach pods."""
    processes = lab_processes(settings)
    ledger = ledger_of(settings)
    fresh_store = _start_redis(settings, processes, progress)
    central = _start_central(settings, progress)
    rest = _start_apiserver(settings, processes, progress)
    certificates = _start_webhook(settings, processes, rest, progress)
    if settings.default_cidr != DEFAULT_CIDR:
        _apply_object(rest, default_subnet_object(settings))
        progress.note(f"Subnet {DEFAULT_SUBNET} {settings.default_cidr} (the default, "
                      "before the sync worker would create podnet's built-in one)")
    _start_ipam_endpoint(settings, processes, progress)
    nodes = _start_nodes(settings, central, ledger, rest, progress)
    _start_sync(settings, processes, central, progress, restart=fresh_store)
    runtimes = node_agents(settings, nodes, rest, progress)
    _start_controllers(settings, processes, runtimes, certificates, ledger, progress)
    return rest, central, bool(runtimes)


FIXED_WHILE_RUNNING = ("redis_port", "ipam_listen", "apiserver_listen", "webhook_listen",
                       "prefix", "underlay_cidr", "service_cidr", "clusters", "ic_listen",
                       "ic_nb_port", "ic_sb_port")


def default_subnet_object(settings: LabSettings) -> dict[str, Any]:
    """``ovn-default`` on the cluster's ``default_cidr``, as Kube-OVN users write it (see
    ``examples/10-subnets.yaml``), for a cluster whose default is not podnet's built-in."""
    network = ipaddress.ip_network(settings.default_cidr)
    gateway = str(network.network_address + 1)
    return {
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet",
        "metadata": {"name": DEFAULT_SUBNET},
        "spec": {"protocol": "IPv4" if network.version == 4 else "IPv6",
                 "cidrBlock": settings.default_cidr, "gateway": gateway,
                 "excludeIps": [gateway], "gatewayType": "distributed",
                 "natOutgoing": True, "default": True},
    }


def _keep_running(settings: LabSettings, progress: Progress) -> LabSettings:
    """``settings``, but with the addresses and names of a lab that already runs here.

    A second ``up`` must find what the first started; moving ports or names of running
    processes takes a ``podnet down`` first."""
    recorded = LabSettings.recorded(settings.state_dir)
    if recorded is None or not any(p.pid() for p in lab_processes(recorded).values()):
        return settings
    kept = {name: getattr(recorded, name) for name in FIXED_WHILE_RUNNING
            if getattr(recorded, name) != getattr(settings, name)}
    if kept:
        progress.note("a lab runs here already; keeping its " + ", ".join(
            f"{name}={value}" for name, value in kept.items()))
    return replace(settings, **kept)


def _start_redis(settings: LabSettings, processes: Mapping[str, BackgroundProcess],
                 progress: Progress) -> bool:
    """Start Redis unless it runs; whether it was started now."""
    if settings.ha:
        group = settings.redis_group
        progress.step(f"Redis: 3 servers on 127.0.0.1:{group.ports[0]}-{group.ports[-1]} under "
                      f"3 sentinels on :{group.sentinel_ports[0]}-{group.sentinel_ports[-1]}")
        names = group.start()
        return len([name for name in names if not name.startswith("sentinel")]) == 3
    redis = settings.redis
    progress.step(f"Redis on 127.0.0.1:{redis.port} (data in {redis.directory}, AOF on)")
    redis.directory.mkdir(parents=True, exist_ok=True)
    started = _start(processes["redis"], redis.argv())
    redis.wait_ready()
    return started


def _start_central(settings: LabSettings, progress: Progress) -> Central:
    central = central_of(settings)
    shape = "3-member raft NB and SB, 2 northd" if settings.ha else "NB/SB, northd"
    progress.step(f"OVN central ({shape}, on unix sockets in {central.directory})")
    return central.start()


def _start_apiserver(settings: LabSettings, processes: Mapping[str, BackgroundProcess],
                     progress: Progress) -> Rest:
    progress.step(f"lab API server on {settings.apiserver_url}")
    state = settings.state_dir / "apiserver" / "objects.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    process = processes["apiserver"]
    _start(process, python("podnet.lab.apiserver", "--listen", settings.apiserver_listen,
                           "--state", str(state), "--service-cidr", settings.service_cidr))
    _wait_http(f"{settings.apiserver_url}/readyz", process)
    for component, user in COMPONENT_USERS.items():
        write_kubeconfig(settings.kubeconfig(component), settings.apiserver_url, user)
    return Rest(kube.kube_client(settings.kubeconfig("admin")))


def _start_webhook(settings: LabSettings, processes: Mapping[str, BackgroundProcess],
                   rest: Rest, progress: Progress) -> Certificates:
    certificates = Certificates(settings.state_dir / "tls").ensure()
    progress.step(f"webhook on {settings.webhook_url} (CA {certificates.ca}), following "
                  "Namespaces, Subnets and IPPools in the API server")
    process = processes["webhook"]
    _start(process, python(
        "podnet.cli", "webhook", "--listen", settings.webhook_listen,
        "--tls-cert", str(certificates.cert), "--tls-key", str(certificates.key),
        "--redis", settings.redis_url, "--kubeconfig", str(settings.kubeconfig("webhook")),
        "--rescan", str(WEBHOOK_RESCAN_S), "--service-cidr", settings.service_cidr,
    ))
    _wait_http(f"{settings.webhook_url}/readyz", process, ca=certificates.ca)
    ca_bundle = base64.b64encode(certificates.ca.read_bytes()).decode()
    for configuration in webhook_configurations(settings.webhook_url, ca_bundle):
        _apply_object(rest, configuration)
    progress.note("registered as MutatingWebhookConfiguration and "
                  "ValidatingWebhookConfiguration podnet")
    return certificates


def _start_ipam_endpoint(settings: LabSettings, processes: Mapping[str, BackgroundProcess],
                         progress: Progress) -> None:
    progress.step(f"IPAM endpoint on http://{settings.ipam_listen}")
    process = processes["ipam-endpoint"]
    _start(process, python("podnet.cli", "ipam", "serve", "--listen", settings.ipam_listen,
                           "--redis", settings.redis_url))
    _wait_http(f"http://{settings.ipam_listen}/readyz", process)


def _start_nodes(settings: LabSettings, central: Central, ledger: Ledger, rest: Rest,
                 progress: Progress) -> list[LabNode]:
    nodes = lab_nodes(settings)
    bridge = ensure_underlay(settings, ledger)
    progress.step(f"{len(nodes)} nodes on underlay bridge {bridge} "
                  f"({settings.underlay_cidr}, Geneve)")
    for node in nodes:
        agents.check_socket_path(node)
        start_node(node, central, ledger)
        _apply_object(rest, node.api_object())
        progress.note(f"{node.name}: netns {node.netns}, underlay {node.address}, "
                      f"{node.zone}, chassis registered")
    external = ensure_external(settings, ledger)
    progress.note(f"outside world: netns {external}, {settings.outside_address} behind "
                  f"{settings.external_underlay_address().ip} (the nodes' default gateway)")
    return nodes


def node_agents(settings: LabSettings, nodes: Sequence[LabNode], rest: Rest,
                progress: Progress) -> dict[str, NodeRuntime]:
    """Start ``podnet agent`` for each node (``podnet.lab.agents``), wait until every node
    is ready for pods, and return how the kubelet side attaches pods on each."""
    progress.step(f"node agents on {', '.join(node.name for node in nodes)}")
    started = []
    for node in nodes:
        process = agents.agent_process(settings, node.name)
        argv = agents.agent_argv(settings, node)
        if process.pid() is None or _recorded_command(process) != " ".join(argv):
            _forget_readiness(rest, node.name)  # the new agent sets it once it is ready
        _start(process, argv)
        started.append((node.name, process))
    agents.wait_ready(started, lambda node: agents.agent_ready(rest, node))
    progress.note("every node ready: join port installed, routes and SNAT in place "
                  f"(label {keys.AGENT_READY_LABEL}=true)")
    return {node.name: agents.runtime_of(node) for node in nodes}


def _forget_readiness(rest: Rest, node: str) -> None:
    rest.patch("Node", node, {"metadata": {"labels": {keys.AGENT_READY_LABEL: None}}})


def _start_sync(settings: LabSettings, processes: Mapping[str, BackgroundProcess],
                central: Central, progress: Progress, restart: bool = False) -> None:
    """Start the sync worker; ``restart`` it when Redis was started afresh under it, so
    that its first step, a full resync, rebuilds the index on this Redis."""
    progress.step("sync worker (API server -> IPAM bindings and OVN northbound)")
    process = processes["sync"]
    if restart and process.pid() is not None:
        process.stop()
    if _start(process, python("podnet.cli", "sync", "--kubeconfig",
                              str(settings.kubeconfig("sync")), "--ovn-nb", central.nb_remote,
                              "--redis", settings.redis_url, "--release-grace", "5",
                              "--listen", settings.sync_listen)):
        _wait_alive(process)


def _start_controllers(settings: LabSettings, processes: Mapping[str, BackgroundProcess],
                       runtimes: Mapping[str, NodeRuntime], certificates: Certificates,
                       ledger: Ledger, progress: Progress) -> None:
    progress.step("controllers (workloads, scheduler, endpoint slices, kubelet)")
    argv = python("podnet.lab.controllers", "--kubeconfig",
                  str(settings.kubeconfig("controllers")))
    if runtimes:
        config = settings.state_dir / "kubelet.json"
        config.write_text(json.dumps({
            "prefix": settings.prefix, "ledger": str(ledger.path),
            "nodes": [{"name": r.name, "netns": r.netns, "network": dict(r.network),
                       "plugin": r.plugin, "pluginDirs": list(r.plugin_dirs)}
                      for r in runtimes.values()],
        }, indent=2))
        argv += ["--kubelet", str(config), "--extender", f"{settings.webhook_url}/scheduler",
                 "--extender-ca", str(certificates.ca)]
    if _start(processes["controllers"], argv):
        _wait_alive(processes["controllers"])


def webhook_configurations(url: str, ca_bundle: str) -> list[dict[str, Any]]:
    """podnet's webhook registrations (as in ``manifests/webhook/``), by URL for the lab."""
    def client_config(path: str) -> dict[str, str]:
        return {"url": f"{url}{path}", "caBundle": ca_bundle}

    outside_system = {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                                            "operator": "NotIn",
                                            "values": ["kube-system", "podnet-system"]}]}

    def validating(name: str, path: str, resources: list[str], group: str,
                   policy: str) -> dict[str, Any]:
        operations = ["CREATE", "UPDATE", "DELETE"] if group == "kubeovn.io" else [
            "CREATE", "UPDATE"]
        hook: dict[str, Any] = {
            "name": name, "admissionReviewVersions": ["v1"],
            "clientConfig": client_config(path), "failurePolicy": policy,
            "sideEffects": "None", "timeoutSeconds": 10,
            "rules": [{"operations": operations, "apiGroups": [group], "apiVersions": ["v1"],
                       "resources": resources,
                       "scope": "Cluster" if group == "kubeovn.io" else "Namespaced"}],
        }
        if group != "kubeovn.io":
            hook["namespaceSelector"] = outside_system
        return hook

    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "podnet"},
        "webhooks": [{
            "name": "pods.podnet.io", "admissionReviewVersions": ["v1"],
            "clientConfig": client_config("/mutate-pods"),
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "failurePolicy": "Fail", "matchPolicy": "Equivalent",
            "sideEffects": "NoneOnDryRun", "reinvocationPolicy": "IfNeeded",
            "timeoutSeconds": 10, "namespaceSelector": outside_system,
        }],
    }
    validating_configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "podnet"},
        "webhooks": [
            validating("subnets.podnet.io", "/validate-subnets", ["subnets"], "kubeovn.io",
                       "Fail"),
            validating("ippools.podnet.io", "/validate-ippools", ["ippools"], "kubeovn.io",
                       "Fail"),
            validating("workloads.podnet.io", "/validate-workloads",
                       ["deployments", "statefulsets", "daemonsets", "replicasets"], "apps",
                       "Ignore"),
            {**validating("pod-updates.podnet.io", "/validate-pods", ["pods"], "", "Ignore"),
             "rules": [{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                        "resources": ["pods"], "scope": "Namespaced"}]},
            # every ConfigMap write of kube-system: the webhook checks ovn-ic-config and
            # lets the others pass (a rule cannot name one ConfigMap)
            {**validating("ic-config.podnet.io", "/validate-ic-config", ["configmaps"], "",
                          "Ignore"),
             "timeoutSeconds": 5, "namespaceSelector": {"matchExpressions": [{
                 "key": "kubernetes.io/metadata.name", "operator": "In",
                 "values": ["kube-system"]}]}},
        ],
    }
    return [mutating, validating_configuration]


def _apply_object(rest: Rest, obj: dict[str, Any]) -> None:
    """Apply one object ``up`` itself defines; a refusal stops ``up``."""
    outcome = Applied()
    apply_phase(rest, [Manifest("podnet up", obj)], outcome)
    if outcome.problems:
        raise DaemonError(str(outcome.problems[0]))


def _wait_http(url: str, process: BackgroundProcess, timeout_s: float = 30.0,
               ca: Path | None = None) -> None:
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(urllib.error.URLError, OSError), \
                urllib.request.urlopen(url, timeout=1, context=context) as response:
            if response.status == 200:
                return
        if process.pid() is None:
            raise DaemonError(f"{process.name} exited; see {process.logfile}")
        time.sleep(0.1)
    raise DaemonError(f"{url} not ready after {timeout_s}s; see {process.logfile}")


def _start(process: BackgroundProcess, argv: list[str]) -> bool:
    """Start ``process`` unless it runs with this very command line (one that runs with
    another, say the controllers before a node agent was added, is restarted); whether
    it was started now."""
    if process.pid() is not None:
        if _recorded_command(process) == " ".join(argv):
            return False
        process.stop()
    process.start(argv)
    return True


def _recorded_command(process: BackgroundProcess) -> str:
    try:
        return process.pidfile.read_text().split(" ", 1)[1].strip()
    except (OSError, IndexError):
        return ""


def _wait_alive(process: BackgroundProcess, settle_s: float = 0.5) -> None:
    """Give a process with no readiness endpoint a moment, and check it did not exit."""
    time.sleep(settle_s)
    if process.pid() is None:
        raise DaemonError(f"{process.name} exited; see {process.logfile}")


# ---------------------------------------------------------- manifests


async def _apply_and_watch(settings: LabSettings, rest: Rest, central: Central,
                           attaching: bool, progress: Progress
                           ) -> tuple[list[ManifestProblem], Report]:
    manifests, problems = read_manifests(settings.manifests)
    progress.step(f"applying {len(manifests)} objects from "
                  + ", ".join(map(str, settings.manifests)))
    outcome = Applied()
    times = PodTimes(rest.api)
    times.start()
    try:
        for index, phase in enumerate(in_phases(manifests)):
            before = len(outcome.created) + len(outcome.changed)
            if PHASES[index] == ("Deployment", "StatefulSet", "ReplicaSet", "Pod"):
                await _wait_admission_ready(settings, central, outcome, progress)
            if phase:
                await asyncio.to_thread(apply_phase, rest, phase, outcome)
            changed = len(outcome.created) + len(outcome.changed) > before
            if changed and PHASES[index] in (("Namespace",), ("Subnet",), ("IPPool",)):
                await asyncio.sleep(3 * WEBHOOK_RESCAN_S)  # the webhook's watch and rescan
        _summarise(outcome, progress)
        problems += outcome.problems
        for problem in problems:
            progress.note(f"! {problem}")
        report = await _watch_pods(settings, rest, times, attaching, progress)
    finally:
        await times.stop()
    report.problems = [str(p) for p in problems] + report.problems
    return problems, report


def _summarise(outcome: Applied, progress: Progress) -> None:
    progress.note(f"{len(outcome.created)} created, {len(outcome.changed)} changed, "
                  f"{len(outcome.unchanged)} unchanged, {len(outcome.problems)} refused")


def wanted_subnets(objects: Sequence[Mapping[str, Any]]) -> tuple[set[str], set[str]]:
    """The subnets and pools pods may be admitted to once ``objects`` are applied: the
    Subnets and IPPools among them, ``join``, and ``ovn-default`` unless a Subnet
    declares itself the default."""
    subnets = {JOIN_SUBNET}
    pools = set()
    for obj in objects:
        name = str((obj.get("metadata") or {}).get("name"))
        if obj.get("kind") == "Subnet":
            subnets.add(name)
        elif obj.get("kind") == "IPPool":
            pools.add(name)
    if not any(obj.get("kind") == "Subnet" and (obj.get("spec") or {}).get("default")
               for obj in objects):
        subnets.add(DEFAULT_SUBNET)
    return subnets, pools


async def _wait_admission_ready(settings: LabSettings, central: Central, outcome: Applied,
                                progress: Progress, timeout_s: float = 30.0) -> None:
    """Wait until the webhook can give addresses in every applied subnet.

    Each Subnet and IPPool must be in the IPAM, and each subnet not fenced and written
    to OVN by a full step of the sync worker: that step marks the subnet's index rebuilt
    before it writes the subnet's switch, and the webhook (``require_rebuilt``) hands out
    no address before that."""
    subnets, pools = wanted_subnets(outcome.objects)
    deadline = time.monotonic() + timeout_s
    missing = await _not_ready(settings, central, subnets, pools)
    while missing and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        missing = await _not_ready(settings, central, subnets, pools)
    if missing:
        progress.note(f"! not ready for pods after {timeout_s:.0f}s: {', '.join(missing)}; "
                      "pods may be refused (workloads retry)")
    else:
        progress.note(f"subnets ready for admission: {', '.join(sorted(subnets))}")


async def _not_ready(settings: LabSettings, central: Central, subnets: set[str],
                     pools: set[str]) -> list[str]:
    """What keeps pods of these subnets and pools from being admitted now."""
    try:
        async with open_ipam(replace(settings.redis_settings, socket_timeout_s=1.0)) as ipam:
            usage = {str(s["name"]): bool(s.get("fenced")) for s in await subnet_list(ipam)}
            known_pools = {pool.name for pool in await ipam.pools()}
        listing = await asyncio.to_thread(central.nbctl, "--bare", "--columns=name", "list",
                                          "Logical_Switch")
    except (errors.IpamError, OvnError) as exc:
        return [f"IPAM or OVN unavailable ({exc})"]
    return reasons_not_ready(subnets, pools, usage, known_pools, set(listing.split()))


def reasons_not_ready(subnets: set[str], pools: set[str], usage: Mapping[str, bool],
                      known_pools: set[str], switches: set[str]) -> list[str]:
    """Why pods of ``subnets`` and ``pools`` cannot be admitted yet, given the IPAM's
    subnets (name: fenced), its pools and OVN's logical switches."""
    reasons = []
    for name in sorted(subnets):
        if name not in usage:
            reasons.append(f"subnet {name} not registered")
        elif usage[name]:
            reasons.append(f"subnet {name} fenced")
        elif name not in switches:
            reasons.append(f"subnet {name} not synced yet")
    reasons += [f"IPPool {name} not registered" for name in sorted(pools - known_pools)]
    return reasons


class PodTimes:
    """When each pod was first seen and first ready, from a watch (millisecond-exact)."""

    def __init__(self, api: Any) -> None:
        self.created: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.watcher = kube.Watcher(kube.lister(api, "Pod"), "Pod", self._on_event)

    async def _on_event(self, event: kube.WatchEvent) -> None:
        now = time.monotonic()
        objects = event.objects if isinstance(event, kube.Snapshot) else (event.obj,)
        for pod in objects:
            uid = uid_of(pod)
            self.created.setdefault(uid, now)
            if pod_ready(pod):
                self.ready.setdefault(uid, now)

    def start(self) -> None:
        self.watcher.start()

    async def stop(self) -> None:
        await self.watcher.stop()

    def ready_after(self, uid: str) -> float | None:
        if uid in self.ready and uid in self.created and self.created[uid] < self.ready[uid]:
            return self.ready[uid] - self.created[uid]
        return None


async def _watch_pods(settings: LabSettings, rest: Rest, times: PodTimes, attaching: bool,
                      progress: Progress) -> Report:
    """Wait until every pod is settled (or ``wait_s``), printing progress; the report."""
    progress.step("waiting for pods (admission -> scheduling -> "
                  + ("attach)" if attaching else "node agent: not running)"))
    deadline = time.monotonic() + settings.wait_s
    shown = ""
    while True:
        objects = await asyncio.to_thread(_read_cluster, rest)
        line = _progress_line(objects["Pod"])
        if line != shown:
            progress.note(line)
            shown = line
        if _settled(objects, attaching) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    previous = Report.load(settings.state_dir).ready_times()
    rows = [pod_row(pod, times.ready_after(uid_of(pod)) or previous.get(uid_of(pod)), attaching)
            for pod in objects["Pod"]]
    workloads = objects["Deployment"] + objects["ReplicaSet"] + objects["StatefulSet"]
    return Report(rows, workload_problems(workloads), time.time())


def _read_cluster(rest: Rest) -> dict[str, list[dict[str, Any]]]:
    return {kind: rest.list(kind) for kind in ("Pod", "Deployment", "ReplicaSet",
                                               "StatefulSet")}


def _progress_line(pods: Sequence[Mapping[str, Any]]) -> str:
    live = [p for p in pods if not terminal(p)]
    addressed = sum(1 for p in live if keys.IP_ADDRESS in (
        (p.get("metadata") or {}).get("annotations") or {}))
    scheduled = sum(1 for p in live if spec_of(p).get("nodeName"))
    ready = sum(1 for p in live if pod_ready(p))
    return (f"pods: {len(live)} created, {addressed} with addresses, {scheduled} scheduled, "
            f"{ready} ready")


def _settled(objects: Mapping[str, list[dict[str, Any]]], attaching: bool) -> bool:
    for pod in objects["Pod"]:
        if terminal(pod):
            continue
        unschedulable = any(c.get("type") == "PodScheduled" and c.get("status") == "False"
                            for c in status_of(pod).get("conditions") or [])
        if not spec_of(pod).get("nodeName") and not unschedulable:
            return False
        if attaching and spec_of(pod).get("nodeName") and not pod_ready(pod):
            return False
    return all(_workload_settled(w, attaching)
               for w in objects["Deployment"] + objects["StatefulSet"])


def _workload_settled(workload: Mapping[str, Any], attaching: bool) -> bool:
    status = status_of(workload)
    if any(c.get("type") == REPLICA_FAILURE for c in status.get("conditions") or []):
        return True
    replicas = spec_of(workload).get("replicas", 1)
    have = int(status.get("replicas") or 0)
    if have >= replicas:
        return True
    ordered = workload.get("kind") == "StatefulSet" and \
        spec_of(workload).get("podManagementPolicy") != "Parallel"
    return ordered and not attaching and have >= min(1, replicas)


# -------------------------------------------------------- connectivity


def check_connectivity(settings: LabSettings, rest: Rest, progress: Progress | None = None
                       ) -> list[CheckResult]:
    """Run the connectivity checks between the running pods (``podnet.lab.checks``)."""
    return asyncio.run(_check_connectivity(settings, rest, progress))


def _running_hosts(settings: LabSettings, pods: Sequence[Mapping[str, Any]]
                   ) -> dict[str, Host]:
    """The running pods as the ends of checks, by uid."""
    hosts = {}
    for pod in pods:
        host = pod_host(pod, lambda p: sandbox_name(settings.prefix, p))
        if host is not None and netns_exists(host.netns):
            hosts[uid_of(pod)] = host
    return hosts


def check_across_clusters(first: LabSettings, progress: Progress | None = None
                          ) -> list[CheckResult]:
    """Ping and TCP between pods of different clusters, by pod IP, both ways
    (``podnet.lab.checks.plan_cross_checks``); none with one cluster."""
    if first.clusters < 2:
        return []
    per_cluster = []
    for settings in first.all_clusters():
        try:
            rest = Rest(kube.kube_client(settings.kubeconfig("admin")))
            pods = rest.list("Pod")
        except kube.KubeError:
            pods = []
        hosts = _running_hosts(settings, pods)
        labelled = [replace(host, label=f"{settings.az_name}:{host.label}")
                    for host in hosts.values()]
        per_cluster.append(labelled)
    checks = plan_cross_checks(per_cluster, DEFAULT_SUBNET)
    if progress is not None:
        progress.step(f"connectivity across clusters: {len(checks)} checks (waiting up to "
                      f"{max((c.warm_up_s for c in checks), default=0):.0f}s for the "
                      "routes each AZ learns from the other)")

    def shown(result: CheckResult) -> None:
        if progress is not None:
            verdict = "pass" if result.ok else "FAIL"
            latency = f" {result.latency_ms:.2f} ms" if result.latency_ms is not None else ""
            progress.note(f"{verdict}  {result.kind}: {result.source} -> "
                          f"{result.destination}{latency} ({result.detail})")

    return asyncio.run(run_checks(checks, {}, shown))


async def _check_connectivity(settings: LabSettings, rest: Rest, progress: Progress | None
                              ) -> list[CheckResult]:
    objects = await asyncio.to_thread(
        lambda: {kind: rest.list(kind) for kind in ("Pod", "Service", "EndpointSlice", "Node")})
    hosts = _running_hosts(settings, objects["Pod"])
    addresses = node_addresses(objects["Node"])
    external = Host(f"outside {settings.outside_address}", settings.external_netns,
                    settings.outside_address)
    checks = plan_checks(
        list(hosts.values()),
        service_targets(objects["Service"], objects["EndpointSlice"], hosts),
        external if netns_exists(external.netns) else None, await _nat_subnets(settings),
        addresses)
    if progress is not None:
        progress.step(f"connectivity: {len(checks)} checks between {len(hosts)} running pods")

    def shown(result: CheckResult) -> None:
        if progress is not None:
            verdict = "pass" if result.ok else "FAIL"
            progress.note(f"{verdict}  {result.kind}: {result.source} -> {result.destination}")

    names = {address: node for node, address in addresses.items()}
    return await run_checks(checks, names, shown)


async def _nat_subnets(settings: LabSettings) -> set[str]:
    """The subnets whose pods leave the cluster through SNAT (``natOutgoing``)."""
    with contextlib.suppress(errors.IpamError):
        async with open_ipam(replace(settings.redis_settings, socket_timeout_s=1.0)) as ipam:
            return {spec.name for spec in await ipam.subnets() if spec.nat_outgoing}
    return set()


# -------------------------------------------------------------- status


def status_report(settings: LabSettings, with_pods: bool = True, check: bool = False) -> str:
    """What ``up`` started, every subnet's use while Redis runs, the pods, and the
    connectivity checks (the last ``up``'s, or run again now with ``check``); with several
    clusters, each of them and the IC databases."""
    clusters = known_clusters(settings) if settings.cluster == 1 else [settings]
    if len(clusters) == 1:
        return _cluster_status(settings, with_pods, check)
    parts = []
    for each in clusters:
        parts.append(f"\n=== cluster {each.cluster} ({each.az_name}): state in "
                     f"{each.state_dir}, API server {each.apiserver_url}, underlay "
                     f"{each.underlay_cidr}, ovn-default {each.default_cidr}")
        parts.append(_cluster_status(each, with_pods, check))
    parts.append(_ic_status(settings))
    return "\n".join(parts)


def _ic_status(first: LabSettings) -> str:
    """The IC databases' servers (with their raft roles) and what the IC SB knows."""
    databases = interconnect.ic_databases(first)
    lines = [f"\n=== IC databases on {databases.db_host} (NB port {databases.nb_port}, SB "
             f"port {databases.sb_port}), data in {databases.directory}",
             f"{'PROCESS':<32} {'PID':<8} STATE"]
    for database in (databases.nb, databases.sb):
        if not isinstance(database, RaftDatabase):
            lines += [_process_line(f"ic/{d.name}", d.pid()) for d in database.daemons]
            continue
        for member in database.members:
            status = database.role(member) if member.daemon.pid() else ""
            role = next((line.split(":", 1)[1].strip() for line in status.splitlines()
                         if line.startswith("Role:")), "")
            lines.append(_process_line(f"ic/{member.daemon.name}", member.daemon.pid(), role))
    if any(d.pid() for d in databases.daemons):
        with contextlib.suppress(OvnError):
            zones = databases.sbctl("--bare", "--columns=name", "list",
                                    "Availability_Zone", timeout_s=3).split()
            gateways = databases.sbctl("--bare", "--columns=name", "list", "Gateway",
                                       timeout_s=3).split()
            lines.append(f"IC SB: availability zones {', '.join(sorted(zones)) or '-'}; "
                         f"gateways {', '.join(sorted(gateways)) or '-'}")
    return "\n".join(lines)


def _cluster_status(settings: LabSettings, with_pods: bool, check: bool) -> str:
    """``status_report`` of one cluster."""
    lines = ["", f"{'PROCESS':<32} {'PID':<8} STATE"]
    redis_roles = settings.redis_group.roles() if settings.ha else {}
    for name, process in lab_processes(settings).items():
        lines.append(_process_line(name, process.pid(), redis_roles.get(name, "")))
    central = central_of(settings)
    roles = central.roles() if isinstance(central, RaftCentral) else {}
    for daemon in central.daemons:
        lines.append(_process_line(f"central/{daemon.name}", daemon.pid(),
                                   roles.get(daemon.name, "")))
    if settings.clusters > 1:
        ovn_ic = interconnect.ovn_ic_daemon(settings)
        lines.append(_process_line(f"{interconnect.IC_PROCESS}/ovn-ic", ovn_ic.pid()))
    for node in lab_nodes(settings):
        for daemon in node.ovs(central_of(settings)).daemons:
            lines.append(_process_line(f"{node.name}/{daemon.name}", daemon.pid()))
        lines.append(f"{node.name + '/datapath':<32} {'':<8} {keeper.summary(node.directory)}")
    text = "\n".join(lines)
    with contextlib.suppress(errors.IpamError):
        text += "\n\n" + format_table(subnets_table(asyncio.run(_subnets(settings)))) + "\n"
    if with_pods:
        text += "\n" + _pods_now(settings, check) + "\n"
    return text


def _process_line(name: str, pid: int | None, role: str = "") -> str:
    state = "running" if pid else "stopped"
    return f"{name:<32} {pid or '-':<8} {state}{f' ({role})' if pid and role else ''}"


async def _subnets(settings: LabSettings) -> list[dict[str, object]]:
    async with open_ipam(replace(settings.redis_settings, socket_timeout_s=1.0)) as ipam:
        return await subnet_list(ipam)


def _pods_now(settings: LabSettings, check: bool) -> str:
    """The pod table from the API server (or the last report while it is down), and the
    connectivity checks."""
    saved = Report.load(settings.state_dir)
    if lab_processes(settings)["apiserver"].pid() is None or not settings.kubeconfig(
            "admin").exists():
        return saved.render() + "\n(from the last podnet up: the API server is not running)"
    try:
        rest = Rest(kube.kube_client(settings.kubeconfig("admin")))
        objects = _read_cluster(rest)
        connectivity = saved.connectivity
        if check:
            connectivity = check_connectivity(settings, rest)
            if settings.cluster == 1:
                connectivity += check_across_clusters(settings)
    except kube.KubeError as exc:
        return f"(pods unavailable: {exc})"
    attaching = (settings.state_dir / "kubelet.json").exists()
    times = saved.ready_times()
    rows = [pod_row(pod, times.get(uid_of(pod)), attaching) for pod in objects["Pod"]]
    workloads = objects["Deployment"] + objects["ReplicaSet"] + objects["StatefulSet"]
    problems = [p for p in saved.problems if p not in workload_problems(workloads)]
    text = Report(rows, problems + workload_problems(workloads), 0.0, connectivity).render()
    if not check and saved.finished_at:
        when = time.strftime("%H:%M:%S", time.localtime(saved.finished_at))
        text += f"\n(checks of the podnet up that finished at {when}; --check runs them now)"
    return text


# ---------------------------------------------------------------- down


def down(settings: LabSettings, keep_data: bool = False) -> list[str]:
    """Stop and remove everything ``up`` made (every cluster, the IC databases); returns
    what could not be removed."""
    progress = Progress()
    clusters = known_clusters(settings) if settings.cluster == 1 else [settings]
    if len(clusters) == 1:
        return _down_cluster(settings, progress, keep_data)
    failures: list[str] = []
    for each in reversed(clusters[1:]):
        progress.about(each)
        failures += _down_cluster(each, progress, keep_data=True)
    progress.about(settings)
    failures += _down_cluster(settings, progress, keep_data=True)
    progress.about(None)
    databases = interconnect.ic_databases(settings)
    if any(d.pid() for d in databases.daemons):
        databases.stop()
        progress.step("stopped the IC databases")
    if not keep_data:
        shutil.rmtree(settings.state_dir, ignore_errors=True)
        progress.step(f"removed {settings.state_dir}")
    return failures


def _down_cluster(settings: LabSettings, progress: Progress, keep_data: bool) -> list[str]:
    failures: list[str] = []
    processes = lab_processes(settings)
    for name in STOPPING_ORDER:
        chosen = [p for key, p in processes.items()
                  if key == name or (name == "agents" and key.startswith("agent-"))]
        for process in chosen:
            if process.stop():
                progress.step(f"stopped {process.name}")
        if name == interconnect.IC_PROCESS and settings.clusters > 1 \
                and interconnect.ovn_ic_daemon(settings).stop():
            progress.step("stopped ovn-ic (its IC controller had left it running)")
    central = central_of(settings)
    for node in known_nodes(settings):
        if node.ovs(central).pids():
            progress.step(f"stopping {node.name}")
        failures += stop_node(node, central)
    if any(d.pid() for d in central.daemons):
        central.stop()
        progress.step("stopped OVN central")
    redis = [name for name in processes if name.startswith("sentinel-")] + [
        name for name in processes if name == "redis" or name.startswith("redis-")]
    for name in redis:  # the sentinels first: no failover while the servers stop
        if processes[name].stop():
            progress.step(f"stopped {name}")
    failures += _remove_ledger(ledger_of(settings), progress)
    for failure in failures:
        progress.note(f"! {failure}")
    if not keep_data:
        shutil.rmtree(settings.state_dir, ignore_errors=True)
        progress.step(f"removed {settings.state_dir}")
    return failures


def _remove_ledger(ledger: Ledger, progress: Progress) -> list[str]:
    failures = []
    removed = 0
    for kind, name in ledger.entries():
        try:
            if kind == "netns":
                netns_delete(name)
            else:
                remove_link(name)
            removed += 1
        except OvnError as exc:
            failures.append(f"{kind} {name}: {exc}")
    if removed:
        progress.step(f"removed {removed} network namespaces, links and bridges")
    return failures
