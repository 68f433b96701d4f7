"""The senderscore cache in the iredapd database (schemas.md §1.10 and §1.12).

One row per client address: its score and when it was stored (senderscore_admin's whitelist
rows carry the time 4102444799). apd-cleanup-db removes rows older than SENDERSCORE_CACHE_DAYS.
"""

from __future__ import annotations

from apd.store.base import Database


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
