"""amavisd_wblist behind a real Postfix: a blacklisted client gets the 5xx with ``Blacklisted``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.servers import unavailable

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]


def wblist_admin(apd, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "admin.wblist_admin", "-c", str(apd.settings_path), *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_blacklisted_client_ip_is_rejected_by_postfix(postfix_server, postfix_apd):
    apd = postfix_apd(plugins=["amavisd_wblist"])
    wblist_admin(apd, "--add", "--blacklist", "127.0.0.2", "203.0.113.0/24")
    wblist_admin(apd, "--account", "vip@example.com", "--add", "--whitelist", "203.0.113.0/24")

    direct = postfix_server.send("someone@example.net", ["user@example.com"])  # from 127.0.0.2
    code, text = direct.rcpt["user@example.com"]
    assert 500 <= code < 600 and "Blacklisted" in text, direct

    result = postfix_server.send(
        "someone@example.net", ["user@example.com", "vip@example.com"], client_address="203.0.113.77"
    )
    code, text = result.rcpt["user@example.com"]
    assert 500 <= code < 600 and "Blacklisted" in text, result
    assert result.rcpt["vip@example.com"][0] == 250, result  # per-user whitelist: OK
    assert result.data is not None and result.data[0] == 250, result

    clean = postfix_server.send("someone@example.net", ["user@example.com"], client_address="198.51.100.1")
    assert clean.rcpt["user@example.com"][0] == 250, clean

    wblist_admin(apd, "--delete-all", "--blacklist")
    again = postfix_server.send("someone@example.net", ["user@example.com"], client_address="203.0.113.77")
    assert again.rcpt["user@example.com"][0] == 250, again


def test_blacklisted_ipv6_network_is_rejected_by_postfix(postfix_server, postfix_apd):
    """An IPv6 client (simulated with XCLIENT ADDR=IPV6:...) inside a blacklisted IPv6 network gets the 5xx."""
    if not Path("/proc/net/if_inet6").exists():  # Postfix turns its IPv6 support off: XCLIENT refuses the ADDR
        unavailable("the kernel has no IPv6 support")
    apd = postfix_apd(plugins=["amavisd_wblist"])
    wblist_admin(apd, "--add", "--blacklist", "2001:db8:bad::/48", "2001:db8:1::25")

    inside = postfix_server.send("someone@example.net", ["user@example.com"], client_address="2001:db8:bad:1::7")
    code, text = inside.rcpt["user@example.com"]
    assert 500 <= code < 600 and "Blacklisted" in text, inside
    exact = postfix_server.send("someone@example.net", ["user@example.com"], client_address="2001:db8:1::25")
    assert 500 <= exact.rcpt["user@example.com"][0] < 600, exact

    outside = postfix_server.send("someone@example.net", ["user@example.com"], client_address="2001:db8:beef::7")
    assert outside.rcpt["user@example.com"][0] == 250, outside
    assert "2001:db8:bad:1::7" in apd.log() and "IPV6:" not in apd.log()  # apd got the bare address


def test_blacklisted_reverse_name_is_rejected_by_postfix(postfix_server, postfix_apd):
    """wblist_rdns: Postfix's reverse_client_name (set with XCLIENT REVERSE_NAME, any case) against wblist_rdns."""
    import sqlite3

    apd = postfix_apd(plugins=["wblist_rdns"])
    with sqlite3.connect(apd.settings["sqlite_db_path"]) as db:
        db.executemany(
            "INSERT INTO wblist_rdns (rdns, wb) VALUES (?, ?)", [(".dyn.example.net", "B"), ("ok.dyn.example.net", "W")]
        )

    def rcpt_reply(reverse_name: str) -> tuple[int, str]:
        result = postfix_server.send(
            "someone@example.org", ["user@example.com"], client_address="198.51.100.9", reverse_name=reverse_name
        )
        return result.rcpt["user@example.com"]

    code, text = rcpt_reply("Host-1.DYN.Example.NET")
    assert 500 <= code < 600 and "Blacklisted" in text, (code, text)
    assert rcpt_reply("ok.dyn.example.net")[0] == 250  # whitelisted: DUNNO, the rest of Postfix's rules accept
    assert rcpt_reply("mail.example.org")[0] == 250
