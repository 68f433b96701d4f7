"""A minimal Postfix-like policy client for tests: send requests, read ``action=`` replies."""

from __future__ import annotations

import socket
import time


def request_bytes(**attrs: str) -> bytes:
    attrs.setdefault("request", "smtpd_access_policy")
    return "".join(f"{k}={v}\n" for k, v in attrs.items()).encode() + b"\n"


def rcpt(**overrides: str) -> dict[str, str]:
    """A typical RCPT-state request from an outside client."""
    attrs = {
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "client_address": "192.0.2.10",
        "client_name": "mail.example.net",
        "reverse_client_name": "mail.example.net",
        "helo_name": "mail.example.net",
        "sender": "someone@example.net",
        "recipient": "user@example.com",
        "recipient_count": "0",
        "queue_id": "",
        "instance": "1234.5678.1",
        "size": "0",
        "sasl_method": "",
        "sasl_username": "",
        "sasl_sender": "",
    }
    attrs.update(overrides)
    return attrs


class PolicyClient:
    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_reply(self) -> str:
        while b"\n\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        reply, self.buffer = self.buffer.split(b"\n\n", 1)
        line = reply.decode()
        assert line.startswith("action="), line
        return line[len("action=") :]

    def ask(self, **attrs: str) -> str:
        self.send_raw(request_bytes(**attrs))
        return self.read_reply()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port}") from None
            time.sleep(0.05)
