"""The access-policy checks on a backend that does not hold their accounts: one warning, DUNNO."""

from __future__ import annotations

import logging

import pytest

from apd.checks import instantiate, plan
from apd.settings import defaults


class NoLookups:
    """A store whose every lookup fails the test: a check that does not apply asks nothing."""

    @property
    def accounts(self):
        raise AssertionError("a check that does not apply looked something up")


class Ctx:
    store = NoLookups()

    def __getattr__(self, name):
        raise AssertionError(f"a check that does not apply asked the context for {name}")


@pytest.mark.parametrize(
    "backend,name",
    [
        ("ldap", "sql_alias_access_policy"),
        ("ldap", "sql_ml_access_policy"),
        ("sqlite", "ldap_maillist_access_policy"),
        ("mysql", "ldap_maillist_access_policy"),
    ],
)
def test_check_on_another_backend_warns_once_and_answers_dunno(caplog, backend, name):
    from apd.protocol import PolicyRequest

    settings = defaults().replace(backend=backend, plugins=[name])
    planned, warnings = plan(settings)
    assert warnings == []
    with caplog.at_level(logging.WARNING):
        (check,) = instantiate(planned, settings, NoLookups())
    request = PolicyRequest.build({"sender": "a@x.org", "recipient": "list@example.com", "protocol_state": "RCPT"})
    assert check.check(request, Ctx()) is None
    assert check.check(request, Ctx()) is None
    messages = [r.getMessage() for r in caplog.records if r.name == f"apd.checks.{name}"]
    assert len(messages) == 1 and messages[0].startswith(f"check {name} needs ")
