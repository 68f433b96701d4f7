from apd.store.sessions import COLUMNS, session_row


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
