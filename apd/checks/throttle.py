"""throttle: rate limits per sender and per recipient, at END-OF-MESSAGE (plugins.md §throttle).

The decisions are pure (apd/throttle/entry.py: who is throttled; apd/throttle/rules.py: which
rows claim which rule, what a counter refuses). This module only fetches and counts:

1. the alias targets of the request's domains (RequestContext, one lookup shared with other
   checks), then ONE statement for the throttle rows of the sender's and the recipient's calls;
2. per call, when max_msgs / max_quota are claimed: the atomic counting of
   apd/store/counters.py (usually one UPDATE). A message refused by one rule of a call moves
   none of that call's counters; as in iRedAPD, the sender's counters stay counted when the
   recipient's call then rejects.

A rejection by max_msgs or max_quota hands a ``QuotaEvent`` to the quota notices
(apd/throttle/notice.py), which claim and send at most one notice per window.
"""

from __future__ import annotations

import logging

from apd.checks.base import Check
from apd.throttle.entry import Bypass, Call, calls, message_numbers
from apd.throttle.notice import QuotaEvent, quota_notices
from apd.throttle.rules import COUNTED, Setting, SettingError, Verdict, candidates, judge

log = logging.getLogger(__name__)  # apd's log handlers escape control characters of request values


class Throttle(Check):
    name = "throttle"
    states = frozenset({"END-OF-MESSAGE"})

    def __init__(self, settings, store):
        super().__init__(settings, store)
        self.bypass = Bypass(
            settings.THROTTLE_BYPASS_SAME_DOMAIN,
            settings.THROTTLE_BYPASS_MYNETWORKS,
            settings.THROTTLE_BYPASS_LOCAL_RECIPIENT,
        )
        self.all_wildcards = settings.ENABLE_ALL_WILDCARD_IP
        self.notices = quota_notices(settings, store.iredapd)

    def check(self, request, ctx):
        attrs = request.attrs
        try:
            size, rc = message_numbers(attrs.get("size", ""), attrs.get("recipient_count"))
        except ValueError as exc:
            log.debug("throttle: %s", exc)
            return None  # iRedAPD fails on these, which counts as DUNNO
        client = request.client_address
        todo = calls(
            request.sender_without_ext,
            request.sender_domain,
            request.sasl_username,
            request.sasl_username_domain,
            request.recipient_without_ext,
            request.recipient_domain,
            client,
            self.bypass,
            lambda: ctx.client_trusted,
        )
        if not todo:
            return None
        planned: list[tuple[Call, list[str] | SettingError]] = []
        for call in todo:
            try:
                accounts = candidates(call.user, client, self.alias_target(ctx, call.user), self.all_wildcards)
            except SettingError as exc:
                planned.append((call, exc))  # fails when its turn comes, after the calls before it
                break
            planned.append((call, accounts))
        rows = self.read_rows(ctx, planned)
        now = int(ctx.now)
        for call, accounts in planned:
            try:
                if isinstance(accounts, SettingError):
                    raise accounts
                verdict = judge(
                    rows, call.kind, accounts, call.user, client, rc, size, now, ctx.store.throttle_counters
                )
            except SettingError as exc:
                log.warning("[%s] throttle: %s (no throttling)", client, exc)
                return None
            if verdict.reply:
                self.rejected(call, client, rc, size, verdict, now)
                return verdict.reply
        return None

    @staticmethod
    def read_rows(ctx, planned: list[tuple[Call, list[str] | SettingError]]) -> list[Setting]:
        """The throttle rows of every call in one statement."""
        kinds = [call.kind for call, accounts in planned if isinstance(accounts, list)]
        if not kinds:
            return []
        accounts = [a for _, found in planned if isinstance(found, list) for a in found]
        return ctx.store.throttle.matching(kinds, accounts)

    @staticmethod
    def alias_target(ctx, user: str) -> str | None:
        domain = user.split("@", 1)[1] if "@" in user else ""
        return ctx.alias_target(domain) if domain else None

    def rejected(self, call: Call, client: str, rc: int, size: int, verdict: Verdict, now: int) -> None:
        claim = next(c for c in verdict.claims if c.rule == verdict.rule)
        log.info(
            "[%s] [%s] Quota exceeded: %s throttle for %s=%d (recipient_count=%d, size=%d, setting id=%d/account=%s)",
            client,
            call.user,
            call.kind,
            verdict.rule,
            claim.value,
            rc,
            size,
            claim.tid,
            claim.account,
        )
        counted = verdict.counted
        if verdict.rule in COUNTED and counted is not None and counted.refused is not None:
            # the quota notice: claimed atomically, sent off the answer's path
            self.notices.quota_exceeded(
                QuotaEvent(
                    call.user,
                    client,
                    call.kind,
                    verdict.rule,
                    claim.value,
                    verdict.claims,
                    counted.refused.tid,
                    counted.refused.key,
                    now,
                    counted.refused.period,
                )
            )
