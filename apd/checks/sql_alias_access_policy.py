"""sql_alias_access_policy: who may send to a mail alias account (vmail ``alias``; plugins.md).

One statement (shared with sql_ml_access_policy through the request context) fetches the
policy of the recipient, or of its alias-domain target, with the sender's rows among the
members and moderators; the decision is ``apd.access_policy.alias_policy_allows``.
"""

from __future__ import annotations

import logging

from apd import replies
from apd.access_policy import PUBLIC, alias_policy_allows, listed_for, resolve
from apd.checks.base import SQL_BACKENDS, Check

log = logging.getLogger(__name__)


class SqlAliasAccessPolicy(Check):
    name = "sql_alias_access_policy"
    backends = SQL_BACKENDS

    def check(self, request, ctx):
        if not self.applies or not request.recipient:
            return None
        facts = ctx.access_policy_facts()
        real = resolve(facts.rows.alias_policies, facts.recipient, facts.sender, facts.sender_target)
        if real is None or real.policy == PUBLIC:
            return None
        members = listed_for(facts.rows.members, [real.address])
        moderators = listed_for(facts.rows.moderators, [real.address])
        if alias_policy_allows(facts.sender, facts.recipient, real, members, moderators):
            return None
        log.info("Sender is not allowed by the access policy %s of alias %s.", real.policy, real.address)
        return replies.REJECT_NOT_AUTHORIZED
