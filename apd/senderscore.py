"""Pure decisions of the senderscore check (plugins.md "senderscore").

The check asks DNS for ``d.c.b.a.score.senderscore.com`` (the client's octets reversed) and
reads the score from the last octet of the first A record. What to cache, when a cached row
still counts, whether to reject and the INFO line are decided here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Sequence

from apd import replies

ZONE = "score.senderscore.com"
# No answer (NoAnswer, NXDOMAIN, a timeout): the client counts as good.
DEFAULT_SCORE = 100


@dataclass(frozen=True)
class Lookup:
    """A DNS outcome: the score, and whether it may be cached (a failure is not cached)."""

    score: int
    cache: bool


def query_name(client_address: str) -> str | None:
    """The name to query for an IPv4 client; None for anything else (steps 2 and 6)."""
    try:
        ip = ipaddress.ip_address(client_address)
    except ValueError:
        return None
    if ip.version != 4:
        return None
    return ".".join(reversed(str(ip).split("."))) + "." + ZONE


def from_answer(records: Sequence[str] | None) -> Lookup:
    """Step 6: ``records`` are the A records as text, () for NoAnswer or NXDOMAIN (cached as
    100), None for a timeout or another failure (100, not cached)."""
    if records is None:
        return Lookup(DEFAULT_SCORE, cache=False)
    if not records:
        return Lookup(DEFAULT_SCORE, cache=True)
    last = records[0].rsplit(".", 1)[-1]
    # not an address (a resolver oddity): out of range, so step 7 logs it and answers DUNNO
    return Lookup(int(last) if last.isdigit() else -1, cache=True)


def valid_score(score: int) -> bool:
    """Step 7: a score outside 0-100 is an error, answered DUNNO."""
    return 0 <= score <= 100


def cache_fresh(stored_at: int, now: float, cache_days: int) -> bool:
    """Does a cached row still count? Rows older than ``SENDERSCORE_CACHE_DAYS`` are what
    cleanup_db removes; until it runs they count as missing (senderscore_admin's whitelist rows
    are dated 2099 and stay)."""
    return stored_at >= now - cache_days * 86400


def verdict(score: int, reject_score: int, client_address: str) -> str | None:
    """Step 9: reject at or below ``SENDERSCORE_REJECT_SCORE``."""
    if score <= reject_score:
        return replies.REJECT_LOW_SENDER_SCORE + client_address
    return None


def log_text(domain: str, score: int, cached: bool, rejected: bool, reject_score: int) -> str:
    """The INFO line after ``[<IP>] ``: ``[<UD or SD>] senderscore: <n>``, ``(cache matched)``
    when the cache answered, ``[REJECT (<= N)]`` when rejecting."""
    text = f"[{domain}] senderscore: {score}"
    if cached:
        text += " (cache matched)"
    if rejected:
        text += f" [REJECT (<= {reject_score})]"
    return text
