"""Label values of the metrics, kept to small fixed sets: a client never chooses a label (a new
label value is a new series, held until the process ends)."""

from __future__ import annotations

import re

STATES = frozenset({"CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"})
VERBS = frozenset(
    {
        "OK",
        "DUNNO",
        "REJECT",
        "DEFER",
        "DEFER_IF_PERMIT",
        "DEFER_IF_REJECT",
        "DISCARD",
        "HOLD",
        "REDIRECT",
        "FILTER",
        "PREPEND",
        "WARN",
        "BCC",
        "INFO",
    }
)
_CODE = re.compile(r"[45]\d\d")
NONE = "none"
OTHER = "other"


def action_verb(action: str) -> str:
    """The verb of a policy answer: ``REJECT Blacklisted`` -> REJECT, ``451 4.7.1 ...`` -> 451."""
    verb = action.split(None, 1)[0].upper() if action else ""
    if verb in VERBS or _CODE.fullmatch(verb):
        return verb
    return OTHER if verb else NONE


def state_label(state: str) -> str:
    if not state:
        return NONE
    upper = state.upper()
    return upper if upper in STATES else OTHER


def check_label(check: str) -> str:
    return check or NONE


def database_label(label: str) -> str:
    """``vmail (mysql://u@h:3306/vmail)`` -> vmail; ``sqlite:/var/lib/apd/apd.sqlite3`` -> sqlite."""
    return label.split(" ", 1)[0].split(":", 1)[0] or OTHER
