"""The smtp_sessions log (protocol.md §9.2): which decisions are written, and the insert."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any, Mapping, Sequence

from apd.store.base import Database

COPIED = (
    "instance",
    "client_address",
    "client_name",
    "reverse_client_name",
    "helo_name",
    "encryption_protocol",
    "encryption_cipher",
    "server_address",
    "server_port",
)
COLUMNS = (
    "time",
    "time_num",
    "action",
    "reason",
    *COPIED,
    "sender",
    "sender_domain",
    "sasl_username",
    "sasl_domain",
    "recipient",
    "recipient_domain",
)


# Column widths of iRedAPD's MySQL schema (the narrowest): a longer value (an attacker-chosen
# HELO, a long CHANGE_PASSWORD_MESSAGE) would make a strict-mode insert fail and lose the row.
WIDTHS = {
    "action": 20,
    "reason": 150,
    "instance": 40,
    "client_address": 40,
    "server_address": 40,
    "encryption_protocol": 20,
    "encryption_cipher": 50,
    "server_port": 10,
}
DEFAULT_WIDTH = 255


def should_log(state: str, action: str, settings: Any) -> bool:
    if not (state == "END-OF-MESSAGE" or (state == "RCPT" and not action.startswith("DUNNO"))):
        return False  # tested first: most requests end here without a settings lookup
    if not settings.LOG_SMTP_SESSIONS:
        return False
    if settings.LOG_SMTP_SESSIONS_BYPASS_GREYLISTING and action.startswith("451 4.7.1"):
        return False
    if settings.LOG_SMTP_SESSIONS_BYPASS_WHITELIST and action.split(" ", 1)[0] == "OK":
        return False
    if settings.LOG_SMTP_SESSIONS_BYPASS_DUNNO and action.startswith("DUNNO"):
        return False  # read by apd, unlike iRedAPD (DIFFERENCES.md 13)
    return True


def session_row(attrs: Mapping[str, str], action: str, now: float) -> tuple:
    word, _, rest = action.partition(" ")
    values = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)),
        "time_num": int(now),
        "action": word,
        "reason": "" if word == "DUNNO" else rest,
        **{name: attrs.get(name, "") for name in COPIED},
        "sender": attrs.get("sender_without_ext", attrs.get("sender", "")),
        "sender_domain": attrs.get("sender_domain", ""),
        "sasl_username": attrs.get("sasl_username", ""),
        "sasl_domain": attrs.get("sasl_username_domain", ""),
        "recipient": attrs.get("recipient_without_ext", attrs.get("recipient", "")),
        "recipient_domain": attrs.get("recipient_domain", ""),
    }
    return tuple(_fit(c, values[c]) for c in COLUMNS)


def _fit(column: str, value: Any) -> Any:
    if not isinstance(value, str) or column == "time":
        return value
    return value[: WIDTHS.get(column, DEFAULT_WIDTH)]


ROW_MARKS = f"({', '.join(['%s'] * len(COLUMNS))})"
# Rows per INSERT: 256 x 23 parameters stays far below SQLite's (32766) and PostgreSQL's (65535) limits.
ROWS_PER_STATEMENT = 256


@lru_cache(maxsize=ROWS_PER_STATEMENT)
def insert_sql(count: int) -> str:
    """One INSERT for ``count`` rows (a multi-row VALUES list); the values go as parameters."""
    return f"INSERT INTO smtp_sessions ({', '.join(COLUMNS)}) VALUES {', '.join([ROW_MARKS] * count)}"


class SessionLog:
    INSERT = insert_sql(1)

    def __init__(self, db: Database):
        self.db = db

    def record(self, row: tuple) -> None:
        self.db.execute(self.INSERT, row)

    def record_many(self, rows: Sequence[tuple]) -> None:
        """Write ``rows`` in one statement per ROWS_PER_STATEMENT rows."""
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            self.db.execute(insert_sql(len(chunk)), [value for row in chunk for value in row])
