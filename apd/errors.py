"""Exceptions shared across apd."""

from apd.protocol import ProtocolError
from apd.settings import ConfigError


class StoreError(Exception):
    """A database or directory answered with an error that is not an outage."""


class StoreUnavailable(StoreError):
    """A database or directory cannot be reached (down, timed out, backing off)."""


class DuplicateKey(StoreError):
    """An insert hit a unique key; callers that race on purpose ignore it."""


__all__ = ["ConfigError", "DuplicateKey", "ProtocolError", "StoreError", "StoreUnavailable"]
