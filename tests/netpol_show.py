"""Show a running lab's reachability matrix next to what its NetworkPolicies allow.

The truth-table suite builds its own lab; this is the same probing for a person at a
lab brought up with ``podnet up``: every running pod of the given namespaces probes
every other on each port (TCP and UDP), and the grids show where the datapath and the
oracle (fed the policies stored in the API) agree and where not.

    python -m tests.netpol_show [--state-dir DIR] [--prefix NAME] [--ports 80,81] NS...

It starts a small server on those ports in each pod for the duration of the probing,
so they must be free there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from podnet.lab import LabSettings
from podnet.lab.kubelet import sandbox_name
from podnet.lab.rest import Rest
from podnet.lab.settings import DEFAULT_STATE_DIR
from podnet_plumbing import kube
from tests.netpol_matrix import (
    Agent,
    Cell,
    Target,
    cells,
    cluster_from,
    expected,
    probe_round,
    show,
)
from tests.netpol_oracle import TCP, UDP


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.netpol_show",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("namespaces", nargs="+")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--prefix", default="podnet")
    parser.add_argument("--ports", default="80,81", help="comma-separated port numbers")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    settings = LabSettings(state_dir=args.state_dir, prefix=args.prefix)
    rest = Rest(kube.kube_client(settings.kubeconfig("admin")))
    ports = [int(p) for p in args.ports.split(",")]
    namespaces = [n for n in rest.list("Namespace") if n["metadata"]["name"] in args.namespaces]
    running = [p for ns in args.namespaces for p in rest.list("Pod", ns)
               if (p.get("status") or {}).get("phase") == "Running"]
    policies = [p for ns in args.namespaces for p in rest.list("NetworkPolicy", ns)]
    cluster = cluster_from(namespaces, running, policies)
    keys = {p.key for p in cluster.pods}
    agents = {}
    try:
        for pod in running:
            key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            if key in keys:
                agents[key] = Agent(sandbox_name(settings.prefix, pod), key, ports, False)
        by_key = {p.key: p for p in cluster.pods}

        def target(cell: Cell) -> Target:
            return Target(by_key[cell.destination].ip, frozenset({cell.destination}))

        wanted = cells(cluster.pods, [], [(proto, port) for proto in (TCP, UDP)
                                          for port in ports])
        observed = probe_round(agents, target, wanted)
        print(show(expected(cluster, wanted, []), observed.seen, observed.details,
                   every_column=True))
    finally:
        for agent in agents.values():
            agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
