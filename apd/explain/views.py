"""The store as the checks see it during ``apd explain``: the real one, with repositories that
note what they looked up (apd/explain/findings.py words it) and then return it unchanged.

Before greylisting's tracking statement and throttle's counting, the view reads the row it acts
on and states the outcome by the pure rule; then the statement itself runs, inside the sandbox's
transaction that is undone (apd/explain/sandbox.py). Should the two disagree (a live daemon
changed the row in between) the view says so. The daemon's own store is never wrapped.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Callable, Sequence

from apd.checks.greylisting import Timing, next_state
from apd.explain import findings
from apd.store.greylisting import Facts, Times, Tracked
from apd.throttle.rules import Counted, Counter, Setting, first_refusal

Note = Callable[[str], None]
RACED = "(the database's own statement answered otherwise: the row changed meanwhile; its answer is shown)"


class _Delegating:
    def __init__(self, real: Any, note: Note):
        self._real = real
        self._note = note

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class GreylistingView(_Delegating):
    def __init__(self, real: Any, note: Note, timing: Timing):
        super().__init__(real, note)
        self._timing = timing

    def facts(self, rcpts: Sequence[str], senders: Sequence[str], client_keys: Sequence[str], *args, **kwargs) -> Facts:
        facts = self._real.facts(rcpts, senders, client_keys, *args, **kwargs)
        for line in findings.greylisting_facts(facts):
            self._note(line)
        return facts

    def track(
        self, sender: str, recipient: str, client_key: str, sender_domain: str, rcpt_domain: str, times: Times
    ) -> Tracked:
        row = self._real.tracking_row(sender, recipient, client_key)
        new, greylisted = next_state(row, times.now, self._timing)
        self._note(findings.greylisting_tracking((sender, recipient, client_key), row, new, greylisted, times.now))
        tracked = self._real.track(sender, recipient, client_key, sender_domain, rcpt_domain, times)
        if tracked.passed == greylisted:
            self._note(RACED)
        return tracked

    def refresh_passed(self, client_keys: Sequence[str], record_expired: int) -> int:
        changed = self._real.refresh_passed(client_keys, record_expired)
        self._note(
            f"its {changed} passed tracking row(s) would be kept until {findings.when(record_expired)}; no greylisting"
        )
        return changed

    def forget_unpassed(self, client_key: str) -> int:
        deleted = self._real.forget_unpassed(client_key)
        self._note(f"after the pass, {deleted} other unpassed tracking row(s) of {client_key} would be deleted")
        return deleted

    def add_whitelist(self, account: str, sender: str, comment: str = "") -> bool:
        added = self._real.add_whitelist(account, sender, comment)
        if added:
            self._note(f"greylisting whitelist row {sender} -> {account} would be added")
        return added

    def add_whitelist_domain(self, domain: str) -> bool:
        added = self._real.add_whitelist_domain(domain)
        if added:
            self._note(f"greylisting whitelist domain {domain} would be added")
        return added


class ThrottleRulesView(_Delegating):
    def matching(self, kinds: Sequence[str], accounts: Sequence[str]) -> list[Setting]:
        rows = self._real.matching(kinds, accounts)
        for row in rows:
            self._note(findings.throttle_rule(row))
        if not rows:
            self._note(f"throttle rule: none for this message ({', '.join(kinds)})")
        return rows


class CountersView(_Delegating):
    def count(self, counters: Sequence[Counter], rc: int, size: int, now: int) -> Counted:
        rows = self._real.tracked(counters)
        for counter in counters:
            self._note(findings.throttle_counter(counter, rows.get((counter.tid, counter.key)), rc, size, now))
        self._note(findings.throttle_outcome(counters, rows, rc, size, now))
        counted = self._real.count(counters, rc, size, now)
        expected = first_refusal(counters, rows, rc, size, now)
        if (expected is None) != (counted.refused is None):
            self._note(RACED)
        return counted


class WblistView(_Delegating):
    def lookup(self, *args: Any, **kwargs: Any) -> Any:
        found = self._real.lookup(*args, **kwargs)
        for line in findings.wblist_rows(found.rows):
            self._note(line)
        return found


class RdnsView(_Delegating):
    def lookup(self, names: Sequence[str]) -> list[tuple[str, str]]:
        rows = self._real.lookup(names)
        for line in findings.rdns_rows(names, rows):
            self._note(line)
        return rows


class SenderscoreView(_Delegating):
    def get(self, client_address: str) -> tuple[int, int] | None:
        cached = self._real.get(client_address)
        self._note(findings.senderscore_cached(client_address, cached))
        return cached

    def save(self, client_address: str, score: int, now: int) -> None:
        self._real.save(client_address, score, now)
        self._note(f"the score {score} of {client_address} would be cached")


class AccountsView(_Delegating):
    """SQL or LDAP accounts: the lookups the SQL checks and login mismatch make."""

    def is_local_domain(self, domain: str, include_alias: bool = True, include_backupmx: bool = True, **kwargs) -> bool:
        local = self._real.is_local_domain(domain, include_alias, include_backupmx, **kwargs)
        self._note(findings.local_domain(domain, local, include_alias, include_backupmx))
        return local

    def alias_targets(self, domains: Any) -> dict[str, str | None]:
        targets = self._real.alias_targets(domains)
        for line in findings.alias_domains(targets):
            self._note(line)
        return targets

    def sender_relations(
        self, sender: str, list_address: str, sasl_username: str, strictly: bool, list_member: bool
    ) -> Any:
        relations = self._real.sender_relations(sender, list_address, sasl_username, strictly, list_member)
        self._note(findings.sender_relations(sender, list_address, sasl_username, relations))
        return relations

    def password_last_change(self, username: str) -> tuple[bool, Any]:
        found, value = self._real.password_last_change(username)
        self._note(findings.password_changed(username, found, value))
        return found, value

    def get_account(self, address: str, attrs: Sequence[str] | None = None) -> Any:
        dn, entry = self._real.get_account(address, attrs)
        self._note(findings.ldap_entry(address, dn, entry))
        return dn, entry

    def list_members(self, list_address: str, list_domain: str) -> list[str] | None:
        members = self._real.list_members(list_address, list_domain)
        self._note(findings.ldap_list_members(list_address, "members", members))
        return members

    def list_members_and_moderators(self, list_address: str, list_domain: str) -> list[str] | None:
        members = self._real.list_members_and_moderators(list_address, list_domain)
        self._note(findings.ldap_list_members(list_address, "members and moderators", members))
        return members

    def access_policy_rows(self, accounts: Sequence[str], senders: Sequence[str]) -> Any:
        rows = self._real.access_policy_rows(accounts, senders)
        for line in findings.access_policy_rows(rows):
            self._note(line)
        return rows


class StoreView(_Delegating):
    """``Store`` with the noting repositories; everything else is the real store's."""

    def __init__(self, real: Any, note: Note, timing: Timing):
        super().__init__(real, note)
        self._timing = timing

    @cached_property
    def greylisting(self) -> GreylistingView:
        return GreylistingView(self._real.greylisting, self._note, self._timing)

    @cached_property
    def throttle(self) -> ThrottleRulesView:
        return ThrottleRulesView(self._real.throttle, self._note)

    @cached_property
    def throttle_counters(self) -> CountersView:
        return CountersView(self._real.throttle_counters, self._note)

    @cached_property
    def wblist(self) -> WblistView:
        return WblistView(self._real.wblist, self._note)

    @cached_property
    def rdns(self) -> RdnsView:
        return RdnsView(self._real.rdns, self._note)

    @cached_property
    def senderscore(self) -> SenderscoreView:
        return SenderscoreView(self._real.senderscore, self._note)

    @cached_property
    def accounts(self) -> AccountsView:
        return AccountsView(self._real.accounts, self._note)
