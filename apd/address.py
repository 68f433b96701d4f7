"""Pure address helpers with iRedAPD's exact quirks (protocol.md §6-§8)."""

from __future__ import annotations

import ipaddress
import re

# iRedAPD: no character of "~!$%^*() " anywhere (the lookahead), then a prefix match of its pattern.
_EMAIL_RE = re.compile(
    r"(?=[^~!$%^*() ]*\Z)[\w\-\#][\w\-\.\+\=\/\&\#]*@[\w\-][\w\-\.]*\.[a-zA-Z0-9\-]{2,15}", re.IGNORECASE
)
_DOMAIN_FORBIDDEN = set("~!#$%^&*()+\\/ ")
_DOMAIN_RE = re.compile(r"[\w\-][\w\-\.]*\.[a-z]{2,15}", re.IGNORECASE)
_TLD_RE = re.compile(r"[a-z0-9\-]{2,25}", re.IGNORECASE)
_WILDCARD_ADDR_RE = re.compile(r"[\w\-][\w\-\.\+\=]*@\*", re.IGNORECASE)
_WILDCARD_IPV4_RE = re.compile(r"[\d\*]{1,3}\.[\d\*]{1,3}\.[\d\*]{1,3}\.[\d\*]{1,3}$")
_IPV4_RE = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\Z")


def is_email(value: str) -> bool:
    """iRedAPD's prefix-match email test: ``user@example.com>`` passes, ``user@localhost`` fails."""
    return _EMAIL_RE.match(value.strip()) is not None


def is_domain(value: str) -> bool:
    text = value.strip()
    if not text or "." not in text or _DOMAIN_FORBIDDEN.intersection(text):
        return False
    return _DOMAIN_RE.match(text) is not None


def is_tld_domain(value: str) -> bool:
    return _TLD_RE.match(value) is not None


def is_ipv4(value: str) -> bool:
    return _IPV4_RE.match(value) is not None


def is_strict_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_cidr_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return True


def is_wildcard_ipv4(value: str) -> bool:
    return _WILDCARD_IPV4_RE.match(value) is not None


def domain_of(address: str) -> str:
    """Text after the first '@'; the whole value when there is none."""
    return address.split("@", 1)[1] if "@" in address else address


def local_part(address: str) -> str:
    return address.split("@", 1)[0]


def strip_extension(address: str, delimiters: tuple[str, ...] | list[str] = ("+",)) -> str:
    """``user+tag@d`` -> ``user@d``: the first delimiter (in list order) found in the local part wins."""
    if not is_email(address):
        return address
    local, domain = address.split("@", 1)
    for delimiter in delimiters:
        if delimiter and delimiter in local:
            return local.split(delimiter, 1)[0] + "@" + domain
    return address


def policy_addresses(mail: str) -> list[str]:
    """``user@a.b.c`` -> [user@a.b.c, @a.b.c, @., @.a.b.c, @.b.c, @.c]; a non-address -> ['@.']."""
    if not is_email(mail):
        return ["@."]
    domain = domain_of(mail)
    labels = domain.split(".")
    return [mail, "@" + domain, "@."] + ["@." + ".".join(labels[i:]) for i in range(len(labels))]


def wildcard_ipv4(ip: str, all_forms: bool = False) -> list[str]:
    """Wildcard forms of an IPv4 address used by list lookups (protocol.md §8)."""
    if not is_ipv4(ip):
        return []
    a, b, c, d = ip.split(".")
    if not all_forms:
        return [f"{a}.{b}.{c}.*", f"{a}.{b}.*.{d}"]
    return [
        f"*.{b}.{c}.{d}",
        f"*.*.{c}.{d}",
        f"*.*.*.{d}",
        "*.*.*.*",
        f"{a}.*.{c}.{d}",
        f"{a}.*.*.{d}",
        f"{a}.*.*.*",
        f"{a}.{b}.*.{d}",
        f"{a}.{b}.*.*",
        f"{a}.{b}.{c}.*",
    ]


def classify(value: str) -> str | None:
    """iRedAPD's ``is_valid_amavisd_address``: the account type name, or None when invalid."""
    if value.startswith("@."):
        if value == "@.":
            return "catchall"
        rest = value[2:]
        if is_domain(rest):
            return "subdomain"
        if is_tld_domain(rest):
            return "top_level_domain"
        return None
    if value.startswith("@"):
        rest = value[1:]
        if rest == "ip":
            return "catchall_ip"
        if is_domain(rest):
            return "domain"
        return None
    if is_email(value):
        return "email"
    if _WILDCARD_ADDR_RE.match(value):
        return "wildcard_addr"
    if is_strict_ip(value):
        return "ip"
    if is_cidr_network(value):
        return "cidr_network"
    if is_wildcard_ipv4(value):
        return "wildcard_ip"
    return None


# amavisd users.priority / mailaddr.priority written by wblist_admin (schemas.md §2.2)
MAILADDR_PRIORITIES = {
    "email": 10,
    "ip": 9,
    "wildcard_ip": 8,
    "cidr_network": 7,
    "wildcard_addr": 7,
    "domain": 5,
    "subdomain": 3,
    "top_level_domain": 2,
    "catchall_ip": 1,
    "catchall": 0,
}

# greylisting / throttle priority column (schemas.md §1.3); unknown types give 0
ACCOUNT_PRIORITIES = {
    "email": 100,
    "wildcard_addr": 90,
    "ip": 80,
    "wildcard_ip": 70,
    "cidr": 70,
    "domain": 60,
    "subdomain": 50,
    "top_level_domain": 40,
    "catchall": 0,
}
