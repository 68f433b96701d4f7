"""The check interface: one subclass per module in apd/checks/ (the iRedAPD plugin name)."""

from __future__ import annotations

from typing import Any, ClassVar

from apd.context import RequestContext
from apd.protocol import PolicyRequest


class Check:
    """A policy check.

    ``check`` returns an action string or None. A result that does not start with
    ``DUNNO`` ends the chain (iRedAPD's rule); None or ``DUNNO...`` lets the next check run.
    Subclasses fetch facts in ``check`` and keep the decision itself in pure functions.
    """

    name: ClassVar[str] = ""
    states: ClassVar[frozenset[str]] = frozenset({"RCPT"})

    def __init__(self, settings: Any, store: Any):
        self.settings = settings
        self.store = store

    def check(self, request: PolicyRequest, ctx: RequestContext) -> str | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the check holds (caches, resolvers) when a worker stops."""
