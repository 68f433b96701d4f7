"""Who the throttle check throttles for one END-OF-MESSAGE request, pure (plugins.md §throttle "Entry").

The answer is the list of ``apply(user, kind)`` calls to make, in order: the sender's
(``outbound`` when authenticated or from localhost, else ``external``), then the recipient's
(``inbound``). An empty list means no throttling at all (a bypass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from apd.throttle.rules import EXTERNAL, INBOUND, OUTBOUND

LOCALHOST = frozenset({"127.0.0.1", "::1"})


@dataclass(frozen=True)
class Bypass:
    same_domain: bool  # THROTTLE_BYPASS_SAME_DOMAIN
    mynetworks: bool  # THROTTLE_BYPASS_MYNETWORKS
    local_recipient: bool  # THROTTLE_BYPASS_LOCAL_RECIPIENT


@dataclass(frozen=True)
class Call:
    user: str
    kind: str


def message_numbers(size: str, recipient_count: str | None) -> tuple[int, int]:
    """(size, recipient count) of the message: an empty size is 0; a missing or non-numeric
    count, or a non-numeric size, raises ValueError (iRedAPD fails: DUNNO)."""
    if recipient_count is None:
        raise ValueError("no recipient_count in the request")
    return (int(size) if size else 0), int(recipient_count)


def calls(
    sender: str,
    sender_domain: str,
    sasl_username: str,
    sasl_domain: str,
    recipient: str,
    recipient_domain: str,
    client: str,
    bypass: Bypass,
    trusted: Callable[[], bool],
) -> list[Call]:
    """Entry steps 1-7. ``sender``/``recipient`` are the addresses without extension; at
    END-OF-MESSAGE Postfix leaves the recipient empty when the message has several.
    ``trusted()`` (MYNETWORKS) is only asked when THROTTLE_BYPASS_MYNETWORKS is set."""
    user = sasl_username or sender
    user_domain = sasl_domain if sasl_username else sender_domain
    # a plain string compare: a null sender without auth ('' == '' of a multi-recipient
    # message) is bypassed too, as in iRedAPD
    if bypass.same_domain and user_domain == recipient_domain:
        return []
    if bypass.mynetworks and trusted():
        return []
    external = not sasl_username and client not in LOCALHOST  # MYNETWORKS plays no part here
    found = [Call(user, EXTERNAL if external else OUTBOUND)]
    if not (sasl_username and bypass.local_recipient):
        found.append(Call(recipient, INBOUND))
    return found
