"""Shared rules for fixtures that start real servers (MariaDB, PostgreSQL, slapd, dnsmasq, Postfix)."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip a server test whose server cannot start, except in CI, where that is a failure."""
    if IN_CI:
        pytest.fail(f"server needed by this test cannot start in CI: {reason}")
    pytest.skip(reason)


def require_binary(*candidates: str) -> str:
    for name in candidates:
        path = shutil.which(name) or next(
            (
                p
                for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/usr/lib/postfix/sbin/{name}")
                if os.path.exists(p)
            ),
            None,
        )
        if path:
            return path
    unavailable(f"{' or '.join(candidates)} not installed (make test installs it when run as root)")
    raise AssertionError("unreachable")
