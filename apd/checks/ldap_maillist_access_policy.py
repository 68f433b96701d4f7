"""ldap_maillist_access_policy: who may send to an LDAP ``mailList`` (plugins.md, ldap.md §3.6).

The recipient entry is found by the recipient as given, then (apd) without its address
extension, then (apd) through its alias domain: iRedAPD looks up the recipient as given only,
so ``list+tag@domain`` or ``list@alias-domain``, both delivered to the list, passed unchecked.
Members are searched by the list's own ``mail`` value in its own domain, so a list addressed
by a ``shadowAddress`` or an alias domain has the same members. Decisions are pure functions
of ``apd.access_policy``.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

from apd import replies
from apd.access_policy import (
    DOMAIN,
    MEMBERS_AND_MODERATORS_ONLY,
    MEMBERS_ONLY,
    MODERATORS_ONLY,
    PUBLIC,
    SUBDOMAIN,
    Sender,
    ldap_domain_allows,
    ldap_listed,
    ldap_moderators_allow,
    ldap_subdomain_allows,
    moderator_expansion,
    normalise_policy,
)
from apd.address import domain_of, local_part
from apd.checks.base import Check

log = logging.getLogger(__name__)

# iRedAPD's RECIPIENT_SEARCH_ATTRLIST plus objectClass, and mail for the list's own address.
RECIPIENT_ATTRS = (
    "objectClass",
    "mail",
    "accountStatus",
    "listAllowedUser",
    "accessPolicy",
    "enabledService",
    "listModerator",
    "listOwner",
)


def values(entry: dict[str, list[str]], name: str) -> list[str]:
    """An attribute's values by case-insensitive name (servers echo the requested spelling)."""
    for key, found in entry.items():
        if key.lower() == name.lower():
            return found
    return []


def lowered(entry: dict[str, list[str]], *names: str) -> set[str]:
    return {v.lower() for name in names for v in values(entry, name)}


class LdapMaillistAccessPolicy(Check):
    name = "ldap_maillist_access_policy"
    backends = frozenset({"ldap"})

    def check(self, request, ctx):
        if not self.applies:
            return None
        recipient = request.recipient
        if not recipient or request.sasl_username == recipient:
            return None  # step 1: the list itself sending
        entry = self._list_entry(request, ctx)
        if entry is None or "mailList" not in values(entry, "objectClass"):
            return None
        if values(entry, "accountStatus") != ["active"]:
            return replies.REJECT
        policy = normalise_policy((values(entry, "accessPolicy") or [""])[0])
        if policy == PUBLIC:
            return None
        if "mlmmj" in lowered(entry, "enabledService") and policy in (MEMBERS_ONLY, MODERATORS_ONLY):
            return None  # mlmmj enforces these itself
        accounts = ctx.store.accounts
        valid = accounts.primary_and_alias_domains(request.recipient_domain)
        if not valid:
            return None  # iRedAPD fails here (None), which is DUNNO
        sender = Sender(request.sender_without_ext.lower(), request.sender_domain.lower())
        if ldap_listed(sender, lowered(entry, "listModerator", "listOwner"), lowered(entry, "listAllowedUser")):
            return None
        list_address = (values(entry, "mail") or [recipient])[0].lower()
        if self._allows(policy, sender, valid, list_address, entry, request.sasl_username, accounts):
            return None
        log.info("Sender is not allowed by the access policy %s of mailing list %s.", policy, list_address)
        return replies.REJECT_NOT_AUTHORIZED

    def _list_entry(self, request, ctx) -> dict[str, list[str]] | None:
        for address in self._recipient_forms(request, ctx):
            dn, entry = ctx.account_entry(address, RECIPIENT_ATTRS)
            if dn is not None:
                return entry
        return None

    @staticmethod
    def _recipient_forms(request, ctx) -> Iterator[str]:
        """The recipient as given, without its extension, then in its alias domain's target
        (looked up only when the earlier forms found nothing)."""
        given = request.recipient.lower()
        yield given
        bare = request.recipient_without_ext.lower()
        if bare != given:
            yield bare
        target = ctx.alias_target(request.recipient_domain)
        if target:
            yield f"{local_part(bare)}@{target}"

    @staticmethod
    def _allows(
        policy: str,
        sender: Sender,
        valid: list[str],
        list_address: str,
        entry: dict[str, list[str]],
        sasl_username: str,
        accounts: Any,
    ) -> bool:
        list_domain = domain_of(list_address)
        if policy == DOMAIN:
            return ldap_domain_allows(sender, valid)
        if policy == SUBDOMAIN:
            return ldap_subdomain_allows(sender, valid)
        if policy == MEMBERS_ONLY:
            members = accounts.list_members(list_address, list_domain)
            return members is None or sender.address in members
        if policy == MEMBERS_AND_MODERATORS_ONLY:
            allowed = accounts.list_members_and_moderators(list_address, list_domain)
            return allowed is None or sender.address in allowed
        if policy == MODERATORS_ONLY:
            if not sasl_username:
                return False
            plan = moderator_expansion(sorted(lowered(entry, "listAllowedUser")), list_domain)
            expanded = set(plan.kept)
            if plan.users:
                expanded.update(accounts.shadow_addresses_of(plan.users, list_domain))
            if plan.domains:
                expanded.update(accounts.domain_alias_names(plan.domains))
            return ldap_moderators_allow(sender, expanded)
        return True  # a policy iRedAPD does not know
