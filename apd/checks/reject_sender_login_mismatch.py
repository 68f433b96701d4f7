"""reject_sender_login_mismatch: forged local senders and logins sending as someone else
(plugins.md "reject_sender_login_mismatch"; the decisions are in apd/login_mismatch.py).

Facts come through the request context, so the checks sharing them (alias domains, local
domains, SPF) pay for each once per request: at most one domain lookup and one SPF evaluation
without SMTP AUTH; with it, the alias target (usually already fetched) and one statement or
search for the sender's relations to the login, then mlmmjadmin only for an mlmmj list.
"""

from __future__ import annotations

import logging
from typing import Any

from apd.checks.base import Check
from apd.login_mismatch import (
    ASK_MLMMJ,
    LOOKUP,
    MismatchSettings,
    counts_local_by_name,
    forged_sender_exempt,
    forged_verdict,
    login_verdict,
    mlmmj_verdict,
    real_sender,
    relations_verdict,
    same_user_in_alias_domain,
)

log = logging.getLogger(__name__)


class RejectSenderLoginMismatch(Check):
    name = "reject_sender_login_mismatch"
    states = frozenset({"RCPT"})

    def __init__(self, settings: Any, store: Any):
        super().__init__(settings, store)
        self.rules = MismatchSettings.from_settings(settings)
        self._spf: Any = None  # SpfEvaluator and MlmmjAdmin: made on first use, kept per worker
        self._mlmmj: Any = None

    def check(self, request, ctx):
        if request.sasl_username:
            return self.authenticated(request, ctx)
        return self.unauthenticated(request, ctx)

    def unauthenticated(self, request, ctx) -> str | None:
        sender, sender_domain = request.sender_without_ext, request.sender_domain
        if forged_sender_exempt(self.rules, sender, sender_domain, ctx.client_trusted):
            return None
        local = counts_local_by_name(sender_domain, request.recipient_domain)
        if local is None:
            local = ctx.is_local_domain(sender_domain, include_alias=True, include_backupmx=False)
        spf_allowed = local and self.rules.check_spf and ctx.spf_allows(sender_domain, self.spf_allows)
        if spf_allowed:
            # %r: the sender domain is the client's text, its control characters are escaped
            log.info(
                "[%s] Forged sender allowed: the SPF of %r lists the client.", request.client_address, sender_domain
            )
        return forged_verdict(local, spf_allowed)

    def authenticated(self, request, ctx) -> str | None:
        rules = self.rules
        sender, sender_domain = request.sender_without_ext, request.sender_domain
        login, login_domain = request.sasl_username, request.sasl_username_domain
        verdict = login_verdict(rules, sender, sender_domain, login, login_domain)
        if verdict != LOOKUP:
            return verdict
        target = ctx.alias_target(sender_domain) if rules.strictly and sender_domain != login_domain else None
        real = real_sender(rules, sender, sender_domain, login_domain, target)
        if same_user_in_alias_domain(rules, sender, real, login):
            return None
        relations = ctx.sender_relations(sender, real, login, rules.strictly, rules.list_member)
        verdict = relations_verdict(rules, relations)
        if verdict == ASK_MLMMJ:
            verdict = mlmmj_verdict(self.mlmmj().has_subscriber(real, login))
        return verdict

    def spf_allows(self, client: str, domain: str) -> bool:
        if self._spf is None:
            from apd.spf import SpfEvaluator

            self._spf = SpfEvaluator(self.settings)
        return self._spf.is_allowed(client, domain)

    def mlmmj(self) -> Any:
        if self._mlmmj is None:
            from apd.mlmmjadmin import MlmmjAdmin

            self._mlmmj = MlmmjAdmin(self.settings)
        return self._mlmmj

    def close(self) -> None:
        close = getattr(self._spf, "close", None)
        if close:
            close()
