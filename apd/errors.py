"""Exceptions shared across apd."""

from apd.protocol import ProtocolError
from apd.settings import ConfigError


class StoreError(Exception):
    """A database or directory answered with an error that is not an outage."""


class StoreUnavailable(StoreError):
    """A database or directory cannot be reached (down, timed out, backing off)."""


class DuplicateKey(StoreError):
    """An insert hit a unique key; callers that race on purpose ignore it."""


class Conflict(StoreError):
    """A deadlock or serialization failure undid a transaction; callers may run it again."""


__all__ = ["ConfigError", "Conflict", "DuplicateKey", "ProtocolError", "StoreError", "StoreUnavailable"]
