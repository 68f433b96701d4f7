"""tests/helpers/servers.py: a missing server, tool or python module skips locally and fails in CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import servers

ROOT = Path(__file__).resolve().parents[2]
MISSING_MODULE = "apd_test_no_such_module"


@pytest.mark.parametrize("in_ci, outcome", [(False, pytest.skip.Exception), (True, pytest.fail.Exception)])
def test_a_missing_module_skips_locally_and_fails_in_ci(monkeypatch, in_ci: bool, outcome: type) -> None:
    monkeypatch.setattr(servers, "IN_CI", in_ci)
    with pytest.raises(outcome, match=f"'{MISSING_MODULE}' cannot be imported.*; make venv-ldap"):
        servers.require_module(MISSING_MODULE, "make venv-ldap")


@pytest.mark.parametrize("in_ci, outcome", [(False, pytest.skip.Exception), (True, pytest.fail.Exception)])
def test_a_missing_binary_skips_locally_and_fails_in_ci(monkeypatch, in_ci: bool, outcome: type) -> None:
    monkeypatch.setattr(servers, "IN_CI", in_ci)
    with pytest.raises(outcome, match="apd-test-no-such-tool not installed"):
        servers.require_binary("apd-test-no-such-tool")


def test_present_parts_are_returned() -> None:
    assert servers.require_module("json") is json
    assert os.access(servers.require_binary("apd-test-no-such-tool", "sh"), os.X_OK)


def run_module_needing(module: str, tmp_path: Path, ci: str) -> subprocess.CompletedProcess:
    """pytest on a test module that, like the LDAP test modules, requires a python module at import."""
    test = tmp_path / "test_needs_module.py"
    test.write_text(
        f"from tests.helpers.servers import require_module\n\nrequire_module({module!r})\n\n\n"
        "def test_it():\n    assert True\n"
    )
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_module_needing_a_missing_module_is_skipped_locally_and_fails_collection_in_ci(tmp_path: Path) -> None:
    local = run_module_needing(MISSING_MODULE, tmp_path, ci="")
    assert local.returncode == 5 and "1 skipped" in local.stdout, local.stdout  # 5: no test ran
    ci = run_module_needing(MISSING_MODULE, tmp_path, ci="true")
    assert ci.returncode != 0 and "unavailable in CI" in ci.stdout and "skipped" not in ci.stdout, ci.stdout
    present = run_module_needing("json", tmp_path, ci="true")
    assert present.returncode == 0 and "1 passed" in present.stdout, present.stdout
