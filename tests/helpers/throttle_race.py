"""Many Postfix-like clients released at once against one or several apd instances.

``race(addresses, request, connections=200, per_connection=10)`` opens ``connections`` sockets
spread over ``addresses`` (round robin) from a few client processes, holds them at a barrier
until every socket of every process is connected, then each socket sends ``per_connection``
requests one after the other (one outstanding request per socket, as Postfix). It returns how
often each reply (the text after ``action=``) came back.
"""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import time
from collections import Counter
from typing import Sequence

Address = tuple[str, int]
TIMEOUT = 60.0


def _drive(addresses: Sequence[Address], indexes: Sequence[int], request: bytes, per_connection: int, barrier, results):
    sockets = []
    for index in indexes:
        sock = socket.create_connection(addresses[index % len(addresses)], timeout=10)
        sock.setblocking(False)
        sockets.append(sock)
    barrier.wait(TIMEOUT)
    selector = selectors.DefaultSelector()
    left, buffers, replies = {}, {}, Counter()
    for sock in sockets:
        sock.send(request)
        selector.register(sock, selectors.EVENT_READ)
        left[sock], buffers[sock] = per_connection, b""
    deadline = time.monotonic() + TIMEOUT
    while left and time.monotonic() < deadline:
        for key, _ in selector.select(1.0):
            sock = key.fileobj
            data = sock.recv(65536)
            if not data:
                replies["(connection closed)"] += left.pop(sock)
                selector.unregister(sock)
                continue
            buffers[sock] += data
            while b"\n\n" in buffers[sock]:
                reply, buffers[sock] = buffers[sock].split(b"\n\n", 1)
                replies[reply.decode().removeprefix("action=")] += 1
                left[sock] -= 1
                if left[sock]:
                    sock.send(request)
                else:
                    del left[sock]
                    selector.unregister(sock)
    if left:
        replies["(no answer)"] += sum(left.values())
    for sock in sockets:
        sock.close()
    results.put(dict(replies))


def race(
    addresses: Sequence[Address],
    request: bytes,
    connections: int = 200,
    per_connection: int = 10,
    processes: int = 4,
) -> Counter:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes)
    results = context.Queue()
    shares = [range(i, connections, processes) for i in range(processes)]
    children = [
        context.Process(target=_drive, args=(addresses, list(share), request, per_connection, barrier, results))
        for share in shares
    ]
    for child in children:
        child.start()
    total: Counter = Counter()
    for _ in children:
        total.update(results.get(timeout=TIMEOUT + 30))
    for child in children:
        child.join(10)
        assert child.exitcode == 0, f"race client exited with {child.exitcode}"
    return total
