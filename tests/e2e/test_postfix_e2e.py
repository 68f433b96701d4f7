"""apd behind a real Postfix: SMTP in, policy decisions out (harness: tests/helpers/postfix.py)."""

import uuid

import pytest

from apd import replies

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def hostname_apd(postfix_server, tmp_path_factory):
    """One apd with reject_to_hostname for the module."""
    apd = postfix_server.start_apd(tmp_path_factory.mktemp("apd-e2e"), plugins=["reject_to_hostname"])
    yield apd
    apd.stop()


@pytest.fixture(autouse=True)
def pointed(request, postfix_server, hostname_apd):
    """Tests that start their own apd re-point Postfix; point it back at the module's apd before each test."""
    postfix_server.use_policy(hostname_apd.host, hostname_apd.port)


def unique(local: str, domain: str = "example.net") -> str:
    return f"{local}-{uuid.uuid4().hex[:10]}@{domain}"


def reply_text(action: str) -> str:
    """What Postfix puts in its SMTP reply for a policy ``REJECT <text>``."""
    return action.split(" ", 1)[1]


def test_rcpt_to_hostname_is_rejected_with_spec_text(postfix_server, hostname_apd):
    rcpt = f"someone@{postfix_server.apd_hostname}"
    result = postfix_server.send(unique("sender"), [rcpt])

    code, text = result.rcpt[rcpt]
    assert 500 <= code < 600, result
    assert reply_text(replies.REJECT_NOT_AUTHORIZED) in text
    assert result.data is None  # no recipient left: nothing queued
    hostname_apd.wait_for_log(f"-> {rcpt}, {replies.REJECT_NOT_AUTHORIZED} [")
    assert "check=reject_to_hostname" in hostname_apd.log()


def test_normal_message_is_accepted_and_queued(postfix_server):
    sender, rcpt = unique("sender"), unique("user", "example.com")
    result = postfix_server.send(sender, [rcpt])

    assert result.rcpt[rcpt][0] == 250, result
    assert result.data is not None and result.data[0] == 250, result
    queued = {r["queue_id"]: r for r in postfix_server.queue()}
    assert result.queue_id in queued, (result, queued)
    record = queued[result.queue_id]
    assert record["sender"] == sender
    assert [r["address"] for r in record["recipients"]] == [rcpt]


def test_rejected_recipient_is_dropped_from_a_message_that_is_still_queued(postfix_server):
    sender, good, bad = unique("sender"), unique("user", "example.com"), f"postmaster@{postfix_server.apd_hostname}"
    result = postfix_server.send(sender, [bad, good])

    assert result.rcpt[bad][0] == 554 and result.rcpt[good][0] == 250, result
    queued = {r["queue_id"]: r for r in postfix_server.queue()}
    assert [r["address"] for r in queued[result.queue_id]["recipients"]] == [good]


def test_end_of_message_request_reaches_apd(postfix_server, hostname_apd):
    sender = unique("eom")
    result = postfix_server.send(sender, [unique("a", "example.com"), unique("b", "example.org")])

    assert result.queue_id, result
    hostname_apd.wait_for_log(f"END-OF-MESSAGE, {sender} -> ")
    line = next(x for x in hostname_apd.log().splitlines() if f"END-OF-MESSAGE, {sender} -> " in x)
    assert "recipient_count=2" in line, line


def test_xclient_address_and_name_are_what_apd_sees(postfix_server, hostname_apd):
    rcpt = f"someone@{postfix_server.apd_hostname}"
    result = postfix_server.send(unique("sender"), [rcpt], client_address="198.51.100.7", name="mail.example.org")

    assert result.rcpt[rcpt][0] == 554, result
    hostname_apd.wait_for_log("[198.51.100.7] RCPT, ")
    line = next(x for x in hostname_apd.log().splitlines() if f"-> {rcpt}" in x and "[198.51.100.7]" in x)
    assert "client_name=mail.example.org" in line and "helo=client.example.net" in line, line


def test_client_trusted_by_apd_is_not_rejected(postfix_server):
    """apd trusts 127.0.0.1; this is why every other test comes from 127.0.0.2 or another XCLIENT address."""
    rcpt = f"someone@{postfix_server.apd_hostname}"
    result = postfix_server.send(unique("sender"), [rcpt], client_address="127.0.0.1")

    assert result.rcpt[rcpt][0] == 250, result
    assert result.queue_id in postfix_server.queue_ids()


def test_repointing_postfix_at_another_apd(postfix_server, postfix_apd):
    apd = postfix_apd(plugins=["reject_null_sender"])
    hostname_rcpt, rcpt = f"someone@{postfix_server.apd_hostname}", unique("user", "example.com")

    accepted = postfix_server.send(unique("sender"), [hostname_rcpt])
    null_sender = postfix_server.send("", [rcpt], client_address="192.0.2.20", login="user@example.com")

    assert accepted.rcpt[hostname_rcpt][0] == 250, accepted  # reject_to_hostname is not enabled in this apd
    code, text = null_sender.rcpt[rcpt]
    assert code == 554 and reply_text(replies.REJECT_NULL_SENDER) in text, null_sender
    apd.wait_for_log("check=reject_null_sender")
