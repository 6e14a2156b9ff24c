"""MAC addresses: validation of static ones and generation of random ones.

Generated MACs are locally administered unicast (first octet ``x2``/``x6``/``xA``/``xE``),
so they can never collide with a vendor-assigned MAC on the underlay. Uniqueness within
a subnet (one L2 domain in OVN) is enforced by the Redis scripts, which refuse a MAC
that another allocation already holds.
"""

from __future__ import annotations

import re
import secrets

from ipam import annotations as keys
from ipam.errors import MalformedValue

_MAC = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}", re.ASCII)


def normalize_mac(value: str, field: str = keys.MAC_ADDRESS) -> str:
    """Lower-case, colon-separated; refuses malformed, multicast and all-zero MACs."""
    cleaned = value.strip().lower()
    if not _MAC.fullmatch(cleaned):
        raise MalformedValue(field, value, "is not a MAC address (expected aa:bb:cc:dd:ee:ff)")
    normalized = cleaned.replace("-", ":")
    first_octet = int(normalized[:2], 16)
    if first_octet & 1:
        raise MalformedValue(field, value, "is a multicast MAC; a pod needs a unicast MAC")
    if normalized == "00:00:00:00:00:00":
        raise MalformedValue(field, value, "is the all-zero MAC")
    return normalized


def random_mac() -> str:
    """A random locally administered unicast MAC."""
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return octets.hex(":")  # one C call: a MAC is made for every reservation
