"""Applies a :class:`gateway.GatewayPlan` to the node: routes, nftables SNAT, ip rules.

Each part converges to the plan and removes what podnet added before and the plan no
longer has, recognising its own by marks: routes carry protocol ``RTPROT_PODNET``, the
nftables rules live in table ``inet podnet`` (replaced whole, atomically, by one
``nft -f`` script, and only when the script changes), rules use podnet's priorities and
tables. Everything runs in the node's network namespace: the netlink part on the node's
namespace workers, ``nft`` through ``nsenter``.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from node_agent import netns
from node_agent.gateway import (
    POLICY_PRIORITY,
    GatewayPlan,
    PolicyRoute,
    is_policy_table,
    nft_ruleset,
)
from node_agent.plug import RTPROT_PODNET, NamespaceWorkers, PlumbingError, Rtnl

log = logging.getLogger(__name__)

MAIN_TABLE = 254
FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
RuleKey = tuple[int, str, int, int]
"""(family, source CIDR, table, priority) of a rule podnet keeps."""


class Routing:
    """The gateway state of one node."""

    def __init__(self, host: NamespaceWorkers, namespace: str | None,
                 join_interface: str = "ovn0") -> None:
        self.host = host
        self.namespace = namespace
        self.join_interface = join_interface
        self._nft_applied: str | None = None

    async def apply(self, plan: GatewayPlan) -> None:
        await self.host.run(lambda rtnl: apply_routes(rtnl, plan, self.join_interface),
                            "routing the cluster subnets")
        await self._nft(plan)

    async def remove(self) -> None:
        """Take podnet's policy rules and SNAT off the node (routes go with ``ovn0``)."""
        await self.host.run(lambda rtnl: apply_policies(rtnl, (), self.join_interface),
                            "removing policy rules")
        await netns.run_command(self.namespace, ["nft", "-f", "-"],
                                stdin=_nft_removal().encode())
        self._nft_applied = None

    async def _nft(self, plan: GatewayPlan) -> None:
        script = nft_ruleset(plan, join_interface=self.join_interface)
        if script == self._nft_applied:
            return
        try:
            await netns.run_command(self.namespace, ["nft", "-f", "-"], stdin=script.encode())
        except OSError as exc:
            raise PlumbingError(f"applying the nftables SNAT rules: {exc}") from exc
        self._nft_applied = script
        log.info("nftables: SNAT for %s", ", ".join(map(str, plan.snat)) or "no subnet")


def _nft_removal() -> str:
    return "table inet podnet\ndelete table inet podnet\n"


# --------------------------------------------------------- netlink (worker threads)


def apply_routes(rtnl: Rtnl, plan: GatewayPlan, join_interface: str) -> None:
    join = rtnl.require(join_interface)
    wanted = {str(route.destination) for route in plan.routes}
    for route in plan.routes:
        rtnl.replace_route(str(route.destination), route.via, join, proto=RTPROT_PODNET)
    for family in FAMILIES:
        for existing in rtnl.routes(family, proto=RTPROT_PODNET, table=MAIN_TABLE):
            destination = f"{existing.get_attr('RTA_DST')}/{existing['dst_len']}"
            if destination not in wanted:
                _delete_route(rtnl, existing, destination)
    apply_policies(rtnl, plan.policies, join_interface)


def _delete_route(rtnl: Rtnl, route: Any, destination: str) -> None:
    try:
        rtnl.ipr.route("del", dst=destination, proto=RTPROT_PODNET,
                       oif=route.get_attr("RTA_OIF"))
    except NetlinkError as exc:
        raise PlumbingError(f"removing route {destination}: {exc}") from exc


def apply_policies(rtnl: Rtnl, policies: tuple[PolicyRoute, ...], join_interface: str) -> None:
    wanted = _wanted_rules(policies)
    for policy in policies:
        _policy_table(rtnl, policy)
    present = set()
    for family, af in FAMILIES.items():
        for rule in rtnl.ipr.rule("dump", family=af):
            key = _rule_key(family, rule)
            if key is None:
                continue
            if key in wanted:
                present.add(key)
            else:
                _del_rule(rtnl, rule, af)
    for key in sorted(wanted - present):
        _add_rule(rtnl, key, join_interface)


def _policy_table(rtnl: Rtnl, policy: PolicyRoute) -> None:
    """The table's default route: the main table's (the node's way out)."""
    family = policy.source.version
    defaults = [r for r in rtnl.routes(family, table=MAIN_TABLE)
                if r["dst_len"] == 0 and r.get_attr("RTA_GATEWAY")]
    for route in defaults[:1]:
        rtnl.replace_route("0.0.0.0/0" if family == 4 else "::/0",
                           route.get_attr("RTA_GATEWAY"), route.get_attr("RTA_OIF"),
                           table=policy.table, proto=RTPROT_PODNET)


def _add_rule(rtnl: Rtnl, key: RuleKey, join_interface: str) -> None:
    family, source, table, priority = key
    address, _, length = source.partition("/")
    options: dict[str, Any] = {
        "family": FAMILIES[family], "src": address, "src_len": int(length),
        "iifname": join_interface, "table": table, "priority": priority,
    }
    if table == MAIN_TABLE:
        options["suppress_prefixlen"] = 0
    try:
        rtnl.ipr.rule("add", **options)
    except NetlinkError as exc:
        raise PlumbingError(f"policy routing for {source}: {exc}") from exc
    log.info("policy routing: %s from %s looks up table %d (priority %d)",
             join_interface, source, table, priority)


def _del_rule(rtnl: Rtnl, rule: Any, af: int) -> None:
    try:
        rtnl.ipr.rule("del", family=af, priority=rule.get_attr("FRA_PRIORITY"),
                      table=rule.get_attr("FRA_TABLE") or rule["table"],
                      src=rule.get_attr("FRA_SRC"), src_len=rule["src_len"],
                      iifname=rule.get_attr("FRA_IIFNAME"))
    except NetlinkError as exc:
        raise PlumbingError(f"removing a policy rule: {exc}") from exc


def _wanted_rules(policies: tuple[PolicyRoute, ...]) -> set[RuleKey]:
    """Per policy: the main table without its default route first, then the subnet's."""
    wanted: set[RuleKey] = set()
    for policy in policies:
        family, source = policy.source.version, str(policy.source)
        wanted.add((family, source, MAIN_TABLE, POLICY_PRIORITY - 1))
        wanted.add((family, source, policy.table, POLICY_PRIORITY))
    return wanted


def _rule_key(family: int, rule: Any) -> RuleKey | None:
    """The key of one of podnet's rules; None for rules podnet did not make."""
    priority = rule.get_attr("FRA_PRIORITY")
    source = rule.get_attr("FRA_SRC")
    table = rule.get_attr("FRA_TABLE") or rule["table"]
    ours = (priority == POLICY_PRIORITY and is_policy_table(table)) or (
        priority == POLICY_PRIORITY - 1 and table == MAIN_TABLE)
    if not ours or source is None:
        return None
    return family, f"{source}/{rule['src_len']}", table, priority
