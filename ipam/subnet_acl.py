"""Kube-OVN's Subnet ``spec.acls``, validated: the match is data, never structure.

A subnet's ACLs go onto its logical switch as the user wrote them, and an OVN match is
a small language: written as it comes, a match could name podnet's own port groups
(``@np_...``) and address sets (``$...``), other pods' ports (``inport == "..."``),
OVN's registers or connection-tracking state, and so reach far beyond the subnet. So
``parse_acls`` reads each match with a small parser of its own and accepts only:

- **fields**: ``ip``, ``ip4``, ``ip6``, ``icmp``, ``icmp4``, ``icmp6``, ``tcp``,
  ``udp``, ``sctp``, ``arp`` (true or false by themselves); ``ip4.src``, ``ip4.dst``
  (IPv4 addresses and CIDRs), ``ip6.src``, ``ip6.dst`` (IPv6), ``eth.src``,
  ``eth.dst`` (MACs), ``tcp``/``udp``/``sctp`` ``.src``/``.dst`` (0-65535),
  ``ip.proto``, ``ip.ttl``, ``icmp4.type``/``.code``, ``icmp6.type``/``.code``
  (0-255);
- **operators**: ``==``, ``!=`` (with a value or a ``{a, b}`` set of values), ``<``,
  ``<=``, ``>``, ``>=`` (ports), ``&&``, ``||``, ``!`` and parentheses, as far as OVN
  itself would read them: the protocols (``tcp``, ...) only tested positively, and
  ``ip.proto``, ``ip.ttl`` and the ICMP fields only for equality, counting the ``!``
  around them (a match OVN cannot read would leave the ACL doing nothing);
- **literals**: decimal integers in the field's range, addresses and CIDRs (as
  ``ipaddress`` reads them), MACs.

Everything else is refused, naming the field (``spec.acls[1].match``), the value and
the reason: ``$`` address sets, ``@`` port groups, quoted strings, ``inport`` and
``outport``, ``reg*``, ``ct.*``, and any other name. The match that reaches OVN is
printed again from what was parsed (canonical addresses, one space around each
operator), never the text as given; a match is at most ``MATCH_MAX`` characters,
nests at most ``DEPTH_MAX`` deep, and a subnet has at most ``ACLS_MAX`` ACLs.

Priorities: Kube-OVN writes a subnet ACL at the priority given; its NetworkPolicy ACLs
are at 2000-2001, so an ACL below 2000 yields to NetworkPolicy. podnet accepts 0-1999
and keeps that order: the ACL is written at ``PRIORITY_BASE`` + its priority
(4000-5999), above BaselineAdminNetworkPolicy and below NetworkPolicy and
AdminNetworkPolicy (docs/network-policy.md).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ipam.errors import MalformedValue

ACTIONS = ("allow", "allow-related", "allow-stateless", "drop", "reject")
DIRECTIONS = ("from-lport", "to-lport")
PRIORITY_MAX = 1999
"""The highest priority accepted: Kube-OVN's NetworkPolicy ACLs begin at 2000."""
PRIORITY_BASE = 4000
"""Where a subnet ACL's priority 0 is written in OVN."""
EW_PRIORITY = 1900
"""Kube-OVN's priority of the same-subnet allows of ``allowEWTraffic: true``."""
ACLS_MAX = 64
MATCH_MAX = 1024
DEPTH_MAX = 16
_FIELDS = ("action", "direction", "match", "priority")

_BOOLEAN = frozenset({"ip", "ip4", "ip6", "icmp", "icmp4", "icmp6", "tcp", "udp", "sctp",
                      "arp"})
_IPV4, _IPV6, _MAC, _PORT, _BYTE = "an IPv4 address or CIDR", "an IPv6 address or CIDR", \
    "a MAC address", "an integer 0-65535", "an integer 0-255"
_VALUED: Mapping[str, str] = {
    "ip4.src": _IPV4, "ip4.dst": _IPV4, "ip6.src": _IPV6, "ip6.dst": _IPV6,
    "eth.src": _MAC, "eth.dst": _MAC,
    **{f"{proto}.{end}": _PORT for proto in ("tcp", "udp", "sctp") for end in ("src", "dst")},
    "ip.proto": _BYTE, "ip.ttl": _BYTE, "icmp4.type": _BYTE, "icmp4.code": _BYTE,
    "icmp6.type": _BYTE, "icmp6.code": _BYTE,
}
_INTEGER_KINDS = {_PORT: 65535, _BYTE: 255}
_NOMINAL = frozenset({"ip.proto", "ip.ttl", "icmp4.type", "icmp4.code", "icmp6.type",
                      "icmp6.code"})
"""Fields OVN tests only for equality (``!=`` or a ``!`` around ``==`` is refused)."""
_COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
_ORDERING = frozenset({"<", "<=", ">", ">="})

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!(){},])
  | (?P<word>[A-Za-z0-9_.:/\[\]]+)
  | (?P<other>.)
""", re.VERBOSE)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_MAC_TEXT = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,5}")
_PUNCTUATION = re.compile(r"==|!=|<=|>=|&&|\|\||[<>!(){},]")


@dataclass(frozen=True)
class SubnetAcl:
    """One validated ``spec.acls`` entry; ``match`` is the canonical re-print."""

    action: str
    direction: str
    priority: int
    match: str

    @property
    def ovn_priority(self) -> int:
        return PRIORITY_BASE + self.priority

    def to_json(self) -> dict[str, Any]:
        """In Kube-OVN's names, as a Subnet's ``spec.acls`` entry."""
        return {"action": self.action, "direction": self.direction,
                "priority": self.priority, "match": self.match}


def parse_acls(value: object, field: str = "spec.acls") -> tuple[SubnetAcl, ...]:
    """``spec.acls`` (``None`` or a list of ACLs); ``MalformedValue`` names what is wrong."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise MalformedValue(field, _short(value), "must be a list of ACLs")
    if len(value) > ACLS_MAX:
        raise MalformedValue(field, f"{len(value)} ACLs", f"is more than {ACLS_MAX}")
    return tuple(parse_acl(entry, f"{field}[{index}]") for index, entry in enumerate(value))


def parse_acl(entry: object, field: str) -> SubnetAcl:
    if not isinstance(entry, Mapping):
        raise MalformedValue(field, _short(entry),
                             "must be an object with action, direction, match, priority")
    unknown = sorted(str(key) for key in entry if key not in _FIELDS)
    if unknown:
        raise MalformedValue(f"{field}.{unknown[0]}", _short(entry[unknown[0]]),
                             "is not an ACL field (action, direction, match, priority)")
    action = entry.get("action")
    if action not in ACTIONS:
        raise MalformedValue(f"{field}.action", _short(action),
                             f"must be one of {', '.join(ACTIONS)}")
    direction = entry.get("direction")
    if direction not in DIRECTIONS:
        raise MalformedValue(f"{field}.direction", _short(direction),
                             "must be from-lport or to-lport")
    priority = entry.get("priority")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise MalformedValue(f"{field}.priority", _short(priority), "must be an integer")
    if not 0 <= priority <= PRIORITY_MAX:
        raise MalformedValue(
            f"{field}.priority", priority,
            f"must be 0-{PRIORITY_MAX}: podnet keeps subnet ACLs below NetworkPolicy, as "
            "Kube-OVN does for these priorities (its NetworkPolicy ACLs are at 2000-2001)")
    return SubnetAcl(str(action), str(direction), priority,
                     parse_match(entry.get("match"), f"{field}.match"))


def parse_match(text: object, field: str) -> str:
    """A match checked against the whitelist, and printed again from what was read."""
    if not isinstance(text, str) or not text.strip():
        raise MalformedValue(field, _short(text), "must be a non-empty string")
    if len(text) > MATCH_MAX:
        raise MalformedValue(field, _short(text), f"is longer than {MATCH_MAX} characters")
    printed = _Parser(_tokens(text, field), field, text).parse()
    # What is stored and written is the print: it must read back as itself, within the
    # bounds, or the worker's second check (and the store's) would refuse an admitted ACL.
    if len(printed) > MATCH_MAX:
        raise MalformedValue(field, _short(text),
                             f"is longer than {MATCH_MAX} characters once printed")
    again = _Parser(_tokens(printed, field), field, printed).parse()
    if again != printed:
        raise MalformedValue(field, _short(text), "does not print back as itself")
    return printed


def _tokens(text: str, field: str) -> list[str]:
    found = []
    for token in _TOKEN.finditer(text):
        kind, value = token.lastgroup, token.group()
        if kind == "space":
            continue
        if kind == "other":
            raise MalformedValue(field, _short(text), _refusal(value))
        found.append(value)
    return found


def _refusal(value: str) -> str:
    """Why a character or a name is not accepted."""
    if value.startswith("$"):
        return "names an address set ($...): write the addresses instead"
    if value.startswith("@"):
        return "names a port group (@...): a subnet ACL applies to the whole subnet"
    if value.startswith(('"', "'")):
        return "has a quoted string (a port's name): a subnet ACL applies to the whole subnet"
    if value in ("inport", "outport"):
        return f"uses {value}: a subnet ACL applies to the whole subnet, not to a port"
    if re.fullmatch(r"x?x?reg[0-9]+(\[.*)?", value):
        return f"uses {value}: OVN's registers are not for subnet ACLs"
    if value.startswith(("ct.", "ct_")):
        return (f"uses {value}: connection tracking is podnet's (for stateful ACLs use "
                "action allow-related)")
    if _NAME.fullmatch(value):
        return (f"uses field {value}, which podnet does not accept in a subnet ACL (fields: "
                f"{', '.join(sorted(_BOOLEAN))}, {', '.join(sorted(_VALUED))})")
    return f"has {value!r}, which is not part of an accepted match"


class _Parser:
    """Recursive descent over OVN's match grammar, limited to the whitelist:

    ``or := and ("||" and)*``, ``and := unary ("&&" unary)*``,
    ``unary := "!" unary | "(" or ")" | field [comparison value]``,
    ``value := literal | "{" literal ("," literal)* "}"``.
    """

    def __init__(self, tokens: Sequence[str], field: str, text: str) -> None:
        self.tokens = list(tokens)
        self.at = 0
        self.field = field
        self.text = text

    def fail(self, reason: str) -> MalformedValue:
        return MalformedValue(self.field, _short(self.text), reason)

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise self.fail("ends where a field, value or ')' was expected")
        self.at += 1
        return token

    def parse(self) -> str:
        printed = self.disjunction(0, False)
        if self.peek() is not None:
            raise self.fail(f"has {self.peek()!r} where '&&', '||' or the end was expected")
        return printed

    def disjunction(self, depth: int, negated: bool) -> str:
        parts = [self.conjunction(depth, negated)]
        while self.peek() == "||":
            self.take()
            parts.append(self.conjunction(depth, negated))
        if len(parts) == 1:
            return parts[0]
        # an AND inside an OR is parenthesised: the same meaning, and no precedence to
        # rely on
        return " || ".join(f"({part})" if " && " in part and not _wrapped(part) else part
                           for part in parts)

    def conjunction(self, depth: int, negated: bool) -> str:
        parts = [self.unary(depth, negated)]
        while self.peek() == "&&":
            self.take()
            parts.append(self.unary(depth, negated))
        return " && ".join(parts)

    def unary(self, depth: int, negated: bool) -> str:
        if depth > DEPTH_MAX:
            raise self.fail(f"nests deeper than {DEPTH_MAX}")
        token = self.take()
        if token == "!":
            operand = self.unary(depth + 1, not negated)
            # OVN reads "!" before a parenthesised whole or a name, not before "!" or a
            # comparison: anything else is parenthesised
            return f"!{operand}" if _wrapped(operand) else f"!({operand})"
        if token == "(":
            inner = self.disjunction(depth + 1, negated)
            if self.take() != ")":
                raise self.fail("has a '(' without its ')'")
            return f"({inner})"
        return self.relation(token, negated)

    def relation(self, name: str, negated: bool) -> str:
        if name in _BOOLEAN and self.peek() not in _COMPARISONS:
            if negated:  # OVN would refuse the flow, and the ACL would do nothing
                raise self.fail(f"tests {name} under a '!': OVN tests protocols such as "
                                f"{name} only positively (write the other protocols instead)")
            return name
        kind = _VALUED.get(name)
        if kind is None:
            if _PUNCTUATION.fullmatch(name):
                raise self.fail(f"has {name!r} where a field was expected")
            raise self.fail(_refusal(name))
        operator = self.take()
        if operator not in _COMPARISONS:
            raise self.fail(f"has {operator!r} after {name}, where a comparison was expected")
        if operator in _ORDERING and kind != _PORT:
            raise self.fail(f"compares {name} with {operator}: only ports are ordered in OVN")
        if name in _NOMINAL and (operator == "!=") != negated:
            raise self.fail(f"tests {name} for inequality (counting the '!' around it): OVN "
                            f"tests {name} only for equality")
        if self.peek() == "{":
            if operator in _ORDERING:
                raise self.fail(f"compares {name} {operator} with a set")
            self.take()
            values = [self.literal(name, kind)]
            while self.peek() == ",":
                self.take()
                values.append(self.literal(name, kind))
            if self.take() != "}":
                raise self.fail("has a '{' without its '}'")
            return f"{name} {operator} {{{', '.join(values)}}}"
        return f"{name} {operator} {self.literal(name, kind)}"

    def literal(self, name: str, kind: str) -> str:
        token = self.take()
        printed = _literal(token, kind)
        if printed is None:
            if token.startswith(("$", "@")) or token in ("inport", "outport"):
                raise self.fail(_refusal(token))
            raise self.fail(f"compares {name} with {token!r}, which is not {kind}")
        return printed


def _wrapped(part: str) -> bool:
    """Whether ``part`` is one parenthesised whole (``(a && b)``, not ``(a) && (b)``)."""
    if not part.startswith("(") or not part.endswith(")"):
        return False
    depth = 0
    for index, char in enumerate(part):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and index < len(part) - 1:
            return False
    return True


def _literal(token: str, kind: str) -> str | None:
    """The literal printed canonically, or ``None`` when it is not of ``kind``."""
    if kind in _INTEGER_KINDS:
        if not _DECIMAL.fullmatch(token) or int(token) > _INTEGER_KINDS[kind]:
            return None
        return str(int(token))
    if kind == _MAC:
        return token.lower() if _MAC_TEXT.fullmatch(token) else None
    version = 4 if kind == _IPV4 else 6
    try:
        if "/" in token:
            network = ipaddress.ip_network(token, strict=False)
            return str(network) if network.version == version else None
        address = ipaddress.ip_address(token)
    except ValueError:
        return None
    return str(address) if address.version == version else None


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
