"""Pure decisions of whitelist_outbound_recipient (plugins.md "whitelist_outbound_recipient").

When a local user sends to one outside recipient, that recipient (or its domain) is whitelisted
for greylisting, so that the reply is not delayed. Which rows to write is decided here; the
check asks the store whether the recipient domain is local and writes them.

iRedAPD writes the ``domain`` choices of ``WL_RCPT_LOCAL_ACCOUNT`` and ``WL_RCPT_RCPT`` as
bare domains, which its own validation refuses, so they never took effect; apd writes them
as ``@domain``, the form greylisting matches for a whole domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apd.address import classify, is_cidr_network, is_email, is_strict_ip

AUTO_WHITELISTED = "AUTO-WHITELISTED"
ANYONE = "@."
# add_whitelist_sender's tests (admin-tools.md §2): the account types it accepts, and
# is_valid_sender's (an IP or network aside).
ACCOUNT_TYPES = frozenset({"catchall", "domain", "subdomain", "email"})
SENDER_TYPES = frozenset({"catchall", "top_level_domain", "domain", "subdomain", "email"})


@dataclass(frozen=True)
class OutboundRules:
    for_greylisting: bool = True
    without_spf: bool = False
    local_account: str = "user"  # user, domain, or anything else: @. (everyone)
    rcpt: str = "user"  # user or domain
    whitelist_domain: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> "OutboundRules":
        return cls(
            for_greylisting=bool(settings.WL_RCPT_FOR_GREYLISTING),
            without_spf=bool(settings.WL_RCPT_WITHOUT_SPF),
            local_account=str(settings.WL_RCPT_LOCAL_ACCOUNT),
            rcpt=str(settings.WL_RCPT_RCPT),
            whitelist_domain=bool(settings.WL_RCPT_WHITELIST_DOMAIN_FOR_GREYLISTING),
        )


@dataclass(frozen=True)
class Whitelisting:
    """What to write: ``greylisting_whitelists`` rows (account, sender, comment) in order, and
    the domain for ``greylisting_whitelist_domains`` (or '')."""

    rows: tuple[tuple[str, str, str], ...] = ()
    domain: str = ""


def needs_locality(rules: OutboundRules, login: str, login_domain: str, recipient: str, recipient_domain: str) -> bool:
    """Steps 1-4 before the store: turned on, SMTP AUTH, one recipient (Postfix sends it at
    END-OF-MESSAGE only for a single-recipient message), another domain than the login's.
    True means: whitelist unless the recipient domain is local."""
    if not (rules.for_greylisting or rules.without_spf):
        return False
    if not login or not is_email(recipient):
        return False
    return login_domain != recipient_domain


def whitelisting(
    rules: OutboundRules, login: str, login_domain: str, recipient: str, recipient_domain: str
) -> Whitelisting:
    """Steps 5 and 6 for an outside recipient: the rows to write, in iRedAPD's order (the first
    of two equal rows keeps its comment)."""
    rows: list[tuple[str, str, str]] = []
    domain = ""
    if rules.without_spf:
        account = (
            login
            if rules.local_account == "user"
            else f"@{login_domain}"
            if rules.local_account == "domain"
            else ANYONE
        )
        sender = f"@{recipient_domain}" if rules.rcpt == "domain" else recipient
        rows.append((account, sender, ""))
    if rules.for_greylisting:
        if rules.whitelist_domain:
            domain = recipient_domain
        else:
            rows.append((login, recipient, AUTO_WHITELISTED))
    return Whitelisting(tuple(rows), domain)


def valid_row(account: str, sender: str) -> bool:
    """add_whitelist_sender's tests: a valid sender (is_valid_sender) for a catch-all, domain,
    subdomain or email account."""
    if classify(account) not in ACCOUNT_TYPES:
        return False
    return is_strict_ip(sender) or is_cidr_network(sender) or classify(sender) in SENDER_TYPES
