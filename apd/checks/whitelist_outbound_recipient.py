"""whitelist_outbound_recipient: whitelist, for greylisting, the outside recipient of a local
user's single-recipient message (plugins.md; the decisions are in apd/outbound_whitelist.py).

END-OF-MESSAGE only; the answer is always DUNNO. Per message: the locality of the recipient
domain (memoised in the request context) and one INSERT per row (a row that exists is left
as it is). A database failure is logged and changes no answer: the mail is not held up
because a whitelist entry could not be written.
"""

from __future__ import annotations

import logging
from typing import Any

from apd.address import is_domain
from apd.checks.base import Check
from apd.errors import StoreError
from apd.outbound_whitelist import OutboundRules, needs_locality, valid_row, whitelisting

log = logging.getLogger(__name__)


class WhitelistOutboundRecipient(Check):
    name = "whitelist_outbound_recipient"
    states = frozenset({"END-OF-MESSAGE"})

    def __init__(self, settings: Any, store: Any):
        super().__init__(settings, store)
        self.rules = OutboundRules.from_settings(settings)

    def check(self, request, ctx):
        login, login_domain = request.sasl_username, request.sasl_username_domain
        recipient, recipient_domain = request.recipient, request.recipient_domain
        if not needs_locality(self.rules, login, login_domain, recipient, recipient_domain):
            return None
        try:
            if ctx.is_local_domain(recipient_domain, include_alias=True, include_backupmx=True):
                return None
            self.write(whitelisting(self.rules, login, login_domain, recipient, recipient_domain))
        except StoreError as exc:
            log.warning("whitelist_outbound_recipient: nothing whitelisted: %s", exc)
        return None

    def write(self, plan) -> None:
        greylisting = self.store.greylisting
        for account, sender, comment in plan.rows:
            if not valid_row(account, sender):
                log.error("whitelist_outbound_recipient: invalid whitelist %s -> %s, not written", sender, account)
            elif greylisting.add_whitelist(account, sender, comment):
                log.info("Whitelisted for greylisting: %s -> %s", sender, account)
        if plan.domain:
            if not is_domain(plan.domain):
                log.error("whitelist_outbound_recipient: invalid domain %s, not whitelisted", plan.domain)
            elif greylisting.add_whitelist_domain(plan.domain):
                log.info("Whitelisted domain for greylisting (after the SPF tool runs): %s", plan.domain)
