"""ldap_force_change_password: refuse to relay for a login whose password is too old
(plugins.md, ldap.md §3.7; the decisions are in apd/password_age.py).

One search per authenticated request: the login's entry (by ``mail`` or ``shadowAddress``)
with its ``shadowLastChange``, days since 1970-01-01; a missing value counts as 0, so an
entry without it is rejected, as in iRedAPD. It runs at priority 0 unless
``PLUGIN_PRIORITIES`` names it (apd/checks/__init__.py).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from apd.checks.base import Check
from apd.password_age import PasswordRules, ldap_expired, never_expires

log = logging.getLogger(__name__)

# iRedAPD's SENDER_SEARCH_ATTRLIST for this plugin, plus objectClass
SENDER_ATTRS = ("objectClass", "shadowLastChange")


def first_value(entry: dict[str, list[str]], name: str) -> str | None:
    """The first value of an attribute, by case-insensitive name."""
    for key, found in entry.items():
        if key.lower() == name.lower() and found:
            return found[0]
    return None


class LdapForceChangePassword(Check):
    name = "ldap_force_change_password"
    backends = frozenset({"ldap"})
    states = frozenset({"RCPT"})

    def __init__(self, settings: Any, store: Any):
        super().__init__(settings, store)
        self.rules = PasswordRules.from_settings(settings)

    def check(self, request, ctx):
        login = request.sasl_username
        if not self.applies or not login:
            return None
        # iRedAPD looks the entry up first; an exempt login answers DUNNO either way, without a search.
        if never_expires(self.rules, login, request.sasl_username_domain):
            return None
        dn, entry = ctx.account_entry(login, SENDER_ATTRS)
        if dn is None:
            return None
        value = first_value(entry, "shadowLastChange")
        today = datetime.date.fromtimestamp(ctx.now)
        expired = ldap_expired(value, today, self.rules.days)
        if expired is None:
            log.error("shadowLastChange of %s is not a number of days: %s", login, value)
            return None
        if not expired:
            return None
        log.info(
            "Password of %s last changed on day %s, %s days or more ago: rejected.", login, value or 0, self.rules.days
        )
        return self.rules.reply
