"""iredapd.srs_exclude_domains (schemas.md §1.9): sender domains never SRS-rewritten."""

from __future__ import annotations

from typing import Sequence

from apd.store.base import Database, in_list


class SrsExclusions:
    def __init__(self, db: Database):
        self.db = db

    def any_listed(self, candidates: Sequence[str]) -> bool:
        row = self.db.query_one(
            f"SELECT id FROM srs_exclude_domains WHERE domain IN ({in_list(candidates)}) LIMIT 1", tuple(candidates)
        )
        return row is not None
