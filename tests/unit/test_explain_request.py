"""apd explain: rebuilding the request from attribute lines, flags and Postfix log lines."""

from __future__ import annotations

import pytest

from apd.explain.command import log_note
from apd.explain.request import RequestError, from_attribute_lines, from_flags, from_log_line

GREYLISTED = (
    "Dec  4 23:10:01 mx postfix/smtpd[1234]: NOQUEUE: reject: RCPT from mail.example.net[192.0.2.10]: "
    "451 4.7.1 <user@example.com>: Recipient address rejected: Intentional policy rejection, please try again "
    "later; from=<someone@example.net> to=<user@example.com> proto=ESMTP helo=<mail.example.net>"
)


def test_attribute_lines_end_at_the_blank_line_and_get_smtpd_defaults():
    attrs = from_attribute_lines(["protocol_state=RCPT\n", "sender=a@example.net\r\n", "\n", "ignored=1\n"])
    assert attrs["sender"] == "a@example.net" and attrs["protocol_state"] == "RCPT"
    assert "ignored" not in attrs and attrs["recipient_count"] == "0"


@pytest.mark.parametrize(
    ("lines", "message"), [([], "no request"), (["sender a@b.c\n"], "line 1: expected name=value")]
)
def test_bad_attribute_lines(lines, message):
    with pytest.raises(RequestError, match=message):
        from_attribute_lines(lines)


def test_flags():
    attrs = from_flags({"sender": "a@example.net", "state": "end-of-message", "sasl_username": "u@example.com"})
    assert attrs["protocol_state"] == "END-OF-MESSAGE"
    assert attrs["sasl_method"] == "PLAIN" and attrs["sasl_username"] == "u@example.com"


def test_an_smtpd_reject_line():
    attrs, logged, missing = from_log_line(GREYLISTED)
    assert (attrs["protocol_state"], attrs["client_address"], attrs["client_name"]) == (
        "RCPT",
        "192.0.2.10",
        "mail.example.net",
    )
    assert (attrs["sender"], attrs["recipient"], attrs["helo_name"]) == (
        "someone@example.net",
        "user@example.com",
        "mail.example.net",
    )
    assert logged.startswith("451 4.7.1 <user@example.com>: Recipient address rejected")
    assert missing == ["sasl_username"]  # smtpd does not log whether the client logged in


def test_a_null_sender_and_an_ipv6_client():
    line = (
        "postfix/smtpd[9]: NOQUEUE: reject: RCPT from unknown[2001:db8::5]: 554 5.7.1 <x@example.com>: Recipient "
        "address rejected: Blacklisted; from=<> to=<x@example.com> proto=SMTP helo=<[2001:db8::5]>"
    )
    attrs, _, _ = from_log_line(line)
    assert (attrs["sender"], attrs["client_address"], attrs["protocol_name"]) == ("", "2001:db8::5", "SMTP")


@pytest.mark.parametrize(
    "line",
    [
        "postfix/smtpd[1]: connect from mail.example.net[192.0.2.10]",
        "postfix/smtpd[1]: NOQUEUE: reject: RCPT from a[192.0.2.1]: 550 x; proto=ESMTP helo=<a>",
    ],
)
def test_lines_that_cannot_be_explained(line):
    with pytest.raises(RequestError):
        from_log_line(line)


def test_what_an_end_of_message_line_without_helo_does_not_give_is_reported():
    line = (
        "postfix/smtpd[9]: 4ABCD1234F: reject: END-OF-MESSAGE from mail.example.net[192.0.2.10]: 554 5.7.1 "
        "<x@example.com>: End-of-data rejected: Throttling quota exceeded; from=<a@example.net> to=<x@example.com> "
        "proto=ESMTP"
    )
    attrs, _, missing = from_log_line(line)
    assert attrs["protocol_state"] == "END-OF-MESSAGE" and (attrs["size"], attrs["helo_name"]) == ("0", "")
    assert missing == ["helo_name", "sasl_username", "size", "recipient_count"]
    assert log_note("554 5.7.1 ...", missing) == (
        "Postfix logged: 554 5.7.1 ...; not in the log line, taken as empty or 0: helo_name, sasl_username, size, "
        "recipient_count (give --helo, --sasl-username, --size, --recipient-count to set them)"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"state": "rcpt-to"}, "--state 'RCPT-TO': not one of CONNECT, EHLO"),
        ({"size": "10k"}, "--size '10k': not a whole number"),
        ({"recipient_count": "-1"}, "--recipient-count '-1': not a whole number"),
    ],
)
def test_flags_smtpd_could_not_send_are_refused(flags, message):
    with pytest.raises(RequestError, match=message):
        from_flags(flags)
