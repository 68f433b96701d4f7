"""Shared rules for what the tests need from the machine: real servers (MariaDB, PostgreSQL, slapd,
dnsmasq, Postfix), the tools beside them (openssl, ss, ...) and python-ldap. A missing part skips the
test locally and fails it in CI (``CI=true``), so a CI run never passes by silently testing less."""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip a test whose server or tool is missing, except in CI, where that is a failure.

    Also callable at module level (a module that needs python-ldap): locally the module is
    skipped, in CI its collection fails."""
    if IN_CI:
        pytest.fail(f"part needed by this test is unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


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


def require_module(name: str, advice: str = "") -> ModuleType:
    """``import name``, or unavailable(): the CI-aware pytest.importorskip."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        unavailable(f"python module {name!r} cannot be imported ({exc}){'; ' + advice if advice else ''}")
        raise AssertionError("unreachable") from None
