"""Data for the ``iredmail-default-*`` scenarios: iRedMail's whole default plugin list on its real
schemas (../shared/iredmail/*.mysql), realistic accounts, SPF answered by dnsmasq.

Accounts (vmail): local domains ``forged.test`` (its SPF lists 192.0.2.150), ``local1.test`` and
``local2.test`` (no SPF record), alias domain ``alias1.test`` -> ``local1.test``, backup MX
``backup.test``; 350 mailboxes, each with iRedMail's own forwardings row and a per-user alias
address for 50 of them; alias accounts ``all@`` (policy domain), ``staff@`` (membersonly, 20
members) and ``sales@`` (public); mailing lists ``news@`` (moderatorsonly) and ``team@``
(membersonly, 10 members). iredapd: greylisting enabled globally (``@.``) and disabled for one
user, whitelisted networks and 1,000 SPF-derived rows, wblist_rdns rows, throttle limits (global
outbound/inbound, one domain, a few users). amavisd: 10,000 wblist rows of local users plus a
few that the mix hits (a whitelisted sender, a blacklisted network).

The mix (``MIX``, cycled by every connection): three quarters RCPT, one quarter END-OF-MESSAGE
(throttle). RCPT: external senders with and without SPF to mailboxes (greylisted, SPF bypass,
whitelisted clients), to aliases and lists with each access policy, authenticated users sending
as themselves, as their alias and as someone else, forged local senders, a null sender, a
blacklisted rDNS and an amavisd-blacklisted client.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from bench.database import DATABASE_KEY, MariaDBWatch, PostgresWatch

Rows = list[tuple[Any, ...]]
LOCAL = {"local1.test": 200, "local2.test": 100, "forged.test": 50}  # domain -> mailboxes
ALIAS_USERS = 50  # local1.test users u0..u49 have the alias address a<N>@local1.test
STAFF, TEAM = 20, 10  # members of staff@local1.test (alias) and team@local2.test (list)
WBLIST_FILL = 10_000
SPF_ROWS = 1_000  # greylisting_whitelist_domain_spf, as filled by spf_to_greylist_whitelists

# External sender domains answered by the dnsmasq zone (tests/helpers/dnsmasq.py), with a
# client address inside (True) or outside (False) their SPF.
SPF_SENDERS = [
    ("ip4.spf.test", "192.0.2.44", True),
    ("include.spf.test", "192.0.2.5", True),
    ("redirect.spf.test", "198.51.100.7", True),
    ("mx.spf.test", "192.0.2.31", False),
    ("a.spf.test", "192.0.2.21", False),
    ("nospf.spf.test", "203.0.113.77", False),
    ("nx.spf.test", "203.0.113.78", False),
]


def vmail_rows() -> dict[str, Rows]:
    domains: Rows = [(d, 0) for d in LOCAL] + [("backup.test", 1)]
    mailboxes: Rows = [(f"u{i}@{d}", d) for d, count in LOCAL.items() for i in range(count)]
    forwardings: Rows = [(user, user, domain, domain, 0, 0, 1, 0) for user, domain in mailboxes]
    forwardings += [
        (f"a{i}@local1.test", f"u{i}@local1.test", "local1.test", "local1.test", 0, 0, 0, 1) for i in range(ALIAS_USERS)
    ]
    forwardings += [
        ("staff@local1.test", f"u{i}@local1.test", "local1.test", "local1.test", 0, 1, 0, 0) for i in range(STAFF)
    ]
    forwardings += [
        ("team@local2.test", f"u{i}@local2.test", "local2.test", "local2.test", 0, 1, 0, 0) for i in range(TEAM)
    ]
    aliases: Rows = [
        ("all@local1.test", "local1.test", "domain"),
        ("staff@local1.test", "local1.test", "membersonly"),
        ("sales@local1.test", "local1.test", "public"),
    ]
    lists: Rows = [
        ("news@local1.test", "local1.test", "moderatorsonly", "news-1"),
        ("team@local2.test", "local2.test", "membersonly", "team-2"),
    ]
    moderators: Rows = [("news@local1.test", "u1@local1.test", "local1.test", "local1.test")]
    return {
        "domain": domains,
        "alias_domain": [("alias1.test", "local1.test")],
        "mailbox": mailboxes,
        "forwardings": forwardings,
        "alias": aliases,
        "maillists": lists,
        "moderators": moderators,
    }


def iredapd_rows() -> dict[str, Rows]:
    greylisting: Rows = [("@.", 0, "@.", 0, 1), ("u7@local1.test", 100, "@.", 0, 0)]
    whitelists: Rows = [("@.", "203.0.113.0/25", "bulk sender"), ("@.", "@mx.spf.test", "")]
    spf_rows: Rows = [("@.", f"100.{64 + n // 256}.{n % 256}.0/24", "AUTO-UPDATE: big.test") for n in range(SPF_ROWS)]
    rdns: Rows = [(".dynamic.isp.test", "B"), (".dsl.isp.test", "B"), ("mail.trusted.test", "W")]
    rdns += [(f".pool{n}.isp.test", "B") for n in range(20)]
    throttle: Rows = [
        ("@.", "outbound", 0, 3600, 10 * 1024 * 1024, 10**9, -1, 100),
        ("@.", "inbound", 0, 3600, 50 * 1024 * 1024, 10**9, -1, -1),
        ("@local1.test", "outbound", 60, 86400, -1, -1, 10**12, -1),
    ] + [(f"u{i}@local1.test", "outbound", 100, 3600, -1, 10**6, -1, 200) for i in range(5)]
    return {
        "greylisting": greylisting,
        "greylisting_whitelists": whitelists,
        "greylisting_whitelist_domain_spf": spf_rows,
        "wblist_rdns": rdns,
        "throttle": throttle,
    }


def amavisd_rows(fill: int = WBLIST_FILL) -> dict[str, Rows]:
    """users, mailaddr and wblist with explicit ids: a few entries the mix hits, then ``fill``
    entries of other senders (a fifth of them networks) for 300 local users."""
    users: Rows = [(1, 0, "@."), (2, 10, "u0@local1.test"), (3, 5, "@local2.test")]
    mailaddr: Rows = [(1, 7, "192.0.2.66"), (2, 10, "boss@ip4.spf.test"), (3, 5, "@nospf.spf.test")]
    wblist: Rows = [(1, 1, "B"), (2, 2, "W"), (3, 3, "B")]
    local_users = [f"u{i}@{d}" for d, count in LOCAL.items() for i in range(count)][1:301]
    users += [(4 + i, 10, user) for i, user in enumerate(local_users)]
    for i in range(fill):
        sid = 4 + i
        sender = f"10.{i // 256 % 256}.{i % 256}.0/24" if i % 5 == 0 else f"s{i}@d{i % 3000}.example.org"
        mailaddr.append((sid, 7 if i % 5 == 0 else 10, sender))
        wblist.append((4 + i % len(local_users), sid, "W" if i % 3 else "B"))
    return {"users": users, "mailaddr": mailaddr, "wblist": wblist}


COLUMNS = {
    "domain": "domain, backupmx",
    "alias_domain": "alias_domain, target_domain",
    "mailbox": "username, domain",
    "forwardings": "address, forwarding, domain, dest_domain, is_maillist, is_list, is_forwarding, is_alias",
    "alias": "address, domain, accesspolicy",
    "maillists": "address, domain, accesspolicy, mlid",
    "moderators": "address, moderator, domain, dest_domain",
    "greylisting": "account, priority, sender, sender_priority, active",
    "greylisting_whitelists": "account, sender, comment",
    "greylisting_whitelist_domain_spf": "account, sender, comment",
    "wblist_rdns": "rdns, wb",
    "throttle": "account, kind, priority, period, msg_size, max_msgs, max_quota, max_rcpts",
    "users": "id, priority, email",
    "mailaddr": "id, priority, email",
    "wblist": "rid, sid, wb",
}


def insert_sql(table: str, mark: str = "%s") -> str:
    columns = COLUMNS[table]
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join([mark] * (columns.count(',') + 1))})"


# --- the request mix --------------------------------------------------------------------------


def _rcpt(i: int, **attrs: str) -> dict[str, str]:
    base = {
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "client_address": "203.0.113.200",
        "client_name": "mail.remote.test",
        "reverse_client_name": "mail.remote.test",
        "helo_name": "mail.remote.test",
        "recipient_count": "0",
        "queue_id": "",
        "instance": f"bench.{i}",
        "size": "0",
        "sasl_method": "",
        "sasl_username": "",
        "sasl_sender": "",
    }
    return {**base, **attrs}


def _inbound(i: int) -> dict[str, str]:
    """External sender -> local mailbox: greylisting decides (SPF bypass, whitelists, 451)."""
    domain, client, _ = SPF_SENDERS[i % len(SPF_SENDERS)]
    mailbox = f"u{i % 150}@local1.test" if i % 3 else f"u{i % 90}@local2.test"
    if i % 11 == 0:
        client = "203.0.113.9"  # inside the greylisting whitelist 203.0.113.0/25
    return _rcpt(i, sender=f"x{i % 40}@{domain}", recipient=mailbox, client_address=client)


def _special(i: int) -> dict[str, str]:
    """One of the less common RCPT cases: ``build_mix`` calls this for every 8th request, so
    the case is chosen by ``n = i // 8``."""
    n = i // 8
    kind = n % 10
    if kind == 0:  # to an alias account: public, domain and membersonly policies
        rcpt = ("sales@local1.test", "all@local1.test", "staff@local1.test")[n // 10 % 3]
        return _rcpt(i, sender=f"x{i}@nospf.spf.test", recipient=rcpt, client_address="203.0.113.77")
    if kind == 1:  # a list member (moderatorsonly / membersonly lists), authenticated
        user = f"u{i % 12}@local2.test"
        rcpt = "team@local2.test" if n % 20 < 10 else "news@local1.test"
        return _rcpt(i, sender=user, sasl_username=user, recipient=rcpt, client_address="192.0.2.200")
    if kind == 2:  # a forged local sender without SMTP AUTH (SPF of the local domain decides)
        sender = ("u3@forged.test", "u4@local1.test")[n // 10 % 2]
        return _rcpt(i, sender=sender, recipient=f"u{i % 50}@local2.test", client_address="198.51.100.9")
    if kind == 3:  # through the alias domain
        return _rcpt(i, sender=f"x{i}@ip4.spf.test", recipient=f"u{i % 40}@alias1.test", client_address="192.0.2.44")
    if kind == 4:  # a bounce (null sender)
        return _rcpt(i, sender="", recipient=f"u{i % 100}@local1.test", client_address="192.0.2.60")
    if kind == 5:  # blacklisted rDNS
        return _rcpt(
            i, sender=f"x{i}@remote.test", recipient="u1@local1.test", reverse_client_name="h1.dynamic.isp.test"
        )
    if kind == 6:  # amavisd: the global account blacklists this client
        return _rcpt(i, sender=f"x{i}@remote.test", recipient="u2@local1.test", client_address="192.0.2.66")
    if kind == 7:  # amavisd: whitelisted sender of u0
        return _rcpt(i, sender="boss@ip4.spf.test", recipient="u0@local1.test", client_address="192.0.2.44")
    if kind == 8:  # authenticated, sending as someone else
        return _rcpt(i, sender="u9@local2.test", sasl_username="u8@local1.test", recipient="r@remote.test")
    return _rcpt(  # authenticated, sending as the login's own alias address
        i,
        sender=f"a{i % ALIAS_USERS}@local1.test",
        sasl_username=f"u{i % ALIAS_USERS}@local1.test",
        recipient="r@remote.test",
    )


def _outbound(i: int) -> dict[str, str]:
    user = f"u{i % 200}@local1.test" if i % 2 else f"u{i % 100}@local2.test"
    return _rcpt(i, sender=user, sasl_username=user, recipient=f"r{i % 30}@remote.test", client_address="192.0.2.200")


def _end_of_message(i: int) -> dict[str, str]:
    if i % 2:
        user = f"u{i % 200}@local1.test"
        attrs = {
            "sender": user,
            "sasl_username": user,
            "recipient": f"r{i}@remote.test",
            "client_address": "192.0.2.200",
        }
    else:
        attrs = {"sender": f"x{i}@ip4.spf.test", "recipient": f"u{i % 150}@local1.test", "client_address": "192.0.2.44"}
    return _rcpt(i, protocol_state="END-OF-MESSAGE", recipient_count="1", size=str(3000 + 97 * i), **attrs)


def build_mix(size: int = 400) -> tuple[dict[str, str], ...]:
    """Of every 8 requests: 2 END-OF-MESSAGE, 3 inbound to a mailbox, 2 authenticated outbound
    and 1 of the special cases (``_special``)."""
    makers = (_inbound, _outbound, _end_of_message, _inbound, _special, _outbound, _end_of_message, _inbound)
    return tuple(makers[i % len(makers)](i) for i in range(size))


MIX = build_mix()


# --- the environment --------------------------------------------------------------------------


def fill(server: Any) -> None:
    """Insert the rows as the database's superuser (MariaDB or PostgreSQL test server)."""
    analyze = "ANALYZE TABLE" if server.backend == "mysql" else "ANALYZE"
    for database, rows in (("vmail", vmail_rows()), ("iredapd", iredapd_rows()), ("amavisd", amavisd_rows())):
        conn = server._root(server.db_name("iredmail", database))
        try:
            with conn.cursor() as cur:
                for table, values in rows.items():
                    cur.executemany(insert_sql(table), values)
                cur.execute(f"{analyze} {', '.join(rows)}")
        finally:
            conn.close()


@contextlib.contextmanager
def dns_server(workdir: Path) -> Iterator[Any]:
    """dnsmasq with the tests' ``.test`` zone (SPF records of the external sender domains)."""
    from tests.helpers.dnsmasq import Dnsmasq
    from tests.helpers.servers import require_binary

    server = Dnsmasq(require_binary("dnsmasq"), workdir / "dnsmasq")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def sql_environment(kind: str, workdir: Path) -> Iterator[dict[str, Any]]:
    """A MariaDB (``kind`` 'mysql') or PostgreSQL of its own on iRedMail's schemas, filled, and a
    dnsmasq; yields apd's settings and, under ``DATABASE_KEY``, the watch the bench reads the
    server's CPU time and counters from."""
    if kind == "mysql":
        from tests.helpers.mariadb import remove_mariadb as remove
        from tests.helpers.mariadb import start_mariadb as start
    else:
        from tests.helpers.postgres import remove_postgres as remove
        from tests.helpers.postgres import start_postgres as start

    with dns_server(workdir) as dns:
        server = start()
        try:
            if "iredmail" not in server.schemas:
                raise RuntimeError("the iredmail-default scenarios need iRedMail's schemas in ../shared/iredmail")
            fill(server)
            settings = server.apd_settings("iredmail", DNS_NAMESERVERS=[dns.nameserver])
            watch = MariaDBWatch(server) if kind == "mysql" else PostgresWatch(server)
            yield {**settings, DATABASE_KEY: watch}
        finally:
            remove(server)


def environment(kind: str) -> Any:
    """The ``Scenario.environment`` factory: workdir -> context manager yielding apd settings."""
    return lambda workdir: sql_environment(kind, workdir)
