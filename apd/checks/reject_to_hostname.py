"""reject_to_hostname: refuse mail from outside addressed to anything@<this server's hostname>."""

from __future__ import annotations

import socket

from apd import replies
from apd.address import is_strict_ip
from apd.checks.base import Check


def decide(sasl_username: str, trusted: bool, recipient: str, recipient_domain: str, hostname: str) -> str | None:
    if sasl_username or trusted:
        return None
    if recipient_domain == hostname and not recipient.startswith(("srs0=", "srs1=")):
        return replies.REJECT_NOT_AUTHORIZED
    return None


class RejectToHostname(Check):
    name = "reject_to_hostname"

    def __init__(self, settings, store):
        super().__init__(settings, store)
        self.hostname = socket.gethostname().lower()  # read once at load, as iRedAPD does

    def check(self, request, ctx):
        if request.sasl_username or request.recipient_domain != self.hostname:
            return None  # decide() could only answer None: spare the IP parse and trust lookup
        if not is_strict_ip(request.client_address):
            return None  # iRedAPD's trust test raises on a bad IP, which counts as DUNNO
        return decide("", ctx.client_trusted, request.recipient, request.recipient_domain, self.hostname)
