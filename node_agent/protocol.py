"""The wire format between ``podnet-cni`` and the node agent, on a root-only unix socket.

One request per connection: the shim writes one JSON object and a newline, the agent
answers with one JSON object and a newline, and closes. JSON because the payload (the
network configuration, the result) is JSON already; one line each way because it needs
no framing library and a partial message is plainly an error.

A request carries the CNI call as the runtime made it: the ``CNI_*`` environment and
the parsed configuration. The answer is ``{"ok": true, "result": ...}`` (no result for
calls that print nothing) or ``{"ok": false, "error": {"code", "msg", "details"}}``.

The shim imports this module, and a runtime execs the shim for every pod, so it costs
next to nothing to import: JSON goes through CPython's ``_json`` accelerator directly
(the ``json`` package would pull in ``re`` and compile its patterns, about a third of
the shim's start-up), and the typed shapes exist for the type checker only.
"""

from __future__ import annotations

import _json

from node_agent.errors import DecodingFailure, ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NotRequired, TypedDict

    from node_agent.errors import CniError

    class Request(TypedDict):
        wire: int
        command: str
        containerId: str
        netns: str
        ifname: str
        args: str
        path: str
        config: dict[str, Any]

    class ErrorBody(TypedDict):
        code: int
        msg: str
        details: NotRequired[str]

    class Reply(TypedDict):
        ok: bool
        result: NotRequired[dict[str, Any]]
        error: NotRequired[ErrorBody]


WIRE_VERSION = 1
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_SOCKET = "/run/podnet/cni.sock"
COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC")
"""What the agent serves; VERSION is answered by the shim itself."""

_WHITESPACE = " \t\n\r"


class _Decoding:
    """The settings ``_json.make_scanner`` reads (what ``json.JSONDecoder`` would hold)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict[str, str] = {}  # noqa: RUF012 (the C scanner reads it as an attribute)


def _unserialisable(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_scan = _json.make_scanner(_Decoding())  # type: ignore[arg-type]  # duck-typed context
_encode = _json.make_encoder(
    None, _unserialisable, _json.encode_basestring_ascii, None, ":", ",", False, False, False
)


def dumps(value: object) -> str:
    """Compact JSON text of ``value`` (ASCII only)."""
    return "".join(_encode(value, 0))


def loads(text: str | bytes) -> Any:
    """The JSON value of ``text``; ``ValueError`` (with the position) when it is not
    exactly one JSON value."""
    if isinstance(text, bytes):
        text = text.decode()
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except (StopIteration, SystemError):  # the scanner reports errors through json.decoder
        return _loads_with_message(text)
    if text[end:].strip(_WHITESPACE):
        return _loads_with_message(text)
    return value


def _loads_with_message(text: str) -> Any:
    """The error path: the ``json`` package names what is wrong and where."""
    import json

    return json.loads(text)


def request(
    command: str, config: dict[str, Any], *, container_id: str = "", netns: str = "",
    ifname: str = "", args: str = "", path: str = "",
) -> Request:
    message: Request = {
        "wire": WIRE_VERSION, "command": command, "containerId": container_id,
        "netns": netns, "ifname": ifname, "args": args, "path": path, "config": config,
    }
    return message


def encode(message: Request | Reply) -> bytes:
    return dumps(message).encode() + b"\n"


def _object(line: bytes) -> dict[str, Any]:
    try:
        value = loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodingFailure("podnet: the message on the agent socket is not JSON",
                              str(exc)) from exc
    if not isinstance(value, dict):
        raise ProtocolError("podnet: the message on the agent socket is not a JSON object")
    return value


def decode_request(line: bytes) -> Request:
    """Parse and check a request line; raises a CniError naming what is wrong."""
    value = _object(line)
    if value.get("wire") != WIRE_VERSION:
        raise ProtocolError(
            f"podnet: podnet-cni speaks wire version {value.get('wire')!r}, the agent "
            f"{WIRE_VERSION}", "install the podnet-cni of the running agent's release")
    for key in ("command", "containerId", "netns", "ifname", "args", "path"):
        if not isinstance(value.get(key, ""), str):
            raise ProtocolError(f"podnet: request field {key} is not a string")
    if not isinstance(value.get("config"), dict):
        raise ProtocolError("podnet: request has no configuration object")
    if not value.get("command"):
        raise ProtocolError("podnet: request has no command (CNI_COMMAND is unset)")
    return request(
        value["command"], value["config"], container_id=value.get("containerId", ""),
        netns=value.get("netns", ""), ifname=value.get("ifname", ""),
        args=value.get("args", ""), path=value.get("path", ""),
    )


def success(result: dict[str, Any] | None = None) -> Reply:
    reply: Reply = {"ok": True}
    if result is not None:
        reply["result"] = result
    return reply


def failure(error: CniError) -> Reply:
    body: ErrorBody = {"code": error.code, "msg": error.msg}
    if error.details:
        body["details"] = error.details
    return {"ok": False, "error": body}


def decode_reply(line: bytes) -> Reply:
    value = _object(line)
    if value.get("ok") is True:
        result = value.get("result")
        return success(result if isinstance(result, dict) else None)
    error = value.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("code"), int):
        raise ProtocolError("podnet: the agent's answer is neither a result nor an error")
    body: ErrorBody = {"code": error["code"], "msg": str(error.get("msg", ""))}
    if error.get("details"):
        body["details"] = str(error["details"])
    return {"ok": False, "error": body}
