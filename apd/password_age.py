"""Pure decisions of sql_force_change_password and ldap_force_change_password
(plugins.md "sql_force_change_password and ldap_force_change_password").

SQL stores the last change as a naive local date and time (``mailbox.passwordlastchange``),
LDAP as days since 1970-01-01 (``shadowLastChange``); both checks reject a login whose
password is ``CHANGE_PASSWORD_DAYS`` old or older with ``REJECT <CHANGE_PASSWORD_MESSAGE>``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

EPOCH = datetime.datetime(1970, 1, 1)
# SQLite keeps the column as text; MySQL and PostgreSQL drivers give datetimes.
_TEXT_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")


@dataclass(frozen=True)
class PasswordRules:
    days: int = 90
    message: str = ""
    never_expire: frozenset[str] = frozenset()  # lowercased addresses and domains

    @classmethod
    def from_settings(cls, settings: Any) -> "PasswordRules":
        return cls(
            days=int(settings.CHANGE_PASSWORD_DAYS),
            message=str(settings.CHANGE_PASSWORD_MESSAGE),
            never_expire=frozenset(str(v).strip().lower() for v in settings.CHANGE_PASSWORD_NEVER_EXPIRE_USERS),
        )

    @property
    def reply(self) -> str:
        return "REJECT " + self.message


def never_expires(rules: PasswordRules, login: str, login_domain: str) -> bool:
    """The login or its domain is listed in ``CHANGE_PASSWORD_NEVER_EXPIRE_USERS``."""
    return login in rules.never_expire or login_domain in rules.never_expire


def sql_last_change(value: Any) -> datetime.datetime:
    """``passwordlastchange`` as a naive datetime: NULL, empty or unreadable text (MySQL's zero
    date comes as text) counts as 1970-01-01 00:00:00, i.e. never changed."""
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day)
    if isinstance(value, (str, bytes)):
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        for form in _TEXT_FORMATS:
            try:
                return datetime.datetime.strptime(text.strip(), form)
            except ValueError:
                continue
    return EPOCH


def sql_expired(last_change: datetime.datetime, now: datetime.datetime, days: int) -> bool:
    """SQL step 5: expired unless less than ``days`` days have passed (local naive times)."""
    return not now - last_change < datetime.timedelta(days=days)


def ldap_expired(shadow_last_change: str | None, today: datetime.date, days: int) -> bool | None:
    """LDAP steps 4-5: days since 1970-01-01 minus ``shadowLastChange`` (missing counts as 0)
    ``>= days``. None when the value is no integer (iRedAPD fails, which is DUNNO)."""
    text = (shadow_last_change or "0").strip()
    try:
        changed = int(text)
    except ValueError:
        return None
    return (today - EPOCH.date()).days - changed >= days
