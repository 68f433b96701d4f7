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


# --- Strict tests for what an admin tool stores. iRedAPD's tests above match a prefix only
# (`@.bad_domain!` passes as a top-level domain, `user@example.com>` as an email) and take
# any digits for an octet (`999.1.1.1` is a wildcard IP); the daemon keeps them for
# compatibility, the tools refuse such input. Every test here is anchored at both ends.

_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_LABEL_RE = re.compile(r"[^\W_](?:[^\W_]|-){0,62}(?<!-)")  # letters or digits, inner hyphens
_DNS_LABEL_RE = re.compile(r"\w[\w-]{0,62}(?<!-)")  # the same, and "_" (_spf.example.com)
_LOCAL_PART_RE = re.compile(r"[\w\-\#][\w\-\.\+\=\/\&\#]{0,63}")  # iRedAPD's characters
_WILDCARD_LOCAL_RE = re.compile(r"[\w\-][\w\-\.\+\=]{0,63}")
_WILDCARD_OCTET_RE = re.compile(rf"\*|{_OCTET}")
# Accounts a recipient or local sender is looked up by (policy_addresses).
LOCAL_ACCOUNT_TYPES = frozenset({"email", "domain", "subdomain", "top_level_domain", "catchall"})


def is_valid_domain(value: str, underscore: bool = False) -> bool:
    """A domain name: two or more labels of letters, digits and inner hyphens (up to 63 each,
    253 in all), the last not all digits. No trailing dot; '_' only with ``underscore`` (names
    looked up in DNS, such as the ``_spf.example.com`` an SPF record includes)."""
    labels = value.split(".")
    label_re = _DNS_LABEL_RE if underscore else _LABEL_RE
    return (
        len(value) <= 253
        and len(labels) >= 2
        and all(label_re.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def is_valid_tld(value: str) -> bool:
    """One label of two or more characters, not all digits (`com`, `co-uk`)."""
    return len(value) >= 2 and _LABEL_RE.fullmatch(value) is not None and not value.isdigit()


def is_valid_email(value: str) -> bool:
    """``local@domain`` with iRedAPD's local-part characters and a valid domain, nothing more."""
    local, at, domain = value.rpartition("@")
    return bool(at) and _LOCAL_PART_RE.fullmatch(local) is not None and is_valid_domain(domain)


def is_valid_wildcard_ipv4(value: str) -> bool:
    """Four octets, each 0-255 or '*', at least one '*' (`192.168.1.*`, `192.168.*.*`)."""
    parts = value.split(".")
    return len(parts) == 4 and "*" in parts and all(_WILDCARD_OCTET_RE.fullmatch(p) for p in parts)


def classify_strict(value: str) -> str | None:
    """``classify`` with every test anchored and each octet checked: the type of a valid
    account or list entry, or None."""
    if value.startswith("@."):
        rest = value[2:]
        if not rest:
            return "catchall"
        if is_valid_domain(rest):
            return "subdomain"
        return "top_level_domain" if is_valid_tld(rest) else None
    if value.startswith("@"):
        rest = value[1:]
        if rest == "ip":
            return "catchall_ip"
        return "domain" if is_valid_domain(rest) else None
    if is_valid_email(value):
        return "email"
    local, at, domain = value.rpartition("@")
    if at and domain == "*" and _WILDCARD_LOCAL_RE.fullmatch(local):
        return "wildcard_addr"
    if is_strict_ip(value):
        return "ip"
    if is_cidr_network(value):
        return "cidr_network"
    if is_valid_wildcard_ipv4(value):
        return "wildcard_ip"
    return None


def is_local_account(value: str) -> bool:
    """An account the tools store settings or lists for: user@domain.com, @domain.com,
    @.domain.com (or @.com) or @."""
    return classify_strict(value) in LOCAL_ACCOUNT_TYPES


def tried_wildcard(value: str, all_forms: bool) -> bool:
    """Whether a wildcard IPv4 is one of the forms ``wildcard_ipv4`` tries for some client."""
    return is_valid_wildcard_ipv4(value) and value in wildcard_ipv4(value.replace("*", "0"), all_forms)


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
