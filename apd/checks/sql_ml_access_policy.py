"""sql_ml_access_policy: who may send to an mlmmj mailing list (vmail ``maillists``; plugins.md).

mlmmj enforces the member and moderator policies itself; this check enforces ``domain`` and
``subdomain``, letting the list's moderators and owners through. Its facts come from the same
statement as sql_alias_access_policy's (the request context); the decision is
``apd.access_policy.ml_policy_allows``.
"""

from __future__ import annotations

import logging

from apd import replies
from apd.access_policy import listed_for, ml_accounts, ml_policy_allows, resolve
from apd.checks.base import SQL_BACKENDS, Check

log = logging.getLogger(__name__)


class SqlMlAccessPolicy(Check):
    name = "sql_ml_access_policy"
    backends = SQL_BACKENDS

    def check(self, request, ctx):
        if not self.applies or not request.recipient:
            return None
        facts = ctx.access_policy_facts()
        real = resolve(facts.rows.list_policies, facts.recipient, facts.sender, facts.sender_target)
        if real is None:
            return None
        accounts = ml_accounts(facts.recipient, real)
        listed = listed_for(facts.rows.moderators, accounts) | listed_for(facts.rows.owners, accounts)
        if ml_policy_allows(facts.sender, facts.recipient, real, facts.sender.address in listed):
            return None
        log.info("Sender is not allowed by the access policy %s of mailing list %s.", real.policy, real.address)
        return replies.REJECT_NOT_AUTHORIZED
