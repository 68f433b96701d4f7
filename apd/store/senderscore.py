"""The senderscore cache in the iredapd database (schemas.md §1.10 and §1.12).

One row per client address: its score and when it was stored (senderscore_admin's whitelist
rows carry the time 4102444799). apd-cleanup-db removes rows older than SENDERSCORE_CACHE_DAYS.
"""

from __future__ import annotations

from typing import Sequence

from apd.store.base import Database, in_list

# senderscore_admin's rows: a perfect score dated 2099-12-31 23:59:59 UTC, which no cache
# expiry (apd-cleanup-db, SENDERSCORE_CACHE_DAYS) ever reaches.
WHITELISTED_SCORE = 100
WHITELISTED_TIME = 4102444799


class SenderscoreCache:
    def __init__(self, db: Database):
        self.db = db
        # A stale row is replaced, and two workers missing the same client both write: an upsert.
        self._save = db.dialect.upsert(
            "senderscore_cache",
            ("client_address", "score", "time"),
            ("client_address",),
            "score = excluded.score, time = excluded.time",
        )

    def get(self, client_address: str) -> tuple[int, int] | None:
        """(score, stored at) of the client's row, or None."""
        row = self.db.query_one(
            "SELECT score, time FROM senderscore_cache WHERE client_address = %s LIMIT 1", (client_address,)
        )
        if row is None:
            return None
        return int(row[0] or 0), int(row[1] or 0)

    def save(self, client_address: str, score: int, now: int) -> None:
        self.db.execute(self._save, (client_address, score, now))

    def whitelist(self, client_addresses: Sequence[str]) -> None:
        """Replace the rows of these clients with the never-expiring score of 100, in one transaction."""
        with self.db.transaction() as db:
            db.execute(
                f"DELETE FROM senderscore_cache WHERE client_address IN ({in_list(client_addresses)})",
                tuple(client_addresses),
            )
            db.execute_many(
                "INSERT INTO senderscore_cache (client_address, score, time) VALUES (%s, %s, %s)",
                [(address, WHITELISTED_SCORE, WHITELISTED_TIME) for address in client_addresses],
            )
