"""SRS: the codec against the documented algorithm (srs.md §6), tcp_table framing and the
replies of both services."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from apd.errors import StoreError
from apd.srs.codec import Srs, SrsError, is_srs_address, timestamp, valid_timestamps
from apd.srs.service import FORWARD, REVERSE, SrsService, exclusion_candidates
from apd.srs.table import LineReader, Reply, encode_text, format_reply, requested_key

NOW = 1_764_806_400.0  # 2025-12-04 00:00:00 UTC: day 20426
SECRET = "s3cret"


def reference_hash(secret: str, text: str) -> str:
    """srs.md §6.1 written out again: base64(HMAC-SHA1(secret, lowercase(text)))[:4]."""
    mac = hmac.new(secret.encode(), text.lower().encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()[:4]


def reference_timestamp(unix_time: float) -> str:
    day = int(unix_time) // 86400
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return alphabet[(day >> 5) % 32] + alphabet[day % 32]


def test_timestamp_is_the_day_count_modulo_1024_in_base32():
    assert timestamp(0) == "AA"
    assert timestamp(86400 * 33) == "BB"
    assert timestamp(86400 * 1023) == "77"
    assert timestamp(86400 * 1024) == "AA"  # wraps
    assert timestamp(NOW) == reference_timestamp(NOW) == "6K"
    assert len(valid_timestamps(NOW)) == 21 and timestamp(NOW - 20 * 86400) in valid_timestamps(NOW)
    assert timestamp(NOW - 21 * 86400) not in valid_timestamps(NOW)


def test_forward_srs0_matches_the_documented_construction():
    srs = Srs([SECRET])
    stamp = reference_timestamp(NOW)
    expected = f"SRS0={reference_hash(SECRET, stamp + 'orig.com' + 'alice')}={stamp}=orig.com=alice@srs.example.net"
    assert srs.forward("alice@orig.com", "srs.example.net", NOW) == expected
    assert srs.reverse(expected, NOW) == "alice@orig.com"


def test_srs1_wraps_an_srs0_address_and_rewraps_an_srs1_one():
    srs = Srs([SECRET])
    first_hop = "SRS0=XyZw=AB=orig.com=alice@hop1.example"
    wrapped = srs.forward(first_hop, "srs.me", NOW)
    assert (
        wrapped
        == f"SRS1={reference_hash(SECRET, 'hop1.example=XyZw=AB=orig.com=alice')}=hop1.example==XyZw=AB=orig.com=alice@srs.me"
    )
    assert srs.reverse(wrapped, NOW) == first_hop
    # a later hop: the original hop host and opaque part stay, the hash is ours
    other = Srs(["other-secret"])
    again = other.forward(wrapped.replace("@srs.me", "@hop2.example"), "srs2.me", NOW)
    assert (
        again
        == f"SRS1={reference_hash('other-secret', 'hop1.example=XyZw=AB=orig.com=alice')}=hop1.example==XyZw=AB=orig.com=alice@srs2.me"
    )
    assert other.reverse(again, NOW) == first_hop


def test_reverse_accepts_other_separators_lowercase_and_previous_secrets():
    old = Srs(["old-secret"])
    address = old.forward("Bob@Example.org", "srs.me", NOW)
    rotated = Srs(["new-secret", "old-secret"])
    assert rotated.reverse(address, NOW + 86400) == "Bob@Example.org"
    assert rotated.reverse(address.lower(), NOW) == "bob@example.org"  # Postfix may lowercase it
    assert rotated.reverse(address.replace("SRS0=", "SRS0+", 1), NOW) == "Bob@Example.org"
    # the new secret signs
    assert rotated.forward("bob@example.org", "srs.me", NOW).split("=")[1] == reference_hash(
        "new-secret", reference_timestamp(NOW) + "example.orgbob"
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda a: a.replace(a.split("=")[1], "AAAA", 1), "hash"),
        (lambda a: a.replace("=orig.com=", "=evil.com=", 1), "hash"),
    ],
)
def test_reverse_refuses_a_wrong_hash(change, why):
    srs = Srs([SECRET])
    address = srs.forward("alice@orig.com", "srs.me", NOW)
    with pytest.raises(SrsError, match=why):
        srs.reverse(change(address), NOW)


def test_reverse_refuses_an_expired_timestamp_and_unknown_forms():
    srs = Srs([SECRET])
    address = srs.forward("alice@orig.com", "srs.me", NOW - 21 * 86400)
    assert srs.reverse(srs.forward("alice@orig.com", "srs.me", NOW - 20 * 86400), NOW) == "alice@orig.com"
    with pytest.raises(SrsError, match="timestamp"):
        srs.reverse(address, NOW)
    with pytest.raises(SrsError):
        srs.reverse("alice@orig.com", NOW)
    with pytest.raises(SrsError):
        srs.forward("no-at-sign", "srs.me", NOW)
    with pytest.raises(SrsError):
        Srs([])


@pytest.mark.parametrize(
    ("address", "strict"),
    [
        ("SRS0=HHHH=TT=orig.com=alice@srs.me", True),
        ("srs0+hhhh=tt=orig.com=alice@srs.me", True),
        ("SRS1=HHHH=hop.example==HHHH=TT=orig.com=alice@srs.me", True),
        ("SRS0=HHHH=TT=orig.com@srs.me", False),
        ("SRS1=HHHH=hop.example=x@srs.me", False),
        ("alice@orig.com", False),
    ],
)
def test_is_srs_address(address, strict):
    assert is_srs_address(address) is strict


def test_line_reader_frames_lines_split_anywhere_and_bounds_them():
    reader = LineReader()
    assert reader.feed(b"get a@b.c") == [] and reader.in_request
    got = reader.feed(b"om\r\nget x@y.z\nget ")
    assert [r.line for r in got] == ["get a@b.com", "get x@y.z"]
    assert reader.in_request
    long_reader = LineReader(max_line=16)
    assert long_reader.feed(b"get " + b"x" * 20) == [] and long_reader.error is not None


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("get alice@orig.com", "alice@orig.com"),
        ("get a%25b@orig.com", "a%b@orig.com"),
        ("get caf%C3%A9@orig.com", "café@orig.com"),
        ("get  padded@orig.com ", "padded@orig.com"),
        ("put alice@orig.com", None),
        ("GET alice@orig.com", None),
    ],
)
def test_requested_key_decodes_percent_escapes(line, key):
    assert requested_key(line) == key


def test_reply_encoding_and_bound():
    assert encode_text("SRS0=abcd=XK=orig.com=alice@srs.me") == "SRS0=abcd=XK=orig.com=alice@srs.me"
    assert encode_text("a b%c\né") == "a%20b%25c%0A%C3%A9"
    assert format_reply("200", "x@y.z") == b"200 x@y.z\n"
    long = format_reply("500", "Unexpected input: " + "é" * 3000)
    assert len(long) <= 4096 and long.endswith(b"\n") and not long[:-1].decode().endswith(("%", "%C"))


def test_exclusion_candidates():
    assert exclusion_candidates("mail.example.com") == [
        "mail.example.com",
        ".mail.example.com",
        "example.com",
        ".example.com",
        "com",
        ".com",
    ]


class Lookups:
    def __init__(self, local=(), excluded=(), down=False):
        self.local, self.excluded, self.down = set(local), set(excluded), down
        self.asked: list = []

    def is_local_domain(self, domain):
        self.asked.append(domain)
        if self.down:
            raise StoreError("database vmail: gone")
        return domain in self.local

    def is_excluded(self, candidates):
        return bool(self.excluded.intersection(candidates))


def service(lookups, hostname="mx.example.com"):
    return SrsService(Srs([SECRET]), "srs.example.com", hostname, lookups.is_local_domain, lookups.is_excluded)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("get alice@srs.example.com", Reply("500", "Domain is srs_domain, bypassed.")),
        ("get alice@SRS.Example.com", Reply("500", "Domain is srs_domain, bypassed.")),
        ("get alice@mx.example.com", Reply("500", "Domain is server hostname, bypassed.")),
        ("get alice@local.example", Reply("500", "Domain is a local mail domain, bypassed.")),
        ("get alice@mail.excluded.org", Reply("500", "Domain is explicitly excluded, bypassed.")),
        ("get not-an-address", Reply("500", "Not a valid email address, bypassed.")),
        ("hello", Reply("500", "Unexpected input: hello")),
    ],
)
def test_forward_bypasses(line, expected):
    assert service(Lookups(local={"local.example"}, excluded={".excluded.org"})).answer(FORWARD, line, NOW) == expected


def test_forward_rewrites_and_reverse_restores():
    srs = service(Lookups())
    reply = srs.answer(FORWARD, "get alice@orig.com", NOW)
    assert reply.code == "200" and reply.text.endswith("=orig.com=alice@srs.example.com")
    assert srs.answer(REVERSE, f"get {reply.text}", NOW) == Reply("200", "alice@orig.com")
    assert srs.answer(REVERSE, f"get {reply.text.lower()}", NOW + 86400) == Reply("200", "alice@orig.com")
    assert srs.answer(REVERSE, "get alice@orig.com", NOW) == Reply("500", "Not a valid SRS address, bypassed.")
    tampered = reply.text.replace("alice", "mallory")
    assert srs.answer(REVERSE, f"get {tampered}", NOW) == Reply("500", "")
    assert srs.answer(REVERSE, f"get {reply.text}", NOW + 22 * 86400) == Reply("500", "")


def test_a_store_outage_asks_postfix_to_try_again():
    reply = service(Lookups(down=True)).answer(FORWARD, "get alice@orig.com", NOW)
    assert reply.code == "400"


def test_an_address_too_long_to_rewrite_is_not_rewritten():
    reply = service(Lookups()).answer(FORWARD, "get " + "a" * 4070 + "@orig.com", NOW)
    assert reply == Reply("500", "Rewritten address too long, bypassed.")


def test_srs_settings_are_checked():
    from apd import settings as settings_module

    both = settings_module.parse("srs_secrets = ['a']\nsrs_domain = 'srs.example.com'\n")
    assert both.srs_secrets == ("a",) and not both.warnings
    half = settings_module.parse("srs_secrets = ['a']\n")  # an iRedAPD file may say so: it loads, SRS off
    assert any("SRS stays off until both are set" in w for w in half.warnings)
    for text, problem in (
        ("srs_secrets = ['a']\nsrs_domain = 'srs.example.com'\nsrs_reverse_port = 7777\n", "must differ"),
        ("srs_secrets = ['']\n", "cannot be empty"),
        ("srs_domain = 'not a domain'\n", "is not a domain name"),
    ):
        with pytest.raises(settings_module.ConfigError) as caught:
            settings_module.parse(text)
        assert problem in caught.value.problems[0]
