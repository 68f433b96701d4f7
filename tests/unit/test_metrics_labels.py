"""The pure parts of the metrics: label values kept to fixed sets (a client never makes a new
series), METRICS_LISTEN's address form, and the HTTP answer to a scrape."""

from __future__ import annotations

import pytest

from apd import settings as st
from apd.metrics.exposition import parse_listen, response
from apd.metrics.labels import OTHER, action_verb, check_label, database_label, state_label


@pytest.mark.parametrize(
    "action, verb",
    [
        ("DUNNO", "DUNNO"),
        ("OK", "OK"),
        ("REJECT Blacklisted", "REJECT"),
        ("reject Blacklisted", "REJECT"),
        ("DEFER_IF_PERMIT Service temporarily unavailable", "DEFER_IF_PERMIT"),
        ("451 4.7.1 Intentional policy rejection, please try again later", "451"),
        ("554 5.7.1 Recipient address rejected", "554"),
        ("PREPEND X-Spam: yes", "PREPEND"),
        ("", "none"),
    ],
)
def test_the_verb_of_an_answer(action: str, verb: str) -> None:
    assert action_verb(action) == verb


@pytest.mark.parametrize("action", ["FROBNICATE now", "user@example.com", "251 not an error code", "4511 x", "{{x}}"])
def test_an_unknown_verb_counts_as_other(action: str) -> None:
    assert action_verb(action) == OTHER


@pytest.mark.parametrize(
    "state, label",
    [("RCPT", "RCPT"), ("rcpt", "RCPT"), ("END-OF-MESSAGE", "END-OF-MESSAGE"), ("", "none"), ("HACK", OTHER)],
)
def test_the_protocol_state_label(state: str, label: str) -> None:
    assert state_label(state) == label


def test_a_client_chosen_state_never_becomes_a_label() -> None:
    assert state_label("RCPT\nEVIL") == OTHER
    assert state_label("x" * 1000) == OTHER


def test_the_check_label_is_the_deciding_check_or_none() -> None:
    assert check_label("greylisting") == "greylisting"
    assert check_label("") == "none"


@pytest.mark.parametrize(
    "database, label",
    [
        ("vmail (mysql://vmail@127.0.0.1:3306/vmail)", "vmail"),
        ("iredapd (postgresql://iredapd@db:5432/iredapd)", "iredapd"),
        ("sqlite:/var/lib/apd/apd.sqlite3", "sqlite"),
        ("", OTHER),
    ],
)
def test_the_database_label_leaves_out_where_it_is(database: str, label: str) -> None:
    assert database_label(database) == label


@pytest.mark.parametrize(
    "listen, address",
    [
        ("127.0.0.1:9177", ("127.0.0.1", 9177)),
        (" 0.0.0.0:1 ", ("0.0.0.0", 1)),
        ("[::1]:9177", ("::1", 9177)),
        ("[::]:65535", ("::", 65535)),
    ],
)
def test_a_listen_address(listen: str, address: tuple[str, int]) -> None:
    assert parse_listen(listen) == address


@pytest.mark.parametrize(
    "listen",
    ["9177", ":9177", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", "::1:9177", "[::1]"],
)
def test_a_bad_listen_address_says_the_form(listen: str) -> None:
    with pytest.raises(ValueError, match=r"'host:port' or '\[ipv6\]:port'"):
        parse_listen(listen)


def test_the_setting_is_off_by_default_and_names_a_bad_value() -> None:
    assert st.defaults().METRICS_LISTEN == ""
    assert st.parse(b"METRICS_LISTEN = '[::1]:9177'\n", "s.py").METRICS_LISTEN == "[::1]:9177"
    for bad in ("'localhost:9177'", "'127.0.0.1'", "9177"):
        with pytest.raises(st.ConfigError) as refused:
            st.parse(f"METRICS_LISTEN = {bad}\n".encode(), "s.py")
        assert any("METRICS_LISTEN" in problem for problem in refused.value.problems), refused.value.problems


def render() -> tuple[bytes, bytes]:
    return b"text/plain; version=0.0.4", b"apd_workers 2.0\n"


def test_a_scrape_gets_the_metrics() -> None:
    answer = response(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", render)
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Content-Length: 16\r\n" in head + b"\r\n" and body == b"apd_workers 2.0\n"
    assert response(b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n", render).endswith(b"apd_workers 2.0\n")


def test_head_gets_no_body_and_other_paths_or_methods_are_refused() -> None:
    assert response(b"HEAD /metrics HTTP/1.0\r\n\r\n", render).endswith(b"\r\n\r\n")
    assert response(b"GET / HTTP/1.0\r\n\r\n", render).startswith(b"HTTP/1.0 404 ")
    assert response(b"POST /metrics HTTP/1.0\r\n\r\n", render).startswith(b"HTTP/1.0 405 ")
    assert response(b"\r\n\r\n", render).startswith(b"HTTP/1.0 405 ")


def test_a_refused_scrape_never_renders() -> None:
    def fail() -> tuple[bytes, bytes]:
        raise AssertionError("rendered")

    assert response(b"GET /other HTTP/1.0\r\n\r\n", fail).startswith(b"HTTP/1.0 404 ")
