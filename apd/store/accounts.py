"""Mail-account facts from the vmail SQL database (schemas.md §3.2)."""

from __future__ import annotations

import socket
from typing import Any, Callable, Iterable, Iterator, Sequence

from apd.access_policy import PolicyRows
from apd.address import is_domain
from apd.login_mismatch import SenderRelations
from apd.store.base import Database, in_list


class SqlAccounts:
    """Account lookups every check may need; the LDAP backend offers the same methods."""

    def __init__(self, db: Database):
        self.db = db

    def is_local_domain(
        self,
        domain: str,
        include_alias: bool = True,
        include_backupmx: bool = True,
        alias_target: Callable[[str], str | None] | None = None,
    ) -> bool:
        """``alias_target`` answers the alias part: the request context passes its own, which
        fetches the request's other domains in the same statement for the checks after."""
        if not is_domain(domain):
            return False
        if domain == socket.gethostname():
            return True  # iRedAPD counts the machine host name as local whatever the database says
        sql = "SELECT domain FROM domain WHERE domain = %s AND active = 1"
        if not include_backupmx:
            sql += " AND backupmx = 0"
        if self.db.query_one(sql + " LIMIT 1", (domain,)):
            return True
        return include_alias and (alias_target or self.alias_target)(domain) is not None

    def sender_relations(
        self, sender: str, list_address: str, sasl_username: str, strictly: bool, list_member: bool
    ) -> SenderRelations:
        """How ``sender`` relates to login ``sasl_username`` (reject_sender_login_mismatch step B.4,
        schemas.md §3.2), in one statement: with ``strictly``, is it one of the login's per-user
        alias addresses (also of its ``+ext`` forms)? With ``list_member``, is the login a member
        of the alias ``list_address`` (the sender, or its alias-domain rewrite), or is that an
        active mlmmj list?"""
        tests: dict[str, str] = {}  # what -> an EXISTS test
        params: list[str] = []
        if strictly:
            name, _, domain = sasl_username.rpartition("@")
            tests["alias"] = (
                "EXISTS (SELECT 1 FROM forwardings WHERE address = %s AND is_alias = 1"
                " AND (forwarding = %s OR forwarding LIKE %s ESCAPE '!'))"
            )
            params += [sender, sasl_username, f"{like_escape(name)}+%@{like_escape(domain)}"]
        if list_member:
            tests["member"] = (
                "EXISTS (SELECT 1 FROM forwardings"
                " WHERE address = %s AND forwarding = %s AND is_list = 1 AND active = 1)"
            )
            tests["mlmmj"] = "EXISTS (SELECT 1 FROM maillists WHERE address = %s AND active = 1)"
            params += [list_address, sasl_username, list_address]
        if not tests:
            return SenderRelations()
        row = self.db.query_one("SELECT " + ", ".join(tests.values()), params) or ()
        found = {what for what, value in zip(tests, row) if value}
        return SenderRelations(allowed=bool(found & {"alias", "member"}), mlmmj_list="mlmmj" in found)

    def password_last_change(self, username: str) -> tuple[bool, Any]:
        """(the mailbox exists, its ``passwordlastchange`` as the driver gives it): what
        sql_force_change_password reads (schemas.md §3.2)."""
        row = self.db.query_one("SELECT passwordlastchange FROM mailbox WHERE username = %s LIMIT 1", (username,))
        return (False, None) if row is None else (True, row[0])

    def alias_target(self, domain: str) -> str | None:
        return self.alias_targets([domain])[domain.lower()]

    def alias_targets(self, domains: Iterable[str]) -> dict[str, str | None]:
        """``alias_target`` of several domains in one statement."""

        def pairs(wanted: list[str]) -> Iterator[tuple[str, str]]:
            rows = self.db.query(
                "SELECT alias_domain.alias_domain, alias_domain.target_domain FROM alias_domain, domain"
                " WHERE domain.active = 1 AND domain.domain = alias_domain.target_domain"
                f" AND alias_domain.alias_domain IN ({in_list(wanted)})",
                wanted,
            )
            return ((str(alias), str(target)) for alias, target in rows)

        return collect_alias_targets(domains, pairs)

    def access_policy_rows(self, accounts: Sequence[str], senders: Sequence[str]) -> PolicyRows:
        """The policies of the alias accounts and mailing lists stored under ``accounts`` and,
        among ``senders``, their members, moderators and owners, in one statement (what
        sql_alias_access_policy and sql_ml_access_policy read, schemas.md §3.2). Only the rows
        naming a sender form come back, so a list of any size costs the same. Values are
        compared lowercased, as iRedAPD compares the lists it loads."""
        if not accounts:
            return PolicyRows()
        where = f"address IN ({in_list(accounts)})"
        parts = [
            f"SELECT 'alias', address, accesspolicy FROM alias WHERE {where}",
            f"SELECT 'list', address, accesspolicy FROM maillists WHERE {where}",
        ]
        params: list[str] = [*accounts, *accounts]
        if senders:
            among = in_list(senders)
            parts += [
                f"SELECT 'member', address, forwarding FROM forwardings"
                f" WHERE {where} AND is_list = 1 AND LOWER(forwarding) IN ({among})",
                f"SELECT 'moderator', address, moderator FROM moderators WHERE {where} AND LOWER(moderator) IN ({among})",
                f"SELECT 'owner', address, owner FROM maillist_owners WHERE {where} AND LOWER(owner) IN ({among})",
            ]
            params += [*accounts, *senders] * 3
        found = PolicyRows()
        listed = {"member": found.members, "moderator": found.moderators, "owner": found.owners}
        for kind, address, value in self.db.query(" UNION ALL ".join(parts), params):
            account, text = str(address).lower(), str(value or "")
            if kind == "alias":
                found.alias_policies.setdefault(account, text)
            elif kind == "list":
                found.list_policies.setdefault(account, text)
            else:
                listed[kind].setdefault(account, set()).add(text.lower())
        return found


def like_escape(text: str) -> str:
    """``text`` matched literally by LIKE ... ESCAPE '!' (a ``_`` in a name is no wildcard)."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def collect_alias_targets(
    domains: Iterable[str], pairs: Callable[[list[str]], Iterable[tuple[str, str]]]
) -> dict[str, str | None]:
    """{lowercased domain: its target or None}, asking ``pairs`` once for (alias, target) pairs of
    the valid domains. The first pair naming a domain wins, as a lookup of that domain alone; names
    are compared lowercased (MySQL and LDAP match case-insensitively: a pair may differ in case)."""
    found: dict[str, str | None] = {domain.lower(): None for domain in domains}
    wanted = [domain for domain in found if is_domain(domain)]
    if not wanted:
        return found
    for alias, target in pairs(wanted):
        alias = alias.lower()
        if alias in found and found[alias] is None:
            found[alias] = target.lower()
    return found
