"""The IPAM's exception hierarchy: one root, one subclass per thing a caller acts on.

Callers at the edges (the admission webhook, the query endpoint, the CLI) turn these
into denials, 4xx answers or exit codes, so each error carries the field, the value
and the reason in words a user can act on. Errors from Redis itself are wrapped in
``StoreUnavailable`` (chained with ``from``) so that a broken store is never mistaken
for a bad request.
"""

from __future__ import annotations


class IpamError(Exception):
    """Root of every error the IPAM raises."""


class InvalidInput(IpamError):
    """A user-supplied value is unusable; names the field, the value and why."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field} {value!s}: {reason}" if field else f"{value!s}: {reason}")


class MalformedValue(InvalidInput):
    """Not an IP, CIDR, range, MAC or name at all."""


class OutsideSubnet(InvalidInput):
    """A well-formed address that does not belong to the subnet."""


class ExcludedAddress(InvalidInput):
    """An address listed in the subnet's ``excludeIps`` (or its network/broadcast)."""


class GatewayAddress(InvalidInput):
    """The subnet's gateway, which is never given to a pod."""


class SubnetOverlap(InvalidInput):
    """Two subnets share addresses."""


class SubnetChangeRefused(InvalidInput):
    """A subnet update that would invalidate addresses in use."""


class UnknownSubnet(IpamError):
    """No subnet of that name is registered."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"subnet {name} does not exist")


class UnknownPool(IpamError):
    """No IP pool of that name is registered."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"ip pool {name} does not exist")


class AllocationConflict(IpamError):
    """The address or MAC is already held; ``owner`` says by whom."""

    def __init__(self, field: str, value: str, owner: str) -> None:
        self.field = field
        self.value = value
        self.owner = owner
        super().__init__(f"{field} {value} is already used by {owner}")


class StickyHeld(IpamError):
    """A StatefulSet ordinal's address is still held by a pod that may be live."""

    def __init__(self, sticky_key: str, owner: str) -> None:
        self.sticky_key = sticky_key
        self.owner = owner
        super().__init__(
            f"the address of StatefulSet ordinal {sticky_key} is still held by {owner}; "
            "it moves to a new pod once that pod is gone (retry shortly)"
        )


class Exhausted(IpamError):
    """No free address left in a subnet or pool; says how many are in use."""

    def __init__(self, what: str, used: int, total: int) -> None:
        self.what = what
        self.used = used
        self.total = total
        super().__init__(f"{what} is exhausted: {used} of {total} addresses in use")


class UnknownReservation(IpamError):
    """A token that the IPAM does not know (never issued, released or expired)."""

    def __init__(self, token: str) -> None:
        self.token = token
        super().__init__(f"reservation {token} does not exist (released or expired)")


class Fenced(IpamError):
    """Allocation is paused until a reconcile has rebuilt the index from live pods."""

    def __init__(self, subnet: str) -> None:
        self.subnet = subnet
        super().__init__(
            f"subnet {subnet} is fenced: allocation resumes once a reconcile "
            "from the live pods has rebuilt the address index"
        )


class StoreUnavailable(IpamError):
    """Redis could not be reached or answered with an error."""
