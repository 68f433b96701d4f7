"""The worker-local radix tree of mailaddr networks and its change marker (SQLite, real rows)."""

from __future__ import annotations

import pytest

from apd.mailaddr_networks import MailaddrNetworks, parse_entry
from apd.netmatch import strict_network
from tests.helpers.wblist import sqlite_store


@pytest.fixture
def store(tmp_path):
    _, store = sqlite_store(tmp_path / "apd.sqlite3")
    yield store
    store.close()


def insert(store, email, row_id=None):
    if row_id is None:
        store.amavisd.execute("INSERT INTO mailaddr (email) VALUES (%s)", (email.encode(),))
    else:
        store.amavisd.execute("INSERT INTO mailaddr (id, email) VALUES (%s, %s)", (row_id, email.encode()))


def marker(store, networks):
    return store.wblist.lookup(None, None, (), networks.low).marker


PARSE = [
    ("192.0.2.0/24", True),
    ("192.0.2.1", True),  # a plain IP is a /32, as in iRedAPD
    ("2001:db8::/32", True),
    ("2001:DB8::/32", True),
    ("10.0.0.0/255.0.0.0", True),  # netmask notation, through the ipaddress fallback
    ("192.0.2.1/24", False),  # host bits set
    ("10.0.0.1/33", False),
    ("2001:db8::1/32", False),
    ("192.0.2.*", False),
    ("user@192.0.2.1", False),
    ("@.", False),
    ("", False),
    ("1.2.3.0/ 24", False),
]


@pytest.mark.parametrize("text,is_network", PARSE)
def test_parse_entry(text, is_network):
    assert (parse_entry(text) is not None) is is_network


def test_strict_network_agrees_with_ipaddress():
    import ipaddress

    for text in ["0.0.0.0/0", "255.255.255.255", "128.0.0.0/1", "::/0", "fe80::/10", "::ffff:1.2.3.4", "1.2.3.4/32"]:
        net = ipaddress.ip_network(text, strict=True)
        assert strict_network(text) == (net.network_address.packed, net.prefixlen)


def test_marker_moves_on_insert_and_delete(store):
    for i in range(5):
        insert(store, f"10.{i}.0.0/16")
    insert(store, "a@b.com")
    networks = MailaddrNetworks(store.wblist)
    networks.ensure_loaded()
    assert networks.size == 5
    assert networks.is_current(marker(store, networks))
    insert(store, "10.9.0.0/16")
    assert not networks.is_current(marker(store, networks))
    networks.refresh()
    assert networks.is_current(marker(store, networks))
    assert networks.match("10.9.1.1") and networks.size == 6
    store.amavisd.execute("DELETE FROM mailaddr WHERE email = %s", (b"10.9.0.0/16",))
    assert not networks.is_current(marker(store, networks))
    networks.refresh()
    assert networks.match("10.9.1.1") == [] and networks.size == 5
    assert networks.reloads == 1


def test_late_commit_below_the_highest_id_is_seen(store):
    """An insert that took a lower id but committed after a later one (as with concurrent
    writers) still moves the marker: COUNT over the window changes."""
    insert(store, "10.0.0.0/8", row_id=1)
    insert(store, "11.0.0.0/8", row_id=5)
    networks = MailaddrNetworks(store.wblist)
    networks.ensure_loaded()
    insert(store, "12.0.0.0/8", row_id=3)
    assert not networks.is_current(marker(store, networks))
    networks.refresh()
    assert networks.match("12.1.1.1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_is_capped_and_empties_when_the_list_is_quiet(store):
    clock = Clock()
    networks = MailaddrNetworks(store.wblist, late_seconds=60, max_window=4, clock=clock)
    for i in range(10):
        insert(store, f"10.{i}.0.0/16")
    networks.ensure_loaded()
    assert networks.low == 6 and networks.marker == (4, 10)
    assert networks.is_current(marker(store, networks))
    clock.now += 30
    insert(store, "10.10.0.0/16")
    assert not networks.is_current(marker(store, networks))
    networks.refresh()
    assert networks.low == 7 and networks.is_current(marker(store, networks))
    clock.now += 31  # the first read is a minute old: the mark rises to what it saw
    networks.advance()
    assert networks.low == 10 and networks.marker == (1, 11)
    clock.now += 30  # the last change too: a quiet list has an empty window
    networks.advance()
    assert networks.low == 11 and networks.marker == (0, 11)
    assert networks.is_current(marker(store, networks))
    assert networks.size == 11 and networks.match("10.3.1.1") and networks.match("10.10.1.1")


def test_late_commit_within_the_minute_is_seen(store):
    """Transaction A took id 2 but commits after B committed id 3: the marker must still move."""
    clock = Clock()
    insert(store, "10.0.0.0/8", row_id=1)
    networks = MailaddrNetworks(store.wblist, clock=clock)
    networks.ensure_loaded()
    clock.now += 120
    networks.advance()
    assert networks.marker == (0, 1)
    insert(store, "11.0.0.0/8", row_id=3)  # B
    assert not networks.is_current(marker(store, networks))
    networks.refresh()
    clock.now += 59
    networks.advance()
    insert(store, "12.0.0.0/8", row_id=2)  # A, late
    assert not networks.is_current(marker(store, networks))
    networks.refresh()
    assert networks.match("12.1.1.1") == [2]


def test_most_specific_network_first_and_ipv6(store):
    for text in ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "2001:db8::/32", "2001:db8:1::/48"]:
        insert(store, text)
    networks = MailaddrNetworks(store.wblist)
    networks.ensure_loaded()
    assert networks.match("10.1.2.3") == [3, 2, 1]
    assert networks.match("2001:db8:1::9") == [5, 4]
    assert networks.match("not an ip") == []


def test_verify_schedules_a_reload(store):
    insert(store, "10.0.0.0/8")
    networks = MailaddrNetworks(store.wblist)
    networks.ensure_loaded()
    assert networks.verify(1, "10.0.0.0/8")
    assert not networks.verify(1, "11.0.0.0/8")
    networks.ensure_loaded()
    assert networks.reloads == 2
