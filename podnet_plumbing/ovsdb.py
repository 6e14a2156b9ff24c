"""Connections to OVSDB servers (OVN NB/SB, Open_vSwitch) through ovsdbapp, as podnet needs them.

Two things in ovsdbapp do not fit a process that talks to several servers from an
asyncio loop, and both are fixed here, once, for every component:

* ovsdbapp keeps an API's connection on the class, the first one for good; a second API
  object (another server, or a reconnect after a restart) would silently reuse the old
  one. :func:`own_connection` keeps it per instance.
* ovsdbapp's IDL sleeps after every row of an update for green threads' sake, which
  costs a whole GIL switch interval per row here; :func:`_unyielding` removes that.

``ssl:`` remotes need key, certificate and CA files (python-ovs keeps them process-wide),
and a failed handshake is explained by :func:`tls_problem` rather than a bare errno.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ovsdbapp.schema.ovn_northbound.impl_idl import OvnNbApiIdlImpl
    from ovsdbapp.schema.ovn_southbound.impl_idl import OvnSbApiIdlImpl


class OvsdbError(RuntimeError):
    """An OVSDB server could not be reached or spoken to; the message says why."""



def own_connection(base: type[Any]) -> type[Any]:
    """``base`` keeping its connection per instance.

    ovsdbapp stores the connection on the class, the first one for good, so a second API
    object (another server, or a reconnect after a restart) would silently reuse the old
    connection.
    """

    class PerInstance(base):  # type: ignore[misc]
        @property
        def ovsdb_connection(self) -> Any:
            return self._podnet_connection

        @ovsdb_connection.setter
        def ovsdb_connection(self, connection: Any) -> None:
            self._podnet_connection = connection

    PerInstance.__name__ = f"PodnetOwn{base.__name__}"
    return PerInstance


def _unyielding(base: type[Any]) -> type[Any]:
    """``base``, an IDL that takes a whole update in one go.

    ovsdbapp's IDL sleeps for zero seconds after every row of an update, for green
    threads' sake. podnet has none; its IDL thread shares the GIL with the event loop,
    and each of those sleeps may wait a whole switch interval for it: a 10,000-row
    update took seconds.
    """

    class Unyielding(base):  # type: ignore[misc]
        def cooperative_yield(self) -> None:
            pass

    return Unyielding


@dataclass(frozen=True)
class SslFiles:
    """What ``ssl:`` remotes need, as ovn-nbctl's ``-p``, ``-c`` and ``-C``.

    python-ovs keeps these process-wide (class attributes of ``ovs.stream.Stream``), so
    a process speaks TLS to OVSDB with one set of files at a time.
    """

    private_key: Path
    certificate: Path
    ca_cert: Path


def ssl_remotes(remote: str) -> list[str]:
    """The ``ssl:`` remotes of a comma-separated remote list."""
    return [part.strip() for part in remote.split(",") if part.strip().startswith("ssl:")]


def _use_ssl_files(remote: str, files: SslFiles | None) -> None:
    """Hand ``files`` to python-ovs before any stream opens (required for ``ssl:``)."""
    if files is None:
        if ssl_remotes(remote):
            raise OvsdbError(f"{remote}: an ssl: remote needs a private key, a certificate "
                           "and a CA certificate")
        return
    from ovs.stream import Stream

    Stream.ssl_set_private_key_file(str(files.private_key))
    Stream.ssl_set_certificate_file(str(files.certificate))
    Stream.ssl_set_ca_cert_file(str(files.ca_cert))


def tls_problem(remote: str, files: SslFiles, timeout_s: float = 5.0) -> str | None:
    """Why a TLS session with one ``ssl:HOST:PORT`` remote fails, or None if it works.

    python-ovs reports a failed handshake as a bare errno; this repeats the handshake
    with the same files and settings (no host name check, as python-ovs) to say why.
    """
    host, _, port = remote.removeprefix("ssl:").rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    try:
        context.load_verify_locations(files.ca_cert)
        context.load_cert_chain(files.certificate, files.private_key)
        _handshake(context, host.strip("[]"), int(port), timeout_s)
    except ssl.SSLCertVerificationError as exc:
        return (f"{remote}: the server's certificate does not verify against the CA "
                f"certificate {files.ca_cert}: {exc.verify_message}")
    except ssl.SSLError as exc:
        if "ALERT" in (exc.reason or ""):  # the server refused the session
            return (f"{remote}: TLS failed (does the server trust the CA that signed "
                    f"{files.certificate}?): {exc}")
        return f"{remote}: TLS failed: {exc}"
    except (OSError, ValueError) as exc:
        return f"{remote}: {exc}"
    return None


def _handshake(context: ssl.SSLContext, host: str, port: int, timeout_s: float) -> None:
    with (socket.create_connection((host, port), timeout_s) as raw,
          context.wrap_socket(raw) as tls):
        # A server that refuses our certificate says so after TLS 1.3's handshake, on
        # the first read; a server that accepts it sends nothing until asked.
        tls.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            tls.recv(1)


def _schema_helper(remote: str, schema: str, files: SslFiles | None) -> Any:
    """The server's schema, or an :class:`OvsdbError` that says why it could not be read."""
    from ovsdbapp.backend.ovs_idl import idlutils

    try:
        return idlutils.get_schema_helper(remote, schema)
    except Exception as exc:  # ovsdbapp raises a bare Exception
        reasons = [tls_problem(part, files) for part in ssl_remotes(remote)] if files else []
        detail = "; ".join(reason for reason in reasons if reason)
        raise OvsdbError(f"cannot read the {schema} schema from {remote}: "
                       f"{detail or exc}") from exc


def _api(remote: str, schema: str, api_class: type[Any], timeout_s: float,
         files: SslFiles | None = None) -> Any:
    from ovsdbapp.backend.ovs_idl import connection

    _use_ssl_files(remote, files)
    helper = _schema_helper(remote, schema, files)
    helper.register_all()
    idl = _unyielding(connection.OvsdbIdl)(remote, helper)
    _reconnect_quickly(idl)
    return own_connection(api_class)(connection.Connection(idl, timeout=timeout_s))


RECONNECT_BACKOFF_MS = (100, 1000)
"""python-ovs waits 1 s, then doubling up to 8 s, between connection attempts. On a raft
cluster that loses its leader the IDL may try a dead member and a follower (it wants the
leader) before it finds the new leader, and a transaction that was in flight keeps
waiting through all of it: a killed NB leader cost the sync worker up to 18 s that way,
against under 1 s with these bounds (bench/failover.py)."""


def _reconnect_quickly(idl: Any) -> None:
    """Bound the IDL's reconnection back-off (python-ovs offers no argument for it)."""
    session = getattr(idl, "_session", None)
    reconnect = getattr(session, "reconnect", None)
    if reconnect is not None and hasattr(reconnect, "set_backoff"):
        reconnect.set_backoff(*RECONNECT_BACKOFF_MS)


def nb_api(remote: str, timeout_s: float = 10.0,
           ssl_files: SslFiles | None = None) -> OvnNbApiIdlImpl:
    """An ``OvnNbApiIdlImpl`` connected to the northbound DB at ``remote``.

    ``ssl_files`` are required when ``remote`` has ``ssl:`` parts. Call
    :func:`close_api` when done: it stops the connection's thread.
    """
    from ovsdbapp.schema.ovn_northbound import impl_idl

    return _api(remote, "OVN_Northbound", impl_idl.OvnNbApiIdlImpl, timeout_s, ssl_files)


def sb_api(remote: str, timeout_s: float = 10.0) -> OvnSbApiIdlImpl:
    """An ``OvnSbApiIdlImpl`` connected to the southbound DB at ``remote``."""
    from ovsdbapp.schema.ovn_southbound import impl_idl

    return _api(remote, "OVN_Southbound", impl_idl.OvnSbApiIdlImpl, timeout_s)


def on_changes(api: Any, tables: Iterable[str], callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the API's replica takes a change to a row of one of
    ``tables`` (in the connection's thread: hand it on with ``call_soon_threadsafe``)."""
    idl = api.ovsdb_connection.idl
    watched = frozenset(tables)
    previous = idl.notify

    def notify(event: Any, row: Any, updates: Any = None) -> None:
        previous(event, row, updates)
        if row._table.name in watched:
            callback()

    idl.notify = notify


def close_api(api: Any, timeout_s: float = 5.0) -> None:
    """Stop an API object's connection thread."""
    api.ovsdb_connection.stop(timeout_s)


def ic_nb_api(remote: str, timeout_s: float = 10.0) -> Any:
    """An ovsdbapp API connected to the OVN-IC northbound DB (``Transit_Switch``)."""
    from ovsdbapp.schema.ovn_ic_northbound import impl_idl

    return _api(remote, "OVN_IC_Northbound", impl_idl.OvnIcNbApiIdlImpl, timeout_s)


def ic_sb_api(remote: str, timeout_s: float = 10.0) -> Any:
    """An ovsdbapp API connected to the OVN-IC southbound DB (ovsdbapp has no schema
    module for it: the generic backend, read and written through commands)."""
    from ovsdbapp import api as ovsdbapp_api
    from ovsdbapp.backend import ovs_idl

    class IcSbApi(ovs_idl.Backend, ovsdbapp_api.API):  # type: ignore[misc]
        schema = "OVN_IC_Southbound"

    return _api(remote, "OVN_IC_Southbound", IcSbApi, timeout_s)
