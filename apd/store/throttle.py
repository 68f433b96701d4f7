"""The throttle check's settings lookup (schemas.md §1.12 "throttle plugin" 1).

The sender's and the recipient's ``apply()`` read their rows in one statement: every row of
the kinds asked whose account is one of the candidates. Which row belongs to which call is
sorted out by apd/throttle/rules.py ``matching``. The counters: apd/store/counters.py.
"""

from __future__ import annotations

from typing import Any, Sequence

from apd.store.base import Database, in_list
from apd.throttle.rules import Setting

SETTING_COLUMNS = "id, account, kind, priority, period, msg_size, max_rcpts, max_msgs, max_quota"


def _number(value: Any) -> int | None:
    return None if value is None else int(value)


class ThrottleRules:
    def __init__(self, db: Database):
        self.db = db

    def matching(self, kinds: Sequence[str], accounts: Sequence[str]) -> list[Setting]:
        """Rows of ``throttle`` with a kind among ``kinds`` and an account among ``accounts``."""
        accounts = list(dict.fromkeys(accounts))
        rows = self.db.query(
            f"SELECT {SETTING_COLUMNS} FROM throttle WHERE account IN ({in_list(accounts)}) AND kind IN ({in_list(kinds)})",
            [*accounts, *kinds],
        )
        return [
            Setting(int(i), str(a), str(k), _number(p), _number(per), *(_number(v) for v in limits))
            for i, a, k, p, per, *limits in rows
        ]
