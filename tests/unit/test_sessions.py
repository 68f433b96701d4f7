import pytest

from apd.store.sessions import COLUMNS, session_row, should_log


def test_long_values_are_cut_to_the_iredapd_column_widths():
    attrs = {"helo_name": "h" * 1000, "client_address": "192.0.2.1", "server_port": "1" * 30, "sender": "a@b.com"}
    row = dict(zip(COLUMNS, session_row(attrs, "REJECT " + "x" * 400, 1_700_000_000)))
    assert row["helo_name"] == "h" * 255
    assert row["reason"] == "x" * 150
    assert row["server_port"] == "1" * 10
    assert row["client_address"] == "192.0.2.1"
    assert row["action"] == "REJECT"
    assert row["time_num"] == 1_700_000_000


def test_dunno_has_no_reason():
    row = dict(zip(COLUMNS, session_row({}, "DUNNO outbound_wblist=(1, 2, 'W')", 0)))
    assert row["action"] == "DUNNO" and row["reason"] == ""


def settings(**changes):
    from apd.settings import defaults

    return defaults().replace(**changes)


@pytest.mark.parametrize(
    "state, action, changes, logged",
    [
        ("RCPT", "DUNNO", {}, False),  # a RCPT that lets the mail on is never logged
        ("RCPT", "REJECT Blacklisted", {}, True),
        ("END-OF-MESSAGE", "DUNNO", {}, True),
        ("END-OF-MESSAGE", "DUNNO", {"LOG_SMTP_SESSIONS_BYPASS_DUNNO": True}, False),  # DIFFERENCES.md 13
        ("END-OF-MESSAGE", "REJECT x", {"LOG_SMTP_SESSIONS_BYPASS_DUNNO": True}, True),
        ("RCPT", "451 4.7.1 Intentional policy rejection", {}, True),
        ("RCPT", "451 4.7.1 Intentional policy rejection", {"LOG_SMTP_SESSIONS_BYPASS_GREYLISTING": True}, False),
        ("RCPT", "OK", {}, True),
        ("RCPT", "OK", {"LOG_SMTP_SESSIONS_BYPASS_WHITELIST": True}, False),
        ("RCPT", "OKAY then", {"LOG_SMTP_SESSIONS_BYPASS_WHITELIST": True}, True),  # the first word must be OK
        ("RCPT", "REJECT x", {"LOG_SMTP_SESSIONS": False}, False),
        ("DATA", "REJECT x", {}, False),
    ],
)
def test_which_decisions_write_a_session_row(state, action, changes, logged):
    assert should_log(state, action, settings(**changes)) is logged
