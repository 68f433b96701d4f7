"""reject_sender_login_mismatch behind a real Postfix: Postfix's own sasl_username (set with XCLIENT LOGIN=)
and the RCPT-stage reply texts of the spec."""

from __future__ import annotations

import sqlite3

import pytest

pytestmark = pytest.mark.servers

CLIENT = "203.0.113.5"  # through XCLIENT: not a trusted network


@pytest.fixture
def apd(postfix_apd):
    apd = postfix_apd(plugins=["reject_sender_login_mismatch"], CHECK_SPF_IF_LOGIN_MISMATCH=False)
    with sqlite3.connect(apd.settings["sqlite_db_path"]) as db:
        db.execute("INSERT INTO domain (domain) VALUES ('example.com')")
        db.execute(
            "INSERT INTO forwardings (address, forwarding, domain, dest_domain, is_alias)"
            " VALUES ('user.alias@example.com', 'user@example.com', 'example.com', 'example.com', 1)"
        )
    return apd


def rejected_with(result, recipient: str, text: str) -> bool:
    code, reply = result.rcpt[recipient]
    return 500 <= code < 600 and text in reply


def test_forged_local_sender_without_auth_is_rejected_at_rcpt(postfix_server, apd):
    result = postfix_server.send("user@example.com", ["someone@other.org"], client_address=CLIENT)
    assert rejected_with(result, "someone@other.org", "SMTP AUTH is required for users under this sender domain"), (
        result
    )
    assert result.data is None

    external = postfix_server.send("friend@other.org", ["user@example.com"], client_address=CLIENT)
    assert external.rcpt["user@example.com"][0] == 250, external


def test_authenticated_user_sending_as_someone_else_is_rejected(postfix_server, apd):
    result = postfix_server.send(
        "boss@example.com", ["someone@other.org"], client_address=CLIENT, LOGIN="user@example.com"
    )
    assert rejected_with(result, "someone@other.org", "Sender is not same as SMTP authenticate username"), result
    apd.wait_for_log("boss@example.com")  # the decision line: apd saw the request Postfix made


def test_sending_as_the_users_own_alias_is_queued(postfix_server, apd):
    result = postfix_server.send(
        "user.alias@example.com", ["someone@other.org"], client_address=CLIENT, LOGIN="user@example.com"
    )
    assert result.rcpt["someone@other.org"][0] == 250, result
    assert result.queue_id in postfix_server.queue_ids()

    own = postfix_server.send(
        "User+Tag@Example.com", ["someone@other.org"], client_address=CLIENT, LOGIN="user@example.com"
    )
    assert own.rcpt["someone@other.org"][0] == 250, own
