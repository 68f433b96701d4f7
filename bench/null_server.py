"""The smallest useful policy server: prefork workers that answer ``action=DUNNO`` to everything.

It has apd's shape (a master binds, N forked workers accept from the shared socket and park
their connections in a selectors loop) with no parsing and no checks, so the bench can show what
apd's own work costs on top of the bare protocol round trip.

    python -m bench.null_server --port 7778 --workers 4

With ``--parse`` each request is also read the way any Python policy server must read it (decoded
and split into a name -> value dict, nothing more): the ceiling of a server that looks at its requests.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import sys
from itertools import repeat

REPLY = b"action=DUNNO\n\n"


def read_request(block: bytes) -> dict[str, str]:
    """The fastest pure-Python reading (apd's fast path does the same split)."""
    lines = block.decode("utf-8", "replace").split("\n")
    try:
        return dict(map(str.split, lines, repeat("="), repeat(1)))
    except ValueError:  # a line without '='
        return dict(line.split("=", 1) for line in lines if "=" in line)


def serve(listener: socket.socket, parse: bool = False) -> None:
    """One worker: accept, read, answer one DUNNO per complete request (empty line)."""
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    pending: dict[socket.socket, bytes] = {}
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            if sock is listener:
                try:
                    client, _ = listener.accept()
                except BlockingIOError:
                    continue
                client.setblocking(False)
                selector.register(client, selectors.EVENT_READ)
                pending[client] = b""
                continue
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                del pending[sock]
                sock.close()
                continue
            buffer = pending[sock] + data
            count = buffer.count(b"\n\n")
            if count:
                if parse:
                    for block in buffer.split(b"\n\n", count)[:count]:
                        read_request(block)
                buffer = buffer[buffer.rindex(b"\n\n") + 2 :]
                sock.sendall(REPLY * count)  # tiny replies: the send buffer never fills here
            pending[sock] = buffer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    p.add_argument("--parse", action="store_true", help="split each request into a dict before answering")
    args = p.parse_args(argv)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(4096)
    listener.setblocking(False)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                serve(listener, args.parse)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(signum, frame) -> None:
        for child in children:
            os.kill(child, signal.SIGTERM)
        for child in children:
            os.waitpid(child, 0)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
