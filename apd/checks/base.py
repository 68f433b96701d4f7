"""The check interface: one subclass per module in apd/checks/ (the iRedAPD plugin name)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from apd.context import RequestContext
from apd.protocol import PolicyRequest

SQL_BACKENDS = frozenset({"sqlite", "mysql", "pgsql"})


class Check:
    """A policy check.

    ``check`` returns an action string or None. A result that does not start with
    ``DUNNO`` ends the chain (iRedAPD's rule); None or ``DUNNO...`` lets the next check run.
    Subclasses fetch facts in ``check`` and keep the decision itself in pure functions.
    """

    name: ClassVar[str] = ""
    states: ClassVar[frozenset[str]] = frozenset({"RCPT"})
    # The account backends whose tables or entries the check reads (the sql_* and ldap_* checks).
    # Elsewhere it says so once and answers nothing (iRedAPD fails on every request instead).
    backends: ClassVar[frozenset[str] | None] = None

    def __init__(self, settings: Any, store: Any):
        self.settings = settings
        self.store = store
        self.applies = self.backends is None or settings.backend in self.backends
        if not self.applies:
            needed = "an SQL backend" if self.backends == SQL_BACKENDS else " or ".join(sorted(self.backends or ()))
            logging.getLogger(type(self).__module__).warning(
                "check %s needs %s (backend is %r); it answers DUNNO", self.name, needed, settings.backend
            )

    def check(self, request: PolicyRequest, ctx: RequestContext) -> str | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the check holds (caches, resolvers) when a worker stops."""
