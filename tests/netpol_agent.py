"""One lab pod's stand-in for its containers during the NetworkPolicy truth tables: a
server and a prober in the pod's network namespace.

A lab pod is a bare network namespace, so something has to answer on the ports the
policies talk about, and something has to open connections from inside the pod. One
long-lived process per pod does both, so a round of the matrix (hundreds of probes)
costs no process starts:

- it serves TCP and UDP (and SCTP when asked) on the given ports, answering every
  request with the pod's label, so a prober can tell an answer from a bare TCP
  handshake and knows which pod (behind a Service VIP) answered;
- it reads probe requests from stdin, one JSON object a line (``id``, ``address``,
  ``port``, ``protocol``, ``timeout``), runs them concurrently, and writes one JSON line
  per probe: the ``id`` and the ``answer`` (empty when none came) or the ``error``.

It needs the standard library only: the lab runs it with a bare interpreter.
"""

from __future__ import annotations

import itertools
import json
import socket
import socketserver
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PAYLOAD = b"netpol probe"
FIRST_SOURCE_PORT, LAST_SOURCE_PORT = 20000, 60999
_source_ports = itertools.cycle(range(FIRST_SOURCE_PORT, LAST_SOURCE_PORT + 1))
_source_lock = threading.Lock()
ANSWER_LIMIT = 256
SCTP = getattr(socket, "IPPROTO_SCTP", 132)


def tcp_server(label: bytes, port: int, protocol: int) -> socketserver.BaseServer:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(5)
            try:
                if self.request.recv(64):
                    self.request.sendall(label)
            except OSError:
                pass

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 128

        def __init__(self) -> None:
            socketserver.BaseServer.__init__(self, ("0.0.0.0", port), Handler)
            self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, protocol)
            self.server_bind()
            self.server_activate()

    return Server()


def udp_server(label: bytes, port: int) -> socketserver.BaseServer:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            if data:
                sock.sendto(label, self.client_address)

    return socketserver.ThreadingUDPServer(("0.0.0.0", port), Handler)


def probe(request: dict[str, Any]) -> dict[str, Any]:
    protocol, timeout = str(request["protocol"]), float(request["timeout"])
    address = (str(request["address"]), int(request["port"]))
    kind = socket.SOCK_DGRAM if protocol == "UDP" else socket.SOCK_STREAM
    number = SCTP if protocol == "SCTP" else 0
    sent = time.monotonic()
    try:
        with socket.socket(socket.AF_INET, kind, number) as sock:
            sock.settimeout(timeout)
            _bind_fresh(sock)
            sent = time.monotonic()  # the clock is the machine's, in every namespace
            sock.connect(address)
            sock.sendall(PAYLOAD)
            answer = sock.recv(ANSWER_LIMIT) if kind == socket.SOCK_DGRAM else _read_all(sock)
    except OSError as exc:
        return {"id": request["id"], "answer": "", "error": str(exc) or type(exc).__name__,
                "sent": sent}
    return {"id": request["id"], "answer": answer.decode(errors="replace"),
            "error": "" if answer else "closed without an answer", "sent": sent}


def _bind_fresh(sock: socket.socket) -> None:
    """Each probe from a source port none of the last forty thousand used: a reused
    5-tuple could meet the conntrack entry of an earlier probe (allowed or blocked under
    another policy) and be judged as part of that connection, not as a new one."""
    for _ in range(100):
        with _source_lock:
            port = next(_source_ports)
        try:
            sock.bind(("0.0.0.0", port))
            return
        except OSError:
            continue
    raise OSError("no free source port")


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    while len(received) < ANSWER_LIMIT:
        chunk = sock.recv(ANSWER_LIMIT)
        if not chunk:
            break
        received += chunk
    return received


def serve(label: str, ports: list[int], sctp: bool) -> None:
    servers = []
    for port in ports:
        servers.append(tcp_server(label.encode(), port, socket.IPPROTO_TCP))
        servers.append(udp_server(label.encode(), port))
        if sctp:
            servers.append(tcp_server(label.encode(), port, SCTP))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()


def main(argv: list[str]) -> None:
    label, ports, sctp = argv[0], [int(p) for p in argv[1].split(",")], "--sctp" in argv
    serve(label, ports, sctp)
    out = threading.Lock()

    def answer(request: dict[str, Any]) -> None:
        line = json.dumps(probe(request))
        with out:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    print("ready", flush=True)
    with ThreadPoolExecutor(max_workers=64) as pool:
        for line in sys.stdin:
            if line.strip():
                pool.submit(answer, json.loads(line))


if __name__ == "__main__":
    main(sys.argv[1:])
