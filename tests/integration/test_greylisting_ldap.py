"""Greylisting with backend 'ldap': alias domains from slapd, greylisting tables on MariaDB."""

from __future__ import annotations

import pytest

from tests.helpers.policy_client import rcpt
from tests.helpers.servers import require_module

require_module("ldap")
pytestmark = pytest.mark.servers

GREY = "451 4.7.1 Intentional policy rejection, please try again later"


def test_greylisting_on_the_ldap_backend_follows_alias_domains(apd_factory, slapd_server, mariadb_server):
    mariadb_server.truncate("apd")
    values = mariadb_server.apd_settings("apd", backend="ldap")
    values.update(slapd_server.settings())
    apd = apd_factory(plugins=["greylisting"], GREYLISTING_BYPASS_SPF=False, **values)
    iredapd = mariadb_server.db_name("apd", "iredapd")
    insert = "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES (%s, %s, '@.', 0, %s)"
    mariadb_server.execute(insert, ("@.", 0, 1), database=iredapd)
    mariadb_server.execute(insert, ("@example.com", 60, 0), database=iredapd)  # disabled for example.com
    with apd.client() as client:
        assert client.ask(**rcpt(recipient="user@example.com")) == "DUNNO"
        # alias.example.com is an alias domain of example.com in LDAP: example.com's setting applies
        assert client.ask(**rcpt(recipient="user@alias.example.com")) == "DUNNO"
        assert client.ask(**rcpt(recipient="user@unknown.org")) == GREY
    rows = mariadb_server.query("SELECT recipient, blocked_count FROM greylisting_tracking", database=iredapd)
    assert rows == [("user@unknown.org", 1)]
