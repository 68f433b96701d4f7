"""Which MySQL-protocol servers return the upserted row (apd/store/mysql.py)."""

from __future__ import annotations

import pytest

from apd.store.mysql import returns_upserted_row


@pytest.mark.parametrize(
    "version, expected",
    [
        ("10.11.19-MariaDB-0+deb12u1", True),
        ("5.5.5-10.11.6-MariaDB", True),
        ("10.5.0-MariaDB", True),
        ("10.4.32-MariaDB", False),
        ("8.0.36", False),
        ("8.4.0-0ubuntu0.24.04.1", False),
        ("", False),
    ],
)
def test_returns_upserted_row(version, expected):
    assert returns_upserted_row(version) is expected
