"""NetworkPolicy rows kept between steps, so that an event recompiles only what it touches.

A full compile is every policy over every pod: at a thousand policies and ten thousand
pods, far more than an event step may take. Each policy's rows depend on its own spec,
on the pods of the namespaces its selectors reach, and on those namespaces' labels; a
namespace's isolation rows depend on the policies in it. This cache keeps each policy's
rows with the namespaces they depend on, and an event recompiles the policies a changed
pod, namespace or policy can reach, and the isolation of their namespaces. The rows it
returns are the same as a full compile's (``add_network_policies``); for the NB writer
it also names the rows to reconcile, old and new, so that no other row is read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ipam.addresses import IPAddress
from podnet_sync.cluster import PodView
from podnet_sync.nb_model import AddressSet, DesiredState, Meter, PortGroup
from podnet_sync.netpol import (
    NODES_SET,
    Compiler,
    NamespaceView,
    NetworkPolicy,
    PodIndex,
    PolicyView,
)

NODE_SETS = frozenset(NODES_SET.format(family=family) for family in (4, 6))


@dataclass
class Compiled:
    """One policy's rows and what they depend on."""

    policy: NetworkPolicy
    groups: dict[str, PortGroup]
    address_sets: dict[str, AddressSet]
    meters: dict[str, Meter]
    isolated: dict[str, frozenset[str]]
    """Direction -> the ports of the policy's namespace it isolates."""
    namespaces: frozenset[str]
    """The namespaces whose pods the rows depend on."""
    everywhere: bool
    """The rows depend on every pod (ipBlock destinations, egress to any pod)."""

    def rows(self) -> dict[str, PortGroup | AddressSet]:
        return {**self.groups, **self.address_sets}


@dataclass
class Change:
    """What one event step gives the NB writer."""

    state: DesiredState = field(default_factory=DesiredState)
    names: frozenset[str] = frozenset()
    """The port groups and address sets to reconcile (``None`` in the scope: all)."""
    recompiled: int = 0


class PolicyCache:
    """Every policy's compiled rows, the pod index they were compiled from, and the
    namespaces' isolation rows."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.index = PodIndex()
        self.policies: dict[str, Compiled] = {}
        self.namespaces: dict[str, NamespaceView] = {}
        self.node_ips: tuple[IPAddress, ...] = ()
        self.isolation: dict[str, DesiredState] = {}
        self._watchers: dict[str, set[str]] = defaultdict(set)
        self._everywhere: set[str] = set()
        self._in_namespace: dict[str, set[str]] = defaultdict(set)

    # ------------------------------------------------------------ full

    def rebuild(self, state: DesiredState, policies: Sequence[NetworkPolicy],
                pods: Iterable[PodView], namespaces: Mapping[str, NamespaceView],
                node_ips: Sequence[IPAddress]) -> None:
        """Compile everything anew into ``state`` (a full step)."""
        self._reset()
        self.index = PodIndex(pods)
        self.namespaces = dict(namespaces)
        self.node_ips = tuple(node_ips)
        compiler = self._compiler(policies)
        for policy in sorted(policies, key=lambda p: p.key):
            self._store(self._compile(compiler, policy))
        for namespace in self._in_namespace:
            self._isolate(namespace)
        self._write_all(state)

    def _write_all(self, state: DesiredState) -> None:
        if not self.policies:
            return
        for compiled in self.policies.values():
            state.port_groups.update(compiled.groups)
            state.policy_address_sets.update(compiled.address_sets)
        for rows in self.isolation.values():
            state.port_groups.update(rows.port_groups)
            state.policy_address_sets.update(rows.policy_address_sets)
        state.policy_address_sets.update(self._node_sets())
        state.meters.update(self._meters())

    # ------------------------------------------------------------ events

    def update(self, policies: Sequence[NetworkPolicy],
               pods: Mapping[str, PodView | None],
               namespaces: Mapping[str, NamespaceView],
               node_ips: Sequence[IPAddress]) -> Change | None:
        """Bring the cache to these policies, pod changes (port -> pod, ``None`` when it
        has no port or address any more) and
        namespaces; ``None`` when only a full compile will do (the nodes changed)."""
        if tuple(node_ips) != self.node_ips:
            return None
        wanted = {policy.key: policy for policy in policies}
        affected = {key for key in set(wanted) | set(self.policies)
                    if key not in self.policies or key not in wanted
                    or self.policies[key].policy != wanted[key]}
        affected |= self._reached_by_namespaces(namespaces, wanted)
        changed_namespaces = {name for name in set(namespaces) | set(self.namespaces)
                              if namespaces.get(name) != self.namespaces.get(name)}
        for port, now in pods.items():
            affected |= self._reached_by_pod(self.index.get(port), now, wanted)
            self.index.put(port, now)
        self.namespaces = dict(namespaces)
        had_policies = bool(self.policies)
        old: dict[str, PortGroup | AddressSet] = {}
        new: dict[str, PortGroup | AddressSet] = {}
        touched_namespaces = set(changed_namespaces)
        compiler = self._compiler(list(wanted.values()))
        for key in sorted(affected):
            before = self.policies.pop(key, None)
            if before is not None:
                old.update(before.rows())
                touched_namespaces.add(before.policy.namespace)
                self._forget(before)
            policy = wanted.get(key)
            if policy is not None:
                compiled = self._compile(compiler, policy)
                self._store(compiled)
                new.update(compiled.rows())
                touched_namespaces.add(policy.namespace)
        for namespace in touched_namespaces:
            before_rows = self.isolation.get(namespace)
            if before_rows is not None:
                old.update(before_rows.port_groups)
            self._isolate(namespace)
            after = self.isolation.get(namespace)
            if after is not None:
                new.update(after.port_groups)
        forced = set()
        if had_policies != bool(self.policies):  # the node sets come or go
            forced = set(NODE_SETS)
            if self.policies:
                new.update(self._node_sets())
        return self._changes(old, new, forced, len(affected))

    def _changes(self, old: Mapping[str, PortGroup | AddressSet],
                 new: Mapping[str, PortGroup | AddressSet], forced: set[str],
                 recompiled: int) -> Change:
        """The rows that differ from what was compiled before: only those are written
        (and read back) in NB; a row the next full step finds drifted is repaired then."""
        change = Change(recompiled=recompiled)
        names = forced | {name for name in set(old) | set(new)
                          if old.get(name) != new.get(name)}
        for name in names:
            row, was = new.get(name), old.get(name)
            if isinstance(row, PortGroup):
                change.state.port_groups[name] = row
            elif isinstance(row, AddressSet):
                change.state.policy_address_sets[name] = row
                if isinstance(was, AddressSet) and was.external_ids == row.external_ids:
                    want = set(row.addresses)
                    differ = want.symmetric_difference(was.addresses)
                    change.state.policy_set_changes[name] = (frozenset(differ & want),
                                                             frozenset(differ - want))
        change.state.meters.update(self._meters())
        change.names = frozenset(names)
        return change

    def _reached_by_namespaces(self, namespaces: Mapping[str, NamespaceView],
                               wanted: Mapping[str, NetworkPolicy]) -> set[str]:
        """Policies whose rows a namespace's change (labels, logging) can change: those
        in it, and those with a namespace selector matching it before or after."""
        found: set[str] = set()
        for name in set(namespaces) | set(self.namespaces):
            old, new = self.namespaces.get(name), namespaces.get(name)
            if old == new:
                continue
            found |= self._in_namespace.get(name, set())
            found |= _selecting(wanted, [view_labels(name, view) for view in (old, new)])
        return found

    def _reached_by_pod(self, old: PodView | None, new: PodView | None,
                        wanted: Mapping[str, NetworkPolicy]) -> set[str]:
        """Policies whose rows a pod's change can change: those depending on every pod,
        and those reaching its namespace whose selectors match it before or after."""
        found = set(self._everywhere)
        for pod in (old, new):
            if pod is None:
                continue
            if not self.index.by_namespace.get(pod.namespace) and \
                    pod.namespace not in self.namespaces:
                # a namespace first seen through this pod: any namespace selector may
                # match it, by the namespace's default labels
                found |= _selecting(wanted, [view_labels(pod.namespace, None)])
            labels = dict(pod.labels)
            where = view_labels(pod.namespace, self.namespaces.get(pod.namespace))
            for key in self._watchers.get(pod.namespace, set()):
                compiled = self.policies.get(key)
                if compiled is not None and _may_choose(compiled.policy, pod.namespace,
                                                        where, labels):
                    found.add(key)
        return found

    # ------------------------------------------------------------ bookkeeping

    def _compiler(self, policies: Sequence[NetworkPolicy]) -> Compiler:
        view = PolicyView(policies, (), self.namespaces, self.node_ips)
        return Compiler(view, DesiredState(), self.index)

    @staticmethod
    def _compile(compiler: Compiler, policy: NetworkPolicy) -> Compiled:
        compiler.state = DesiredState()
        compiler.isolated.clear()
        compiler.touched, compiler.everywhere = set(), False
        compiler.compile_policy(policy)
        return Compiled(
            policy, compiler.state.port_groups, compiler.state.policy_address_sets,
            compiler.state.meters,
            {kind: frozenset(ports) for (_, kind), ports in compiler.isolated.items()},
            frozenset(compiler.touched), compiler.everywhere)

    def _store(self, compiled: Compiled) -> None:
        key = compiled.policy.key
        self.policies[key] = compiled
        self._in_namespace[compiled.policy.namespace].add(key)
        for namespace in compiled.namespaces:
            self._watchers[namespace].add(key)
        if compiled.everywhere:
            self._everywhere.add(key)

    def _forget(self, compiled: Compiled) -> None:
        key = compiled.policy.key
        self._in_namespace[compiled.policy.namespace].discard(key)
        for namespace in compiled.namespaces:
            self._watchers[namespace].discard(key)
        self._everywhere.discard(key)

    def _isolate(self, namespace: str) -> None:
        """The namespace's isolation rows from the policies in it."""
        keys = sorted(self._in_namespace.get(namespace, set()))
        if not keys:
            self.isolation.pop(namespace, None)
            return
        view = PolicyView((), (), self.namespaces, self.node_ips)
        compiler = Compiler(view, DesiredState(), self.index)
        for key in keys:
            compiled = self.policies[key]
            for kind, ports in compiled.isolated.items():
                compiler.isolated[(namespace, kind)].update(ports)
        compiler.compile_isolation()
        self.isolation[namespace] = compiler.state

    def _node_sets(self) -> dict[str, AddressSet]:
        compiler = Compiler(PolicyView((), (), self.namespaces, self.node_ips),
                            DesiredState(), self.index)
        for family in (4, 6):
            compiler.node_set(family)
        return compiler.state.policy_address_sets

    def _meters(self) -> dict[str, Meter]:
        meters: dict[str, Meter] = {}
        for compiled in self.policies.values():
            meters.update(compiled.meters)
        for rows in self.isolation.values():
            meters.update(rows.meters)
        return meters


def view_labels(name: str, view: NamespaceView | None) -> dict[str, str]:
    """A namespace's labels as selectors see them (the name label when unknown)."""
    return dict(view.labels) if view is not None else {"kubernetes.io/metadata.name": name}


def _selecting(wanted: Mapping[str, NetworkPolicy],
               labels: Sequence[Mapping[str, str]]) -> set[str]:
    """The policies with a namespace selector matching any of these namespace labels."""
    return {key for key, policy in wanted.items()
            if any(peer.namespaces.matches(each)
                   for rule in (*policy.ingress, *policy.egress)
                   for peer in rule.peers if peer.namespaces is not None
                   for each in labels)}


def _may_choose(policy: NetworkPolicy, namespace: str, where: Mapping[str, str],
                labels: Mapping[str, str]) -> bool:
    """Whether a pod of ``namespace`` (labelled ``where``) with ``labels`` is among the
    policy's selected pods or its peers."""
    if namespace == policy.namespace and policy.selector.matches(labels):
        return True
    return any(peer.block is None
               and (namespace == policy.namespace if peer.namespaces is None
                    else peer.namespaces.matches(where))
               and (peer.pods is None or peer.pods.matches(labels))
               for rule in (*policy.ingress, *policy.egress) for peer in rule.peers)


