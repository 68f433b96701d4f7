"""senderscore: refuse IPv4 clients with a poor reputation at score.senderscore.com
(plugins.md "senderscore"; the decisions are in apd/senderscore.py).

Authenticated and trusted clients are never looked up. A score is cached per client address
in the iredapd database (``senderscore_cache``), so a client costs one statement per request
and one DNS query per ``SENDERSCORE_CACHE_DAYS``. DNS goes to ``DNS_NAMESERVERS`` through the
SPF module's resolver settings, each query bounded by ``DNS_QUERY_TIMEOUT``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from apd.checks.base import Check
from apd.errors import StoreError
from apd.senderscore import cache_fresh, from_answer, log_text, query_name, valid_score, verdict

log = logging.getLogger(__name__)

# (name) -> the A records as text, () for NoAnswer/NXDOMAIN, None for a failure
ScoreQuery = Callable[[str], "Sequence[str] | None"]


class Senderscore(Check):
    name = "senderscore"
    states = frozenset({"RCPT"})

    def __init__(self, settings: Any, store: Any, query: ScoreQuery | None = None):
        super().__init__(settings, store)
        self.reject_score = int(settings.SENDERSCORE_REJECT_SCORE)
        self.cache_days = int(settings.SENDERSCORE_CACHE_DAYS)
        self._query = query
        self._dns: Any = None  # apd.spf.DnsQuery, made on first use and kept per worker

    def check(self, request, ctx):
        if request.sasl_username:
            return None
        client = request.client_address
        name = query_name(client)
        if name is None or ctx.client_trusted:
            return None
        cached = self.store.senderscore.get(client)
        from_cache = cached is not None and cache_fresh(cached[1], ctx.now, self.cache_days)
        if from_cache:
            score, save = cached[0], False
        else:
            lookup = from_answer(self.query(name))
            score, save = lookup.score, lookup.cache
        if not valid_score(score):
            log.error("[%s] senderscore: invalid score %s", client, score)
            return None
        if save:
            try:
                self.store.senderscore.save(client, score, int(ctx.now))
            except StoreError as exc:  # the answer stands; the next request asks DNS again
                log.warning("[%s] senderscore: cannot cache the score: %s", client, exc)
        reply = verdict(score, self.reject_score, client)
        domain = request.sasl_username_domain or request.sender_domain
        log.info("[%s] %s", client, log_text(domain, score, from_cache, reply is not None, self.reject_score))
        return reply

    def query(self, name: str) -> Sequence[str] | None:
        if self._query is not None:
            return self._query(name)
        from apd.spf import DnsFailure, DnsQuery

        if self._dns is None:
            self._dns = DnsQuery(self.settings.DNS_NAMESERVERS, float(self.settings.DNS_QUERY_TIMEOUT))
        try:
            return self._dns(name, "A", self._dns.timeout).records
        except DnsFailure as exc:
            log.warning("senderscore: DNS lookup failed: %s", exc)
            return None
