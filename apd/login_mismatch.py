"""Pure decisions of reject_sender_login_mismatch (plugins.md "reject_sender_login_mismatch").

The check asks the store only what a step needs; every step's verdict is decided here:

* unauthenticated mail: ``forged_sender_exempt`` (steps A.1-A.3), ``counts_local_by_name``
  (A.4 before the domain lookup) and ``forged_verdict`` (A.5);
* authenticated mail: ``login_verdict`` (B.1-B.3), ``real_sender`` and
  ``same_user_in_alias_domain`` (B.4, the alias-domain rewrite), ``relations_verdict``
  (B.4-B.6) over the ``SenderRelations`` the store found, and ``mlmmj_verdict`` (B.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from apd import replies

# Verdicts besides a reply: the check must look further before it can answer.
LOOKUP = "lookup"  # B.4: ask the store how the sender relates to the login
ASK_MLMMJ = "ask mlmmj"  # B.5: ask mlmmjadmin whether the login subscribes to the list


@dataclass(frozen=True)
class MismatchSettings:
    """The settings of the check, lowercased once (requests arrive lowercased)."""

    check_forged_sender: bool = True
    allowed_forged_senders: frozenset[str] = frozenset()
    check_spf: bool = True
    allowed_senders: frozenset[str] = frozenset()
    strictly: bool = True
    list_member: bool = False
    mlmmj_api: bool = False  # a token and an endpoint are set

    @classmethod
    def from_settings(cls, settings: Any) -> "MismatchSettings":
        return cls(
            check_forged_sender=bool(settings.CHECK_FORGED_SENDER),
            allowed_forged_senders=_lowered(settings.ALLOWED_FORGED_SENDERS),
            check_spf=bool(settings.CHECK_SPF_IF_LOGIN_MISMATCH),
            allowed_senders=_lowered(settings.ALLOWED_LOGIN_MISMATCH_SENDERS),
            strictly=bool(settings.ALLOWED_LOGIN_MISMATCH_STRICTLY),
            list_member=bool(settings.ALLOWED_LOGIN_MISMATCH_LIST_MEMBER),
            mlmmj_api=bool(settings.mlmmjadmin_api_auth_token and settings.mlmmjadmin_api_endpoint),
        )


@dataclass(frozen=True)
class SenderRelations:
    """What the store knows about sender S and login U (schemas.md §3.2, ldap.md §3.5).

    ``allowed``: S is one of U's own alias addresses (STRICTLY), or U is a member of the alias
    or list S (LIST_MEMBER). ``mlmmj_list``: S is an active mlmmj mailing list, whose
    subscribers only mlmmjadmin knows.
    """

    allowed: bool = False
    mlmmj_list: bool = False


def _lowered(values: Iterable[str]) -> frozenset[str]:
    return frozenset(str(v).strip().lower() for v in values)


def local_part(address: str) -> str:
    return address.rsplit("@", 1)[0] if "@" in address else address


# --- A. unauthenticated


def forged_sender_exempt(settings: MismatchSettings, sender: str, sender_domain: str, trusted: bool) -> bool:
    """Steps A.1-A.3: a trusted client, the check turned off, or an ALLOWED_FORGED_SENDERS entry
    (the address, its bare domain or ``name@*``)."""
    if trusted or not settings.check_forged_sender:
        return True
    allowed = settings.allowed_forged_senders
    return bool(allowed) and (sender in allowed or sender_domain in allowed or local_part(sender) + "@*" in allowed)


def counts_local_by_name(sender_domain: str, recipient_domain: str) -> bool | None:
    """Step A.4 without a lookup: True when SD == RD (even for a domain not hosted here), False
    for no sender domain (the null sender), None when the directory must tell."""
    if not sender_domain:
        return False
    if sender_domain == recipient_domain:
        return True
    return None


def forged_verdict(local: bool, spf_allowed: bool) -> str | None:
    """Step A.5: a local sender without SMTP AUTH is rejected unless its SPF lists the client."""
    if not local or spf_allowed:
        return None
    return replies.REJECT_FORGED_SENDER


# --- B. authenticated


def login_verdict(
    settings: MismatchSettings, sender: str, sender_domain: str, sasl_username: str, sasl_domain: str
) -> str | None:
    """Steps 0 and B.1-B.3: None (DUNNO), the mismatch reply, or LOOKUP (go on with B.4)."""
    if not sender or sender == sasl_username:
        return None  # a null sender is reject_null_sender's; user+ext@d may be sent by user@d
    allowed = settings.allowed_senders
    if allowed:
        if sasl_username in allowed or sasl_domain in allowed:
            return None
        if ("@" + sasl_domain in allowed or "@." in allowed) and sasl_domain == sender_domain:
            return None
    if settings.strictly or settings.list_member:
        return LOOKUP
    return replies.REJECT_SENDER_LOGIN_MISMATCH


def real_sender(
    settings: MismatchSettings, sender: str, sender_domain: str, sasl_domain: str, alias_target: str | None
) -> str:
    """Step B.4 (STRICTLY): a sender in an alias domain of the login's domain stands for the same
    name in the login's domain; the list checks then ask about that address."""
    if settings.strictly and sender_domain != sasl_domain and alias_target == sasl_domain:
        return f"{local_part(sender)}@{sasl_domain}"
    return sender


def same_user_in_alias_domain(settings: MismatchSettings, sender: str, real: str, sasl_username: str) -> bool:
    """Step B.4 (STRICTLY): ``user@<alias domain>`` sent by login ``user@<its target>``."""
    return settings.strictly and real != sender and real == sasl_username


def relations_verdict(settings: MismatchSettings, relations: SenderRelations) -> str | None:
    """Steps B.4-B.6 once the relations are known: None (DUNNO), ASK_MLMMJ or the mismatch reply."""
    if relations.allowed:
        return None
    if relations.mlmmj_list and settings.mlmmj_api:
        return ASK_MLMMJ
    return replies.REJECT_SENDER_LOGIN_MISMATCH


def mlmmj_verdict(subscribed: bool) -> str | None:
    """Step B.5's answer: a subscriber may send as the list."""
    return None if subscribed else replies.REJECT_SENDER_LOGIN_MISMATCH
