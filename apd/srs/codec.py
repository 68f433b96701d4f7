"""SRS0/SRS1 addresses in the Guarded scheme, as libsrs2 and srslib 0.1.4 (iRedAPD) write them.

A forwarded sender ``alice@orig.com`` becomes ``SRS0=HHHH=TT=orig.com=alice@<srs_domain>``:
TT is the day (two base32 characters), HHHH the first four characters of the base64
HMAC-SHA1, under the first secret, of ``TT + host + local`` lowercased. An address that is
already SRS0 is wrapped as SRS1 instead, which keeps the first hop's part opaque. The first
secret signs; every secret verifies, so a secret can be rotated without breaking bounces of
mail already sent. A timestamp is accepted for MAX_AGE_DAYS days.

Pure functions and a small class; no I/O. ``SrsError`` says why an address cannot be handled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Sequence

BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
HASH_LENGTH = 4
MAX_AGE_DAYS = 21
DAY = 86400

# Patterns on the local part (srs.md §6.4), case-insensitive, anchored at the start.
SRS0_STRICT = re.compile(r"SRS0[-+=]([^=]+)=([^=]+)=([^=]+)=(.+)", re.IGNORECASE | re.DOTALL)
SRS0_OPAQUE = re.compile(r"SRS0([-+=].+)", re.IGNORECASE | re.DOTALL)
SRS1 = re.compile(r"SRS1[-+=]([^=]+)=([^=]+)=([-+=].+)", re.IGNORECASE | re.DOTALL)


class SrsError(ValueError):
    pass


def keyed_hash(secret: bytes, text: str) -> str:
    """The full base64 HMAC-SHA1 of ``text`` lowercased; callers keep the first characters."""
    digest = hmac.new(secret, text.lower().encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def timestamp(unix_time: float) -> str:
    """The day count modulo 1024 as two base32 characters."""
    day = int(unix_time // DAY)
    return BASE32[(day >> 5) & 31] + BASE32[day & 31]


def valid_timestamps(unix_time: float, max_age_days: int = MAX_AGE_DAYS) -> frozenset[str]:
    """Today's timestamp and those of the days before it, ``max_age_days`` in all."""
    return frozenset(timestamp(unix_time - back * DAY) for back in range(max_age_days))


def split_address(address: str) -> tuple[str, str]:
    local, at, host = address.partition("@")
    if not at or "@" in host or not local or not host:
        raise SrsError(f"not an address with one @: {address!r}")
    return local, host


def is_srs_address(address: str) -> bool:
    """The strict test (SRS0 with all four fields, or SRS1) on the whole address."""
    return SRS0_STRICT.fullmatch(address) is not None or SRS1.fullmatch(address) is not None


class Srs:
    """Forward and reverse under a list of secrets (the first signs)."""

    def __init__(self, secrets: Sequence[str], max_age_days: int = MAX_AGE_DAYS):
        if not secrets or not all(secrets):
            raise SrsError("SRS needs at least one non-empty secret")
        self.secrets = tuple(secret.encode("utf-8") for secret in secrets)
        self.max_age_days = max_age_days
        self._day = -1
        self._valid: frozenset[str] = frozenset()

    def sign(self, text: str) -> str:
        return keyed_hash(self.secrets[0], text)[:HASH_LENGTH]

    def verifies(self, given: str, text: str) -> bool:
        """Does ``given`` match the start of the hash of ``text`` under one of the secrets?
        Ignoring case: Postfix may hand the address over lowercased."""
        if not given:
            return False
        wanted = given.lower()
        for secret in self.secrets:
            expected = keyed_hash(secret, text)[: len(given)].lower()
            if hmac.compare_digest(expected.encode(), wanted.encode()):
                return True
        return False

    def timestamp_valid(self, given: str, now: float) -> bool:
        day = int(now // DAY)
        if day != self._day:  # rebuilt once a day
            self._day, self._valid = day, valid_timestamps(now, self.max_age_days)
        return given.upper() in self._valid

    def forward(self, address: str, alias_host: str, now: float) -> str:
        local, host = split_address(address)
        wrapped = SRS1.match(local)
        if wrapped:
            _, hop_host, opaque = wrapped.groups()
            return f"SRS1={self.sign(hop_host + opaque)}={hop_host}={opaque}@{alias_host}"
        first_hop = SRS0_OPAQUE.match(local)
        if first_hop:
            opaque = first_hop.group(1)
            return f"SRS1={self.sign(host + opaque)}={host}={opaque}@{alias_host}"
        stamp = timestamp(now)
        return f"SRS0={self.sign(stamp + host + local)}={stamp}={host}={local}@{alias_host}"

    def reverse(self, address: str, now: float) -> str:
        local, _ = split_address(address)
        wrapped = SRS1.match(local)
        if wrapped:
            given, hop_host, opaque = wrapped.groups()
            if not self.verifies(given, hop_host + opaque):
                raise SrsError("hash does not verify")
            return f"SRS0{opaque}@{hop_host}"
        first_hop = SRS0_STRICT.match(local)
        if first_hop:
            given, stamp, host, original = first_hop.groups()
            if not self.verifies(given, stamp + host + original):
                raise SrsError("hash does not verify")
            if not self.timestamp_valid(stamp, now):
                raise SrsError("timestamp out of date")
            return f"{original}@{host}"
        raise SrsError("unrecognized SRS address")
