"""Who may send to an alias account or a mailing list: the pure decisions shared by
sql_alias_access_policy, sql_ml_access_policy and ldap_maillist_access_policy (plugins.md).

The checks fetch the facts (policy value, matching members, moderators, owners, the domains
involved) and ask the functions here; nothing in this module does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Iterable, Mapping

PUBLIC = "public"
DOMAIN = "domain"
SUBDOMAIN = "subdomain"
MEMBERS_ONLY = "membersonly"
MODERATORS_ONLY = "moderatorsonly"
MEMBERS_AND_MODERATORS_ONLY = "membersandmoderatorsonly"

# Policies mlmmj enforces itself: sql_ml_access_policy passes them through.
MLMMJ_POLICIES = frozenset({MEMBERS_ONLY, MODERATORS_ONLY, MEMBERS_AND_MODERATORS_ONLY})


def normalise_policy(value: str | None) -> str:
    """Lowercased; empty means ``public``; the old name ``allowedonly`` is ``moderatorsonly``."""
    policy = (value or "").strip().lower()
    if not policy:
        return PUBLIC
    return MODERATORS_ONLY if policy == "allowedonly" else policy


@dataclass(frozen=True)
class Sender:
    """S (sender_without_ext, lowercased) and SD (the domain of the full sender)."""

    address: str
    domain: str

    @property
    def local(self) -> str:
        return self.address.split("@", 1)[0]


@dataclass(frozen=True)
class Recipient:
    """R (recipient_without_ext) and RD, plus the target of RD when RD is an alias domain."""

    address: str
    domain: str
    alias_target: str | None = None

    @property
    def local(self) -> str:
        return self.address.split("@", 1)[0]

    @property
    def target_address(self) -> str | None:
        """``R_local@target``: the address an alias-domain recipient stands for."""
        return f"{self.local}@{self.alias_target}" if self.alias_target else None


@dataclass(frozen=True)
class Resolved:
    """The account that carries the policy: as addressed (R, RD) or through the alias domain."""

    policy: str
    address: str  # realR
    domain: str  # realRD
    rcpt_alias_domains: tuple[str, ...]  # (SD,) when SD is an alias domain of realRD


@dataclass
class PolicyRows:
    """What one lookup found for the recipient's addresses: policy values of alias accounts
    and mailing lists, and the members, moderators and owners among the sender's forms.
    Keys are lowercased account addresses; values lowercased."""

    alias_policies: dict[str, str] = field(default_factory=dict)
    list_policies: dict[str, str] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    moderators: dict[str, set[str]] = field(default_factory=dict)
    owners: dict[str, set[str]] = field(default_factory=dict)


def lookup_addresses(recipient: Recipient, sender: Sender, sender_target: str | None) -> list[str]:
    """Every account address a policy or list row may be stored under: R, its alias-domain
    target, and ``R_local@SD`` when SD is an alias domain of the recipient's domain."""
    addresses = [recipient.address]
    if recipient.target_address:
        addresses.append(recipient.target_address)
    if sender_target and sender_target in (recipient.domain, recipient.alias_target):
        addresses.append(f"{recipient.local}@{sender.domain}")
    return _distinct(addresses)


def sender_forms(recipient: Recipient, sender: Sender) -> list[str]:
    """The member/moderator/owner values that may let the sender in: S, ``SN@RD``,
    ``SN@<alias target of RD>`` and the domain wildcard ``*@SD``. Empty values are left out."""
    forms = [sender.address]
    if sender.address:
        forms.append(f"{sender.local}@{recipient.domain}")
        if recipient.alias_target:
            forms.append(f"{sender.local}@{recipient.alias_target}")
    if sender.domain:
        forms.append(f"*@{sender.domain}")
    return _distinct(f for f in forms if f)


def resolve(
    policies: Mapping[str, str], recipient: Recipient, sender: Sender, sender_target: str | None
) -> Resolved | None:
    """Step 1 of both SQL checks: R's own row, else (RD being an alias domain) the row of
    ``R_local@target``; None when neither exists (the check then answers DUNNO)."""
    if recipient.address in policies:
        address, domain = recipient.address, recipient.domain
    elif recipient.target_address and recipient.target_address in policies:
        address, domain = recipient.target_address, recipient.alias_target or ""
    else:
        return None
    alias_domains = (sender.domain,) if sender.domain and sender_target == domain else ()
    return Resolved(normalise_policy(policies[address]), address, domain, alias_domains)


# --- the domain rules (sql_alias_access_policy step 6, reused by sql_ml_access_policy)


def domain_allows(sender: Sender, recipient: Recipient, real: Resolved) -> bool:
    sd = sender.domain
    return bool(sd) and (sd in (recipient.domain, real.domain) or sd in real.rcpt_alias_domains)


def subdomain_allows(sender: Sender, recipient: Recipient, real: Resolved) -> bool:
    if domain_allows(sender, recipient, real):
        return True
    domains = (recipient.domain, real.domain, *real.rcpt_alias_domains)
    return bool(sender.address) and any(d and sender.address.endswith("." + d) for d in domains)


def _alias_user_ok(sender: Sender, recipient: Recipient, real: Resolved, listed: Collection[str]) -> bool:
    """A sender of an alias domain of realRD counts as its primary-domain address. iRedAPD
    tries ``SN@RD`` only; apd also tries ``SN@realRD`` (RD itself may be the alias domain)."""
    if sender.domain not in real.rcpt_alias_domains:
        return False
    forms = {sender.address, f"{sender.local}@{recipient.domain}", f"{sender.local}@{real.domain}"}
    forms.update(f"{sender.local}@{d}" for d in real.rcpt_alias_domains)
    return not forms.isdisjoint(listed)


def alias_policy_allows(
    sender: Sender, recipient: Recipient, real: Resolved, members: Collection[str], moderators: Collection[str]
) -> bool:
    """sql_alias_access_policy steps 2-7; ``members``/``moderators`` lowercased."""
    policy = real.policy
    if policy == DOMAIN:
        return domain_allows(sender, recipient, real)
    if policy == SUBDOMAIN:
        return subdomain_allows(sender, recipient, real)
    wildcard = f"*@{sender.domain}"
    if policy == MODERATORS_ONLY:
        return (
            sender.address in moderators
            or wildcard in moderators
            or _alias_user_ok(sender, recipient, real, moderators)
        )
    if policy == MEMBERS_ONLY:
        return sender.address in members or _alias_user_ok(sender, recipient, real, members)
    if policy == MEMBERS_AND_MODERATORS_ONLY:
        return (
            sender.address in members
            or sender.address in moderators
            or wildcard in moderators
            or _alias_user_ok(sender, recipient, real, {*members, *moderators})
        )
    return True  # public, or a policy iRedAPD does not know


def ml_policy_allows(sender: Sender, recipient: Recipient, real: Resolved, moderator_or_owner: bool) -> bool:
    """sql_ml_access_policy steps 2-9: mlmmj enforces the member/moderator policies itself."""
    if real.policy == PUBLIC or real.policy in MLMMJ_POLICIES or moderator_or_owner:
        return True
    if real.policy == DOMAIN:
        return domain_allows(sender, recipient, real)
    if real.policy == SUBDOMAIN:
        return subdomain_allows(sender, recipient, real)
    return True


def ml_accounts(recipient: Recipient, real: Resolved) -> list[str]:
    """The list addresses a moderator or owner row may name: R, ``R_local@d`` for the sender's
    alias domains, and (apd; iRedAPD uses R only) realR, where the rows of an alias-domain
    recipient are stored."""
    forms = [recipient.address, real.address]
    forms += [f"{recipient.local}@{d}" for d in real.rcpt_alias_domains]
    return _distinct(forms)


def listed_for(rows: Mapping[str, set[str]], accounts: Iterable[str]) -> set[str]:
    """The union of the values stored for any of ``accounts``."""
    found: set[str] = set()
    for account in accounts:
        found |= rows.get(account, set())
    return found


# --- ldap_maillist_access_policy


def label_suffixes(domain: str) -> set[str]:
    """``a.b.c`` -> ``{'.a.b.c', '.b.c', '.c'}`` (listAllowedUser may name a parent domain)."""
    labels = domain.split(".")
    return {"." + ".".join(labels[i:]) for i in range(len(labels))} if domain else set()


def ldap_listed(sender: Sender, moderators_and_owners: Collection[str], allowed: Collection[str]) -> bool:
    """Steps 8 and 9: a listed moderator or owner, or a sender (or its domain, ``*@domain`` or
    a parent domain) in ``listAllowedUser``. All values lowercased."""
    if not sender.address:
        return False
    if sender.address in moderators_and_owners or sender.address in allowed:
        return True
    names = {sender.domain, f"*@{sender.domain}", *label_suffixes(sender.domain)}
    return not names.isdisjoint(allowed)


def ldap_domain_allows(sender: Sender, valid: Collection[str]) -> bool:
    return bool(sender.domain) and sender.domain in valid


def ldap_subdomain_allows(sender: Sender, valid: Collection[str]) -> bool:
    sd = sender.domain
    return bool(sd) and any(sd == d or sd.endswith("." + d) for d in valid)


@dataclass(frozen=True)
class ModeratorExpansion:
    """moderatorsonly: how listAllowedUser is widened. ``kept`` stays as it is, the addresses of
    ``users`` (listed users of the list's own domain) are looked up for all their addresses, and
    the alias names of ``domains`` are looked up."""

    kept: tuple[str, ...]
    users: tuple[str, ...]
    domains: tuple[str, ...]


def moderator_expansion(allowed: Iterable[str], list_domain: str) -> ModeratorExpansion:
    """iRedAPD removes items from the list it walks (skipping the item after each removal) and
    compares the domain search's bytes with str (adding nothing): apd takes every item and uses
    the alias names found."""
    kept: list[str] = []
    users: list[str] = []
    domains: list[str] = []
    for item in allowed:
        if item.startswith("*@"):
            continue
        if "@" in item:
            (users if item.endswith("@" + list_domain) else kept).append(item)
        elif item.lstrip("."):
            domains.append(item.lstrip("."))
    return ModeratorExpansion(tuple(_distinct(kept)), tuple(_distinct(users)), tuple(_distinct(domains)))


def ldap_moderators_allow(sender: Sender, expanded: Collection[str]) -> bool:
    return bool(sender.address) and (sender.address in expanded or sender.domain in expanded)


def _distinct(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


@dataclass(frozen=True)
class AccessFacts:
    """One request's facts for the SQL policy checks, fetched once (RequestContext)."""

    sender: Sender
    recipient: Recipient
    sender_target: str | None  # the target of SD when SD is an alias domain
    rows: PolicyRows
