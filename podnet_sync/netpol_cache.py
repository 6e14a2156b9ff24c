"""NetworkPolicy rows kept between steps, so that an event recompiles only what it touches.

A full compile is every policy over every pod: at a thousand policies and ten thousand
pods, far more than an event step may take. Each policy's rows depend on its own spec,
on the pods of the namespaces its selectors reach, and on those namespaces' labels; a
namespace's isolation rows depend on the policies in it. This cache keeps each policy's
rows with the choices they depend on, and an event recompiles the policies a changed
pod, namespace or policy can reach, and the isolation of their namespaces.

The peers' address sets, and the sets of named-port destinations, are shared between
policies (named after what they select), so the cache keeps them apart, each with its
users: a pod that joins or leaves some peers or destinations changes those sets in
place, from the pod index. A pod a policy selects joins or leaves the policy's port
group (and its namespace's isolation) in place too. A policy is recompiled only when the
pod brings one of its named ports a number no destination had (a new ACL), or takes the
last of one away. A set goes when its last user does.

The rows it returns are the same as a full compile's (``add_network_policies``); for the
NB writer it also names the rows to reconcile, old and new, so that no other row is
read.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ipam.addresses import IPAddress
from podnet_sync.cluster import PodView
from podnet_sync.nb_model import AddressSet, DesiredState, Meter, PortGroup
from podnet_sync.netpol import (
    ALL_NAMESPACES,
    NODES_SET,
    Compiler,
    NamedPort,
    NamespaceView,
    NetworkPolicy,
    Origin,
    PodIndex,
    PolicyView,
    Selector,
    origin_chooses,
    policy_group,
    resolve_port,
    watched_namespaces,
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
    direct: frozenset[tuple[str, Selector]]
    """The choices of its selected pods (its port group)."""
    numbers: dict[tuple[Origin, str, str], frozenset[int]]
    """Its named ports: (destinations, name, protocol) -> the numbers they resolve to."""
    everywhere: bool
    """The rows depend on every pod (named ports of destinations with ipBlocks)."""
    shared: dict[str, tuple[int, Origin, NamedPort | None]]
    """The shared sets it uses (rows of the cache, not of the policy): name -> (family,
    what the set chooses, the named port)."""

    def rows(self) -> dict[str, PortGroup | AddressSet]:
        """The policy's own rows (shared sets are not among them)."""
        return {**self.groups, **self.address_sets}


@dataclass
class SharedSet:
    """A peers' set several policies may use, and which do."""

    row: AddressSet
    family: int
    origin: Origin
    port: NamedPort | None
    users: set[str] = field(default_factory=set)

    def chooses(self, pod: PodView, labels: Mapping[str, str]) -> bool:
        if not origin_chooses(self.origin, pod, labels):
            return False
        return self.port is None or resolve_port(pod, *self.port[:2]) == self.port[2]


@dataclass
class Change:
    """What one event step gives the NB writer."""

    state: DesiredState = field(default_factory=DesiredState)
    names: frozenset[str] = frozenset()
    """The port groups and address sets to reconcile (``None`` in the scope: all)."""
    recompiled: int = 0


@dataclass
class _PodChanges:
    """What an event's pods did to the cache: policies to recompile, policies whose
    port groups to redo, addresses to move in shared sets (name -> (added, removed))."""

    recompile: set[str] = field(default_factory=set)
    regroup: set[str] = field(default_factory=set)
    moves: dict[str, tuple[set[str], set[str]]] = field(default_factory=dict)


@dataclass
class _Rows:
    """An event's rows before and after, and the shared sets' rows before it
    (``None``: the set did not exist)."""

    old: dict[str, PortGroup | AddressSet] = field(default_factory=dict)
    new: dict[str, PortGroup | AddressSet] = field(default_factory=dict)
    shared_before: dict[str, AddressSet | None] = field(default_factory=dict)

    def add_shared(self, shared: Mapping[str, SharedSet]) -> None:
        for name, row in self.shared_before.items():
            if row is not None:
                self.old[name] = row
            if name in shared:
                self.new[name] = shared[name].row


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
        self.shared: dict[str, SharedSet] = {}
        self._meter_rows: dict[str, Meter] = {}
        """Every meter the rows use (worked out again when a policy or an isolation
        changed)."""
        self._set_watchers: dict[str, set[str]] = defaultdict(set)
        self._number_watchers: dict[str, set[str]] = defaultdict(set)

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
            self._store(self._compile(compiler, policy), compiler.state.policy_address_sets)
        for namespace in self._in_namespace:
            self._isolate(namespace)
        self._write_all(state)

    def _write_all(self, state: DesiredState) -> None:
        if not self.policies:
            return
        for compiled in self.policies.values():
            state.port_groups.update(compiled.groups)
            state.policy_address_sets.update(compiled.address_sets)
        for name, entry in self.shared.items():
            state.policy_address_sets[name] = entry.row
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
        affected = self._changed_policies(wanted) | self._reached_by_namespaces(
            namespaces, wanted)
        touched = {name for name in set(namespaces) | set(self.namespaces)
                   if namespaces.get(name) != self.namespaces.get(name)}
        pod_changes = self._take_pods(pods, namespaces, wanted)
        affected |= pod_changes.recompile
        had_policies = bool(self.policies)
        rows = _Rows()
        touched |= self._recompile(affected, wanted, rows)
        for key in sorted(pod_changes.regroup - affected):
            if key in self.policies:
                touched.add(self.policies[key].policy.namespace)
                self._regroup(self.policies[key], rows.old, rows.new)
        self._remember(rows.shared_before, pod_changes.moves)
        moved = self._move(pod_changes.moves)
        rows.add_shared(self.shared)
        self._reisolate(touched, rows)
        if affected or touched:
            self._meters()
        forced = set()
        if had_policies != bool(self.policies):  # the node sets come or go
            forced = set(NODE_SETS)
            if self.policies:
                rows.new.update(self._node_sets())
        return self._changes(rows.old, rows.new, forced, len(affected), moved)

    def _changed_policies(self, wanted: Mapping[str, NetworkPolicy]) -> set[str]:
        """The policies added, removed or changed."""
        return {key for key in set(wanted) | set(self.policies)
                if key not in self.policies or key not in wanted
                or (self.policies[key].policy is not wanted[key]
                    and self.policies[key].policy != wanted[key])}

    def _take_pods(self, pods: Mapping[str, PodView | None],
                   namespaces: Mapping[str, NamespaceView],
                   wanted: Mapping[str, NetworkPolicy]) -> _PodChanges:
        """Put the pods' changes (and the namespaces) into the index, noting what they
        move, regroup and recompile."""
        changes = _PodChanges()
        emptied: set[tuple[str, Origin, NamedPort]] = set()
        seen = set(self.namespaces) | set(self.index.by_namespace)
        for port, now in pods.items():
            was = self.index.get(port)
            changes.recompile |= self._reached_by_pod(was, now, emptied, changes.regroup)
            self._note_moves(was, now, changes.moves)
            self.index.put(port, now)
        changes.recompile |= self._emptied(emptied, changes.recompile)
        self.namespaces = dict(namespaces)
        # a namespace known only by its pods comes with its first and goes with its
        # last: any namespace selector may match it, by its default labels
        appeared = seen ^ (set(self.namespaces) | set(self.index.by_namespace))
        changes.recompile |= _selecting(wanted, [view_labels(name, None) for name in appeared])
        return changes

    def _recompile(self, affected: set[str], wanted: Mapping[str, NetworkPolicy],
                   rows: _Rows) -> set[str]:
        """Compile the affected policies anew (or forget the gone); the namespaces whose
        isolation they change."""
        touched: set[str] = set()
        if not affected:
            return touched
        compiler = self._compiler(list(wanted.values()))
        for key in sorted(affected):
            before = self.policies.pop(key, None)
            if before is not None:
                rows.old.update(before.rows())
                touched.add(before.policy.namespace)
                self._remember(rows.shared_before, before.shared)
                self._forget(before)
            policy = wanted.get(key)
            if policy is not None:
                compiled = self._compile(compiler, policy)
                self._remember(rows.shared_before, compiled.shared)
                self._store(compiled, compiler.state.policy_address_sets)
                rows.new.update(compiled.rows())
                touched.add(policy.namespace)
        return touched

    def _reisolate(self, namespaces: Iterable[str], rows: _Rows) -> None:
        for namespace in namespaces:
            before_rows = self.isolation.get(namespace)
            if before_rows is not None:
                rows.old.update(before_rows.port_groups)
            self._isolate(namespace)
            after = self.isolation.get(namespace)
            if after is not None:
                rows.new.update(after.port_groups)

    def _changes(self, old: Mapping[str, PortGroup | AddressSet],
                 new: Mapping[str, PortGroup | AddressSet], forced: set[str],
                 recompiled: int,
                 moved: Mapping[str, tuple[frozenset[str], frozenset[str]]]) -> Change:
        """The rows that differ from what was compiled before: only those are written
        (and read back) in NB; a row the next full step finds drifted is repaired then."""
        change = Change(recompiled=recompiled)
        names = forced | {name for name in set(old) | set(new)
                          if old.get(name) != new.get(name)}
        for name in names:
            row, was = new.get(name), old.get(name)
            if isinstance(row, PortGroup):
                change.state.port_groups[name] = row
                if isinstance(was, PortGroup) and (was.acls, was.external_ids) == (
                        row.acls, row.external_ids):
                    want = set(row.ports)
                    differ = want.symmetric_difference(was.ports)
                    change.state.policy_group_changes[name] = (frozenset(differ & want),
                                                               frozenset(differ - want))
            elif isinstance(row, AddressSet):
                change.state.policy_address_sets[name] = row
                if name in moved and isinstance(was, AddressSet):
                    change.state.policy_set_changes[name] = moved[name]
                elif isinstance(was, AddressSet) and was.external_ids == row.external_ids:
                    want = set(row.addresses)
                    differ = want.symmetric_difference(was.addresses)
                    change.state.policy_set_changes[name] = (frozenset(differ & want),
                                                             frozenset(differ - want))
        change.state.meters.update(self._meter_rows)
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
                        emptied: set[tuple[str, Origin, NamedPort]],
                        regroup: set[str]) -> set[str]:
        """Policies to recompile for a pod's change: those depending on every pod, and
        those it brings a named port's new number. The numbers it may have been the
        last destination of go into ``emptied``; the policies selecting it, before or
        after, into ``regroup``."""
        found = set(self._everywhere)
        for pod in (old, new):
            if pod is None:
                continue
            labels = dict(pod.labels)
            for key in self._watchers.get(pod.namespace, set()):
                compiled = self.policies.get(key)
                if compiled is not None and any(
                        namespace == pod.namespace and selector.matches(labels)
                        for namespace, selector in compiled.direct):
                    regroup.add(key)
            for key in self._watching_numbers(pod.namespace):
                self._reached_by_numbers(key, pod, labels, pod is old and pod is not new,
                                         new, found, emptied)
        return found

    def _note_moves(self, old: PodView | None, new: PodView | None,
                    moves: dict[str, tuple[set[str], set[str]]]) -> None:
        """The addresses a pod's change adds to and takes from the shared sets."""
        for pod, side in ((old, 1), (new, 0)):
            if pod is None or not pod.ips or pod.host_network:
                continue
            labels = dict(pod.labels)
            for name in self._watching_sets(pod.namespace):
                entry = self.shared[name]
                if entry.chooses(pod, labels):
                    texts = {str(ip) for ip in pod.ips if ip.version == entry.family}
                    if texts:
                        moves.setdefault(name, (set(), set()))[side].update(texts)

    def _regroup(self, compiled: Compiled, old: dict[str, PortGroup | AddressSet],
                 new: dict[str, PortGroup | AddressSet]) -> None:
        """The policy's port group (and what it isolates) anew from the pod index."""
        policy = compiled.policy
        ports = tuple(sorted(pod.port_name
                             for pod in self.index.choose(policy.namespace, policy.selector)))
        name = policy_group(policy)
        row = compiled.groups[name]
        if row.ports == ports:
            return
        old[name] = row
        new[name] = compiled.groups[name] = replace(row, ports=ports)
        compiled.isolated = {kind: frozenset(ports) for kind in policy.types}

    def _watching_numbers(self, namespace: str) -> set[str]:
        return (self._number_watchers.get(namespace, set())
                | self._number_watchers.get(ALL_NAMESPACES, set()))

    def _watching_sets(self, namespace: str) -> set[str]:
        return (self._set_watchers.get(namespace, set())
                | self._set_watchers.get(ALL_NAMESPACES, set()))

    def _reached_by_numbers(self, key: str, pod: PodView, labels: Mapping[str, str],
                            leaving: bool, new: PodView | None, found: set[str],
                            emptied: set[tuple[str, Origin, NamedPort]]) -> None:
        """Whether the pod brings (or, ``leaving``, may take the last of) a number of
        one of the policy's named ports."""
        compiled = self.policies.get(key)
        if compiled is None:
            return
        for (origin, name, protocol), numbers in compiled.numbers.items():
            if not origin_chooses(origin, pod, labels):
                continue
            number = resolve_port(pod, name, protocol)
            if number is None:
                continue
            if number not in numbers:
                found.add(key)
            elif leaving and not (new is not None and resolve_port(new, name, protocol) == number
                                  and origin_chooses(origin, new, dict(new.labels))):
                emptied.add((key, origin, (name, protocol, number)))

    def _emptied(self, emptied: set[tuple[str, Origin, NamedPort]],
                 affected: set[str]) -> set[str]:
        """The policies left with a named port's number no destination has any more."""
        found = set()
        for key, origin, (name, protocol, number) in emptied:
            if key in affected or key in found:
                continue
            if not any(resolve_port(pod, name, protocol) == number
                       for pod in self.index.chosen(origin)):
                found.add(key)
        return found

    def _remember(self, rows: dict[str, AddressSet | None], names: Iterable[str]) -> None:
        """Note the shared sets' rows as they were before the event (``None``: absent)."""
        for name in names:
            if name not in rows:
                entry = self.shared.get(name)
                rows[name] = entry.row if entry is not None else None

    def _move(self, moves: Mapping[str, tuple[set[str], set[str]]]
              ) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
        """Apply the moves to the shared sets still used (in sorted place, as a full
        compile orders them); an address another chosen pod still holds stays. Returns
        what each set really gained and lost."""
        moved = {}
        for name, (adds, removes) in moves.items():
            entry = self.shared.get(name)
            if entry is None:
                continue
            addresses = list(entry.row.addresses)
            gained, lost = set(), set()
            for text in removes - adds:
                if self._still_held(entry, text):
                    continue
                at = bisect.bisect_left(addresses, text)
                if at < len(addresses) and addresses[at] == text:
                    del addresses[at]
                    lost.add(text)
            for text in adds:
                at = bisect.bisect_left(addresses, text)
                if at == len(addresses) or addresses[at] != text:
                    addresses.insert(at, text)
                    gained.add(text)
            if gained or lost:
                entry.row = replace(entry.row, addresses=tuple(addresses))
                moved[name] = (frozenset(gained), frozenset(lost))
        return moved

    def _still_held(self, entry: SharedSet, text: str) -> bool:
        """Whether a pod the set chooses holds this address (after the event)."""
        for port in self.index.owners.get(text, ()):
            pod = self.index.get(port)
            if pod is not None and entry.chooses(pod, self.index.labels[port]):
                return True
        return False

    # ------------------------------------------------------------ bookkeeping

    def _compiler(self, policies: Sequence[NetworkPolicy]) -> Compiler:
        view = PolicyView(policies, (), self.namespaces, self.node_ips)
        return Compiler(view, DesiredState(), self.index)

    @staticmethod
    def _compile(compiler: Compiler, policy: NetworkPolicy) -> Compiled:
        compiler.state = DesiredState()
        compiler.isolated.clear()
        compiler.everywhere = False
        compiler.direct, compiler.shared, compiler.numbers = set(), {}, {}
        compiler.compile_policy(policy)
        sets = compiler.state.policy_address_sets
        return Compiled(
            policy, compiler.state.port_groups,
            {name: row for name, row in sets.items() if name not in compiler.shared},
            compiler.state.meters,
            {kind: frozenset(ports) for (_, kind), ports in compiler.isolated.items()},
            frozenset(compiler.direct), compiler.numbers, compiler.everywhere,
            compiler.shared)

    def _store(self, compiled: Compiled, sets: Mapping[str, AddressSet]) -> None:
        """Keep a compiled policy; ``sets`` holds the rows of the shared sets it uses."""
        key = compiled.policy.key
        self.policies[key] = compiled
        self._in_namespace[compiled.policy.namespace].add(key)
        for namespace, _ in compiled.direct:
            self._watchers[namespace].add(key)
        if compiled.everywhere:
            self._everywhere.add(key)
        for origin, _, _ in compiled.numbers:
            for namespace in watched_namespaces(origin):
                self._number_watchers[namespace].add(key)
        for name, (family, origin, port) in compiled.shared.items():
            entry = self.shared.get(name)
            if entry is None:
                entry = self.shared[name] = SharedSet(sets[name], family, origin, port)
                for namespace in watched_namespaces(origin):
                    self._set_watchers[namespace].add(name)
            entry.users.add(key)

    def _forget(self, compiled: Compiled) -> None:
        key = compiled.policy.key
        self._in_namespace[compiled.policy.namespace].discard(key)
        for namespace, _ in compiled.direct:
            self._watchers[namespace].discard(key)
        self._everywhere.discard(key)
        for origin, _, _ in compiled.numbers:
            for namespace in watched_namespaces(origin):
                self._number_watchers[namespace].discard(key)
        for name in compiled.shared:
            entry = self.shared.get(name)
            if entry is None:
                continue
            entry.users.discard(key)
            if not entry.users:
                del self.shared[name]
                for namespace in watched_namespaces(entry.origin):
                    self._set_watchers[namespace].discard(name)

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
        self._meter_rows = meters
        return meters


def view_labels(name: str, view: NamespaceView | None) -> dict[str, str]:
    """A namespace's labels as selectors see them (the name label when unknown)."""
    return dict(view.labels) if view is not None else {"kubernetes.io/metadata.name": name}


def _selecting(wanted: Mapping[str, NetworkPolicy],
               labels: Sequence[Mapping[str, str]]) -> set[str]:
    """The policies with a namespace selector matching any of these namespace labels."""
    if not labels:
        return set()
    return {key for key, policy in wanted.items()
            if any(peer.namespaces.matches(each)
                   for rule in (*policy.ingress, *policy.egress)
                   for peer in rule.peers if peer.namespaces is not None
                   for each in labels)}
