"""sql_force_change_password: refuse to relay for a login whose password is too old
(plugins.md; the decisions are in apd/password_age.py).

One statement per authenticated request: the login's ``mailbox.passwordlastchange``. It runs
at priority 0 unless ``PLUGIN_PRIORITIES`` names it (iRedAPD's priority key does not match
the file name; apd/checks/__init__.py).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from apd.checks.base import SQL_BACKENDS, Check
from apd.password_age import PasswordRules, never_expires, sql_expired, sql_last_change

log = logging.getLogger(__name__)

NOT_LOCAL = "DUNNO Not a local user"


class SqlForceChangePassword(Check):
    name = "sql_force_change_password"
    backends = SQL_BACKENDS
    states = frozenset({"RCPT"})

    def __init__(self, settings: Any, store: Any):
        super().__init__(settings, store)
        self.rules = PasswordRules.from_settings(settings)

    def check(self, request, ctx):
        if not self.applies:
            return None
        login = request.sasl_username
        if not login:
            return NOT_LOCAL
        if never_expires(self.rules, login, request.sasl_username_domain):
            return None
        found, value = self.store.accounts.password_last_change(login)
        if not found:
            return None
        last_change = sql_last_change(value)
        if not sql_expired(last_change, datetime.datetime.fromtimestamp(ctx.now), self.rules.days):
            return None
        log.info("Password of %s last changed %s, %s days or more ago: rejected.", login, last_change, self.rules.days)
        return self.rules.reply
