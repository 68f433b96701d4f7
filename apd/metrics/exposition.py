"""``GET /metrics`` served by the master from the run's multiprocess files, without blocking it.

The master's selector loop hands this listener's events here. A scrape is read, answered and
closed in small non-blocking steps; a client that sends nothing or reads nothing is closed after
SCRAPE_TIMEOUT, and at most MAX_SCRAPES are open at once, so a slow or hostile scraper costs the
master a socket, never a wait (the workers, which answer Postfix, are not involved at all).
"""

from __future__ import annotations

import importlib
import logging
import os
import pwd
import selectors
import shutil
import socket
import tempfile
import time
from typing import Any

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT = 5.0
MAX_SCRAPES = 16
MAX_REQUEST = 8192
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def parse_listen(value: str) -> tuple[str, int]:
    """``'127.0.0.1:9177'`` or ``'[::1]:9177'`` -> (host, port); ValueError otherwise."""
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if sep and rest.startswith(":") else ""
    else:
        host, sep, port_text = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"expected 'host:port' or '[ipv6]:port', not {value!r}")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"expected 'host:port' or '[ipv6]:port' with a port 1-65535, not {value!r}")
    return host, int(port_text)


def response(request: bytes, render: Any) -> bytes:
    """The HTTP/1.0 reply to one request head (pure but for ``render``, which makes the body)."""
    line = request.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    parts = line.split()
    if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
        return _reply(b"405 Method Not Allowed", b"text/plain", b"only GET /metrics\n", head=False)
    if parts[1].split(b"?", 1)[0] != b"/metrics":
        return _reply(b"404 Not Found", b"text/plain", b"apd serves /metrics\n", head=parts[0] == b"HEAD")
    content_type, body = render()
    return _reply(b"200 OK", content_type, body, head=parts[0] == b"HEAD")


def _reply(status: bytes, content_type: bytes, body: bytes, head: bool) -> bytes:
    headers = b"HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
        status,
        content_type,
        len(body),
    )
    return headers if head else headers + body


class MultiprocessFolder:
    """The run's folder of prometheus_client files: made fresh (mode 0700) and given to ``owner``,
    named in the environment, then prometheus_client imported (the workers inherit both); removed
    at the end. Made by root before the privilege drop: a venv in a private folder (root's home)
    is out of the account's reach afterwards, as apd/preload.py explains."""

    ENV = "PROMETHEUS_MULTIPROC_DIR"

    def __init__(self, owner: pwd.struct_passwd | None = None) -> None:
        self.path = tempfile.mkdtemp(prefix="apd-metrics-")
        try:
            if owner is not None:
                os.chown(self.path, owner.pw_uid, owner.pw_gid)
            os.environ[self.ENV] = self.path
            import_multiprocess_client()
        except BaseException:
            self.remove()
            raise

    def mark_dead(self, pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.path)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def import_multiprocess_client() -> None:
    """Import what the master and the workers use of prometheus_client, in multiprocess mode
    (chosen once, when it is first imported: values written before that would stay in one process)."""
    for name in ("prometheus_client", "prometheus_client.exposition", "prometheus_client.multiprocess"):
        importlib.import_module(name)
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        raise ImportError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set")


class Scrape:
    __slots__ = ("sock", "inbox", "outbox", "deadline")

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.inbox = bytearray()
        self.outbox = b""
        self.deadline = deadline


class MetricsServer:
    """The listener and its open scrapes, driven by the master's selector."""

    def __init__(self, host: str, port: int):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.sock.listen(64)
        except OSError as exc:
            self.sock.close()
            raise OSError(exc.errno, f"METRICS_LISTEN {host}:{port}: {exc.strerror}") from None
        self.sock.setblocking(False)
        self.address = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        self.folder: MultiprocessFolder | None = None  # made after the master's privilege drop
        self.scrapes: dict[int, Scrape] = {}
        self.selector: selectors.BaseSelector | None = None

    def start(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector
        selector.register(self.sock, READ, self)

    def render(self) -> tuple[bytes, bytes]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        assert self.folder is not None
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.folder.path)
        return CONTENT_TYPE_LATEST.encode(), generate_latest(registry)

    def handle(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.fileobj is self.sock:
            self._accept()
            return
        scrape = key.data
        if mask & READ and not scrape.outbox:
            self._read(scrape)
        elif mask & WRITE:
            self._write(scrape)

    def _accept(self) -> None:
        try:
            sock, _ = self.sock.accept()
        except OSError:
            return
        if len(self.scrapes) >= MAX_SCRAPES:
            sock.close()
            return
        sock.setblocking(False)
        scrape = Scrape(sock, time.monotonic() + SCRAPE_TIMEOUT)
        self.scrapes[sock.fileno()] = scrape
        assert self.selector is not None
        self.selector.register(sock, READ, scrape)

    def _read(self, scrape: Scrape) -> None:
        try:
            data = scrape.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(scrape)
            return
        scrape.inbox += data
        if b"\r\n\r\n" not in scrape.inbox and b"\n\n" not in scrape.inbox:
            if len(scrape.inbox) > MAX_REQUEST:
                self._close(scrape)
            return
        try:
            scrape.outbox = response(bytes(scrape.inbox), self.render)
        except Exception:
            log.exception("metrics: cannot render the scrape")
            scrape.outbox = _reply(b"500 Internal Server Error", b"text/plain", b"see apd's log\n", head=False)
        assert self.selector is not None
        self.selector.modify(scrape.sock, WRITE, scrape)
        self._write(scrape)

    def _write(self, scrape: Scrape) -> None:
        try:
            sent = scrape.sock.send(scrape.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(scrape)
            return
        scrape.outbox = scrape.outbox[sent:]
        if not scrape.outbox:
            self._close(scrape)

    def expire(self, now: float) -> None:
        for scrape in [s for s in self.scrapes.values() if now > s.deadline]:
            self._close(scrape)

    def _close(self, scrape: Scrape) -> None:
        self.scrapes.pop(scrape.sock.fileno(), None)
        if self.selector is not None:
            try:
                self.selector.unregister(scrape.sock)
            except (KeyError, ValueError):
                pass
        scrape.sock.close()

    def forget(self) -> None:
        """In a forked worker: close the inherited sockets without touching the master's selector."""
        for scrape in self.scrapes.values():
            scrape.sock.close()
        self.scrapes.clear()
        self.selector = None
        self.sock.close()

    def close(self) -> None:
        for scrape in list(self.scrapes.values()):
            self._close(scrape)
        if self.selector is not None:
            try:
                self.selector.unregister(self.sock)
            except (KeyError, ValueError):
                pass
        self.sock.close()
