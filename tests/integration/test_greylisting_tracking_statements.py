"""Greylisting tracking costs one statement on MariaDB and PostgreSQL (issue 12): MariaDB's
``INSERT ... ON DUPLICATE KEY UPDATE ... RETURNING`` replaces BEGIN, upsert, SELECT, COMMIT."""

from __future__ import annotations

import pytest

from apd.checks.greylisting import Timing
from tests.integration.greylisting_backends import open_backend

T0 = 1_700_000_000
S, R, C = "someone@example.net", "user@example.com", "192.0.2.10"


def recorded_statements(db) -> list[str]:
    calls: list[str] = []
    run = db._run

    def counted(sql, *args, **kwargs):
        calls.append(sql.split(" ", 1)[0].upper())
        return run(sql, *args, **kwargs)

    db._run = counted
    return calls


@pytest.mark.parametrize("kind", ["mysql", "pgsql", "mysql:iredmail"])
def test_each_tracking_step_is_one_statement(request, tmp_path, kind):
    backend = open_backend(request, tmp_path, kind)
    try:
        repo = backend.store.greylisting
        backend.db.query("SELECT 1")  # connected: the dialect knows its server
        statements = recorded_statements(backend.db)
        timing = Timing(15, 30, 1)
        first = repo.track(S, R, C, "example.net", "example.com", timing.times(T0))
        again = repo.track(S, R, C, "example.net", "example.com", timing.times(T0 + 60))
        passed = repo.track(S, R, C, "example.net", "example.com", timing.times(T0 + 900))
        assert (first.passed, first.blocked_count) == (False, 1)
        assert (again.passed, again.blocked_count) == (False, 2)
        assert passed.passed is True
        assert statements == ["INSERT", "INSERT", "INSERT"]
    finally:
        backend.close()
