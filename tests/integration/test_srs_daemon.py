"""The SRS ports of a real apd: both answer over IPv4 and IPv6 beside the policy port, a
database that cannot be asked gives 400, and without the SRS settings the ports stay closed."""

from __future__ import annotations

import socket
import sqlite3

import pytest

from apd.srs.codec import Srs
from tests.helpers.apd_process import free_port
from tests.integration.test_daemon import ipv6_loopback

SECRETS = ["first-secret", "old-secret"]


def table_client(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    return sock


def lookup(sock: socket.socket, *lines: str) -> list[str]:
    """Send the lines at once (pipelined) and read one reply line each."""
    sock.sendall("".join(f"{line}\n" for line in lines).encode())
    data = b""
    while data.count(b"\n") < len(lines):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data.decode().splitlines()


@pytest.fixture
def srs_apd(apd_factory, tmp_path):
    forward, reverse = free_port(), free_port()
    listen = "127.0.0.1, ::1" if ipv6_loopback() else "127.0.0.1"
    proc = apd_factory(
        listen_address=listen,
        plugins=["reject_null_sender"],
        srs_secrets=SECRETS,
        srs_domain="srs.example.net",
        srs_forward_port=forward,
        srs_reverse_port=reverse,
    )
    db = sqlite3.connect(proc.settings["sqlite_db_path"])
    db.execute("INSERT INTO domain (domain, active) VALUES ('local.example', 1)")
    db.execute("INSERT INTO srs_exclude_domains (domain) VALUES ('.excluded.org')")
    db.commit()
    db.close()
    proc.forward, proc.reverse = forward, reverse
    return proc


def test_forward_and_reverse_through_the_ports(srs_apd):
    with table_client("127.0.0.1", srs_apd.forward) as sock:
        rewritten, local, excluded, odd, encoded, percent = lookup(
            sock,
            "get alice@orig.com",
            "get bob@local.example",
            "get carol@mail.excluded.org",
            "hello there",
            "get dave%2Bx@orig.com",
            "get d%25ave@orig.com",
        )
    assert rewritten.startswith("200 SRS0=") and rewritten.endswith("=orig.com=alice@srs.example.net")
    assert local == "500 Domain%20is%20a%20local%20mail%20domain,%20bypassed."
    assert excluded == "500 Domain%20is%20explicitly%20excluded,%20bypassed."
    assert odd == "500 Unexpected%20input:%20hello%20there"
    assert encoded.startswith("200 SRS0=") and encoded.endswith("=orig.com=dave+x@srs.example.net")  # decoded
    assert percent == "500 Not%20a%20valid%20email%20address,%20bypassed."  # '%' is no address character
    address = rewritten[4:]
    # signed with the first secret: what iRedAPD (srslib) signs with the same secret reverses the same
    assert Srs(SECRETS[:1]).reverse(address, __import__("time").time()) == "alice@orig.com"
    old = Srs(SECRETS[1:]).forward("erin@orig.com", "srs.example.net", __import__("time").time())
    hosts = ["127.0.0.1", "::1"] if ipv6_loopback() else ["127.0.0.1"]
    for host in hosts:
        with table_client(host, srs_apd.reverse) as sock:
            assert lookup(sock, f"get {address}", f"get {old.lower()}", "get alice@orig.com") == [
                "200 alice@orig.com",
                "200 erin@orig.com",
                "500 Not%20a%20valid%20SRS%20address,%20bypassed.",
            ]
    log = srs_apd.log()
    assert f"Starting SRS sender rewriting channel, listening on 127.0.0.1:{srs_apd.forward}" in log
    assert f"Starting SRS recipient rewriting channel, listening on 127.0.0.1:{srs_apd.reverse}" in log
    assert "[srs][sender]  rewrote: alice@orig.com -> SRS0=" in log
    # the policy port still speaks its own protocol
    with srs_apd.client() as client:
        assert client.ask(protocol_state="RCPT", sender="", sasl_username="u@example.com").startswith("REJECT")


def test_an_unreachable_database_gives_400(apd_factory):
    dead = free_port()
    forward, reverse = free_port(), free_port()
    proc = apd_factory(
        backend="mysql",
        plugins=["reject_null_sender"],
        SQL_QUERY_TIMEOUT=1,
        **{f"{db}_db_port": dead for db in ("vmail", "amavisd", "iredapd")},
        **{f"{db}_db_password": "x" for db in ("vmail", "amavisd", "iredapd")},
        srs_secrets=SECRETS,
        srs_domain="srs.example.net",
        srs_forward_port=forward,
        srs_reverse_port=reverse,
    )
    with table_client("127.0.0.1", forward) as sock:
        (reply,) = lookup(sock, "get alice@orig.com")
    assert reply.startswith("400 ")
    with table_client("127.0.0.1", reverse) as sock:  # reversing needs no database
        address = Srs(SECRETS).forward("alice@orig.com", "srs.example.net", __import__("time").time())
        assert lookup(sock, f"get {address}") == ["200 alice@orig.com"]
    proc.wait_for_log("not rewritten now")


def test_without_srs_settings_the_ports_stay_closed(apd_factory):
    forward = free_port()
    proc = apd_factory(plugins=["reject_null_sender"], srs_forward_port=forward)
    assert "No SRS domain and/or secret strings in settings.py, not loaded." in proc.log()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", forward), timeout=5).close()
