"""Shared bits of the white/blacklist tests: an SQLite store, policy requests, the check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apd import settings as settings_module
from apd.checks.amavisd_wblist import AmavisdWblist
from apd.context import RequestContext
from apd.netmatch import TrustedClients
from apd.protocol import PolicyRequest
from apd.store import Store, open_store, sqlite

SHARED_IREDMAIL = Path(__file__).resolve().parents[2] / ".." / "shared" / "iredmail"


def sqlite_settings(path: Path, **changes: Any):
    return settings_module.defaults().replace(backend="sqlite", sqlite_db_path=str(path), **changes)


def sqlite_store(path: Path) -> tuple[Any, Store]:
    settings = sqlite_settings(path)
    store = open_store(settings)
    sqlite.initialise(store.iredapd)
    return settings, store


def rcpt_request(**attrs: str) -> PolicyRequest:
    base = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "client_address": "198.51.100.7",
        "reverse_client_name": "mail.example.net",
        "sender": "friend@x.com",
        "recipient": "user@local.com",
        "sasl_username": "",
    }
    base.update(attrs)
    return PolicyRequest.build(base)


def ask(check: Any, store: Store, **attrs: str) -> str | None:
    request = rcpt_request(**attrs)
    return check.check(request, RequestContext(request, store, TrustedClients([])))


def wblist_check(settings: Any, store: Store, **changes: Any) -> AmavisdWblist:
    return AmavisdWblist(settings.replace(**changes) if changes else settings, store)
