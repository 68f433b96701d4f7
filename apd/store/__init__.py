"""The repository every check talks to: ``open_store(settings)`` gives a ``Store``.

A Store holds one connection per database (vmail, amavisd, iredapd) for this worker and
the repositories built on them. Checks never branch on the backend: dialect differences
sit in the Dialect classes, account lookups behind SqlAccounts / LdapAccounts.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from apd.store.base import Database


class Store:
    def __init__(self, vmail: Database | None, amavisd: Database | None, iredapd: Database | None, accounts: Any):
        self.vmail = vmail
        self.amavisd = amavisd
        self.iredapd = iredapd
        self.accounts = accounts

    @cached_property
    def greylisting_whitelists(self):
        from apd.store.greylisting_whitelists import GreylistingWhitelists

        return GreylistingWhitelists(self.iredapd)

    @cached_property
    def sessions(self):
        from apd.store.sessions import SessionLog

        return SessionLog(self.iredapd)

    @cached_property
    def greylisting(self):
        from apd.store.greylisting import GreylistingStore

        return GreylistingStore(self.iredapd)

    @cached_property
    def wblist(self):
        """amavisd white/blacklists (apd/store/wblist.py)."""
        from apd.store.wblist import AmavisdLists

        return AmavisdLists(self.amavisd)

    @cached_property
    def rdns(self):
        """iredapd.wblist_rdns (apd/store/wblist.py)."""
        from apd.store.wblist import RdnsList

        return RdnsList(self.iredapd)

    @cached_property
    def throttle(self):
        """throttle settings rows for the check (apd/store/throttle.py)."""
        from apd.store.throttle import ThrottleRules

        return ThrottleRules(self.iredapd)

    @cached_property
    def throttle_counters(self):
        from apd.store.counters import ThrottleCounters

        return ThrottleCounters(self.iredapd)

    @cached_property
    def srs_exclusions(self):
        """iredapd.srs_exclude_domains (apd/store/srs.py)."""
        from apd.store.srs import SrsExclusions

        return SrsExclusions(self.iredapd)

    @cached_property
    def senderscore(self):
        """iredapd.senderscore_cache (apd/store/senderscore.py)."""
        from apd.store.senderscore import SenderscoreCache

        return SenderscoreCache(self.iredapd)

    def databases(self) -> list[Database]:
        seen: list[Database] = []
        for db in (self.vmail, self.amavisd, self.iredapd):
            if db is not None and all(db is not other for other in seen):
                seen.append(db)
        return seen

    def close(self) -> None:
        for db in self.databases():
            db.close()
        close = getattr(self.accounts, "close", None)
        if close:
            close()


def open_store(settings: Any) -> Store:
    """Build the store for ``settings.backend``; nothing connects until first use."""
    backend = settings.backend
    if backend == "sqlite":
        from apd.store import sqlite
        from apd.store.accounts import SqlAccounts

        db = sqlite.open_database(settings.sqlite_db_path or sqlite.default_path(), settings.SQL_QUERY_TIMEOUT)
        return Store(db, db, db, SqlAccounts(db))
    if backend in ("mysql", "pgsql", "ldap"):
        from apd.store.servers import open_server_store

        return open_server_store(settings)
    raise ValueError(f"unknown backend {backend!r}")


def resolve_paths(settings: Any) -> Any:
    """Fix path defaults that depend on who we are, before privileges are dropped."""
    if settings.backend == "sqlite" and not settings.sqlite_db_path:
        from apd.store import sqlite

        return settings.replace(sqlite_db_path=sqlite.default_path(settings.run_as_user))
    return settings


def init_db(settings: Any) -> list[str]:
    """Create apd's tables where missing (``apd --init-db``); returns what was done."""
    if settings.backend == "sqlite":
        from apd.store import sqlite

        store = open_store(settings)
        seeded = sqlite.initialise(store.iredapd)
        store.close()
        done = [f"SQLite database ready: {settings.sqlite_db_path or sqlite.default_path()}"]
        if seeded:
            done.append(f"greylisting_whitelist_domains: {seeded} default domains added")
        return done
    from apd.store.servers import init_server_db

    return init_server_db(settings)
