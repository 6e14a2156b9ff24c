"""The OpenAPI 3.0 description of the IPAM's query endpoint (``ipam.api``).

Served at ``/api/v1/openapi.json`` so that clients and dashboards can be generated or
checked against the endpoint rather than against prose. It is a plain dict kept next to
the handlers; the tests hold the two together (every route is described, and the
schemas' required fields are what the endpoint returns).
"""

from __future__ import annotations

import copy
from typing import Any

API_VERSION = "1.0.0"
DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 1000
MAX_CURSOR = 2**64 - 1
"""Redis scan cursors are unsigned 64-bit integers; anything larger is a bad request."""

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _integer(description: str, minimum: int | None = 0) -> Schema:
    schema: Schema = {"type": "integer", "format": "int64", "description": description}
    if minimum is not None:
        schema["minimum"] = minimum
    return schema


def _strings(description: str) -> Schema:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def _object(properties: dict[str, Schema], description: str, nullable: bool = False) -> Schema:
    schema: Schema = {
        "type": "object",
        "description": description,
        "required": list(properties),
        "properties": properties,
    }
    if nullable:
        schema["nullable"] = True
    return schema


_USAGE_COUNTS: dict[str, Schema] = {
    "total": _integer("Usable addresses (the CIDR less network, broadcast, gateway, excludeIps)."),
    "used": _integer("Addresses held by bound pods and kept StatefulSet ordinals."),
    "reserved": _integer("Addresses reserved at admission whose pod is not stored yet."),
    "free": _integer("Usable addresses neither used nor reserved."),
    "excluded": _integer("Addresses never handed out: network, broadcast, gateway, excludeIps."),
}

_FAMILY_USAGE = _object(
    {
        "family": {"type": "string", "enum": ["IPv4", "IPv6"]},
        "cidr": {"type": "string", "example": "10.16.0.0/16"},
        **_USAGE_COUNTS,
    },
    "Utilisation of one address family of a subnet.",
)

_SUBNET_USAGE_PROPERTIES: dict[str, Schema] = {
    "name": {"type": "string", "example": "ovn-default"},
    "cidrBlock": {"type": "string", "description": "One CIDR, or IPv4,IPv6 for dual stack."},
    "gateway": {"type": "string", "description": "One address per family, comma-separated."},
    "protocol": {"type": "string", "enum": ["IPv4", "IPv6", "Dual"]},
    **_USAGE_COUNTS,
    "kept": _integer("Allocations kept for the next pod of a StatefulSet ordinal."),
    "fenced": {
        "type": "boolean",
        "description": "Allocation is paused until a reconcile rebuilds the index.",
    },
    "families": {"type": "array", "items": _ref("FamilyUsage")},
}

_SUBNET_USAGE = _object(
    _SUBNET_USAGE_PROPERTIES,
    "A subnet's utilisation; the counts at the top are those of its first family.",
)

_SUBNET_SPEC_PROPERTIES: dict[str, Schema] = {
    "excludeIps": _strings("Addresses, a..b ranges and CIDRs never handed out."),
    "namespaces": _strings("Namespaces whose pods use this subnet by default."),
    "private": {"type": "boolean"},
    "allowSubnets": _strings("CIDRs that may reach a private subnet."),
    "natOutgoing": {"type": "boolean"},
    "gatewayType": {"type": "string", "enum": ["distributed", "centralized"]},
    "gatewayNode": {"type": "string"},
    "disableInterConnection": {"type": "boolean"},
    "nodeSelector": {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "Node labels a pod's node must carry to get an address here.",
    },
    "default": {"type": "boolean"},
    "acls": {
        "type": "array",
        "description": "Kube-OVN's spec.acls on the subnet's switch, as validated (the match "
                       "printed again from its parse).",
        "items": _object({
            "action": {"type": "string",
                       "enum": ["allow", "allow-related", "allow-stateless", "drop", "reject"]},
            "direction": {"type": "string", "enum": ["from-lport", "to-lport"]},
            "priority": {"type": "integer", "minimum": 0, "maximum": 1999},
            "match": {"type": "string"},
        }, "One ACL."),
    },
    "allowEWTraffic": {"type": "boolean"},
}

_SUBNET_DETAIL = _object(
    {**_SUBNET_USAGE_PROPERTIES, **_SUBNET_SPEC_PROPERTIES},
    "A subnet's utilisation and the spec fields that decide who gets its addresses.",
)

_OWNER = _object(
    {"namespace": {"type": "string"}, "name": {"type": "string"}, "uid": {"type": "string"}},
    "The stored pod holding the allocation; null while only reserved.",
    nullable=True,
)

_ALLOCATION = _object(
    {
        "ips": _strings("The allocation's addresses, one per family of the subnet."),
        "mac": {"type": "string", "example": "0a:58:0a:10:00:05"},
        "subnet": {"type": "string"},
        "state": {"type": "string", "enum": ["reserved", "bound", "kept"]},
        "owner": _OWNER,
        "reservation": {"type": "string", "description": "The token it was reserved under."},
        "statefulset_key": {
            "type": "string", "nullable": True,
            "description": "namespace/statefulset/ordinal for a StatefulSet pod's allocation.",
        },
        "since_ms": _integer("When it was reserved, in ms since the epoch."),
        "expires_ms": {
            **_integer("When an unbound reservation lapses, in ms since the epoch."),
            "nullable": True,
        },
    },
    "One pod's addresses and MAC in one subnet.",
)

_IP_PAGE = _object(
    {
        "items": {"type": "array", "items": _ref("Allocation")},
        "next_cursor": _integer("Pass as cursor for the next page; 0 on the last page."),
    },
    "A page of a subnet's allocations (a page may hold more than limit items).",
)

_ERROR = _object(
    {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "example": "unknown_subnet",
                    "description": "invalid_input, unknown_subnet, not_found, "
                    "store_unavailable, method_not_allowed, ...",
                },
                "message": {"type": "string"},
                "field": {
                    "type": "string",
                    "description": "The parameter at fault (invalid_input only).",
                },
            },
        }
    },
    "Every error the endpoint answers with.",
)

_STATUS = _object({"status": {"type": "string", "enum": ["ok"]}}, "Health of the endpoint.")


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _path_parameter(name: str, description: str, schema: Schema | None = None
                    ) -> dict[str, Any]:
    return {
        "name": name, "in": "path", "required": True, "description": description,
        "schema": schema or {"type": "string"},
    }


NAME_PATTERN = "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
"""A Kubernetes object name (DNS subdomain): what ``ipam.subnet.validate_name`` takes."""


def _query_parameter(name: str, description: str, schema: Schema) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_UNAVAILABLE = _error("Redis is unreachable or failing.")
_SUBNET_NAME = _path_parameter("name", "The subnet's name.", {
    "type": "string", "pattern": NAME_PATTERN, "maxLength": 253})


def _get(
    operation_id: str, summary: str, responses: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id, "summary": summary, "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


_PATHS: dict[str, Any] = {
    "/api/v1/subnets": _get(
        "listSubnets", "Every subnet with its utilisation.",
        {
            "200": _json({"type": "array", "items": _ref("SubnetUsage")}, "The subnets."),
            "503": _UNAVAILABLE,
        },
    ),
    "/api/v1/subnets/{name}": _get(
        "getSubnet", "One subnet's utilisation and spec.",
        {
            "200": _json(_ref("SubnetDetail"), "The subnet."),
            "400": _error("The name is not a valid subnet name."),
            "404": _error("No subnet of that name."),
            "503": _UNAVAILABLE,
        },
        [_SUBNET_NAME],
    ),
    "/api/v1/subnets/{name}/ips": _get(
        "listSubnetIps", "A page of a subnet's allocations; follow next_cursor until it is 0.",
        {
            "200": _json(_ref("IpPage"), "A page of allocations."),
            "400": _error("cursor or limit is out of range, or the name is invalid."),
            "404": _error("No subnet of that name."),
            "503": _UNAVAILABLE,
        },
        [
            _SUBNET_NAME,
            _query_parameter(
                "cursor", "Where to resume: 0 (the default) or a previous next_cursor.",
                {"type": "integer", "minimum": 0, "maximum": MAX_CURSOR, "default": 0},
            ),
            _query_parameter(
                "limit", "How many allocations to aim for in this page.",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_LIMIT,
                 "default": DEFAULT_PAGE_LIMIT},
            ),
        ],
    ),
    "/api/v1/ips/{ip}": _get(
        "getIp", "The allocation holding an IPv4 or IPv6 address.",
        {
            "200": _json(_ref("Allocation"), "The allocation holding the address."),
            "400": _error("Not an IP address."),
            "404": _error("No allocation holds the address."),
            "503": _UNAVAILABLE,
        },
        [_path_parameter("ip", "An IPv4 or IPv6 address.", {"anyOf": [
            {"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]})],
    ),
    "/api/v1/pods/{namespace}/{name}": _get(
        "getPod", "The allocation of a pod.",
        {
            "200": _json(_ref("Allocation"), "The pod's allocation."),
            "404": _error("The pod holds no address."),
            "503": _UNAVAILABLE,
        },
        [
            _path_parameter("namespace", "The pod's namespace."),
            _path_parameter("name", "The pod's name."),
        ],
    ),
    "/api/v1/openapi.json": _get(
        "getOpenApi", "This document.",
        {"200": _json({"type": "object"}, "The OpenAPI 3.0 document.")},
    ),
    "/metrics": _get(
        "getMetrics", "Prometheus metrics, with subnet utilisation refreshed for this scrape.",
        {
            "200": {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    ),
    "/healthz": _get(
        "getHealth", "Liveness: the endpoint answers.",
        {"200": _json(_ref("Status"), "Alive.")},
    ),
    "/readyz": _get(
        "getReadiness", "Readiness: Redis answers.",
        {"200": _json(_ref("Status"), "Ready."), "503": _UNAVAILABLE},
    ),
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the query endpoint (a fresh copy per call)."""
    return copy.deepcopy(
        {
            "openapi": "3.0.3",
            "info": {
                "title": "podnet IPAM query API",
                "version": API_VERSION,
                "description": "Read-only view of podnet's address index: subnets and their "
                "utilisation, allocations by subnet, IP and pod.",
            },
            "paths": _PATHS,
            "components": {
                "schemas": {
                    "FamilyUsage": _FAMILY_USAGE,
                    "SubnetUsage": _SUBNET_USAGE,
                    "SubnetDetail": _SUBNET_DETAIL,
                    "Allocation": _ALLOCATION,
                    "IpPage": _IP_PAGE,
                    "Error": _ERROR,
                    "Status": _STATUS,
                }
            },
        }
    )
