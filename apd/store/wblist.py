"""White/blacklist tables: amavisd ``users``/``mailaddr``/``wblist``/``outbound_wblist``
(schemas.md §2) and iredapd ``wblist_rdns`` (schemas.md §1.8).

``email`` is VARBINARY on MySQL/MariaDB and BYTEA on PostgreSQL, so values are passed as
bytes (PostgreSQL cannot compare BYTEA with text; byte comparison is what Amavisd does) and
results are decoded back to str. SQLite compares BLOB and TEXT values as different: there
apd writes TEXT, which is what plain SQL (``INSERT ... VALUES ('1.2.3.4')``) writes and
compares, and every lookup value is sent in both forms (``blob_text_distinct``), so rows
written as BLOB by other tools match too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from apd.address import MAILADDR_PRIORITIES, classify
from apd.store.base import Database, in_list

WB_COLOURS = ("W", "B")


@dataclass(frozen=True)
class ListRow:
    """One list entry joined with both of its addresses.

    ``direction`` is 'in' (``wblist``: local = recipient, external = sender), 'in-net' (the
    same, found through a network of the client IP) or 'out' (``outbound_wblist``: local =
    sender, external = recipient).
    """

    direction: str
    local_id: int
    local_priority: int
    local_email: str
    ext_id: int
    ext_priority: int
    ext_email: str
    wb: str


@dataclass(frozen=True)
class Lookup:
    rows: list[ListRow]
    # (row count, highest id) of mailaddr rows above the caller's low-water mark; None when
    # the caller did not ask for it.
    marker: tuple[int, int] | None


def text(value: Any) -> str:
    """A VARBINARY/BYTEA/BLOB value (bytes, memoryview) or TEXT as str."""
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


_COLUMNS = "u.id, u.priority, u.email, m.id, m.priority, m.email, w.wb"
# CROSS JOIN fixes the join order on SQLite (its planner may otherwise walk every list row of
# an account): both address lists are resolved through their unique indexes first, then each
# (local, external) pair is one primary-key probe into the list table. The cost depends on the
# number of candidate addresses, never on how many entries a list holds. MySQL and PostgreSQL
# read CROSS JOIN as an inner join and find the same plan from their statistics.
_INBOUND = (
    "SELECT '{kind}', " + _COLUMNS + " FROM users u CROSS JOIN mailaddr m CROSS JOIN wblist w"
    " WHERE u.email IN ({local}) AND {ext_filter} AND w.rid = u.id AND w.sid = m.id"
)
_OUTBOUND = (
    "SELECT 'out', " + _COLUMNS + " FROM users u CROSS JOIN mailaddr m CROSS JOIN outbound_wblist w"
    " WHERE u.email IN ({local}) AND m.email IN ({ext}) AND w.sid = u.id AND w.rid = m.id"
)
# Column types line up with the branches above (PostgreSQL resolves UNION types by position).
_MARKER = "SELECT 'mark', COUNT(*), MAX(id), NULL, NULL, NULL, NULL, NULL FROM mailaddr WHERE id > %s"


class AmavisdLists:
    """The amavisd database as the amavisd_wblist check and wblist_admin use it."""

    def __init__(self, db: Database):
        self.db = db
        self._both_forms = bool(getattr(db.dialect, "blob_text_distinct", False))

    def _emails(self, values: Iterable[str]) -> list[Any]:
        """Lookup parameters for ``email IN (...)``."""
        unique = list(dict.fromkeys(values))
        encoded: list[Any] = [v.encode("utf-8") for v in unique]
        return encoded + unique if self._both_forms else encoded

    def _stored(self, value: str) -> Any:
        """The parameter that writes an ``email`` value."""
        return value if self._both_forms else value.encode("utf-8")

    # --- the check

    def lookup(
        self,
        inbound: tuple[Sequence[str], Sequence[str]] | None,
        outbound: tuple[Sequence[str], Sequence[str]] | None,
        network_ids: Sequence[int] = (),
        marker_above: int | None = None,
    ) -> Lookup:
        """Every list row that can decide this request, in ONE statement.

        ``inbound`` = (recipient candidates, sender candidates), ``outbound`` = (sender
        candidates, recipient candidates), ``network_ids`` = mailaddr ids of networks that
        contain the client (inbound only). With ``marker_above`` the statement also returns
        the change marker of mailaddr (see NetworkIndex).
        """
        parts: list[str] = []
        params: list[Any] = []
        if inbound:
            local, ext = self._emails(inbound[0]), self._emails(inbound[1])
            parts.append(_INBOUND.format(kind="in", local=in_list(local), ext_filter=f"m.email IN ({in_list(ext)})"))
            params += local + ext
            if network_ids:
                ids = list(dict.fromkeys(network_ids))
                parts.append(
                    _INBOUND.format(kind="in-net", local=in_list(local), ext_filter=f"m.id IN ({in_list(ids)})")
                )
                params += local + ids
        if outbound:
            local, ext = self._emails(outbound[0]), self._emails(outbound[1])
            parts.append(_OUTBOUND.format(local=in_list(local), ext=in_list(ext)))
            params += local + ext
        if marker_above is not None:
            parts.append(_MARKER)
            params.append(marker_above)
        if not parts:
            return Lookup([], None)
        rows: list[ListRow] = []
        marker = None
        for kind, a, b, c, d, e, f, wb in self.db.query(" UNION ALL ".join(parts), params):
            if kind == "mark":
                marker = (int(a or 0), int(b) if b is not None else marker_above)
            else:
                rows.append(ListRow(kind, int(a), int(b), text(c), int(d), int(e), text(f), text(wb)))
        return Lookup(rows, marker)

    def mailaddr_networks(self) -> tuple[list[tuple[int, str]], int]:
        """(id, email) of the rows that may be networks (no '@'), and the highest id of all:
        the full load of the network tree, half the rows of a typical table."""
        rows = self.db.query(
            "SELECT id, email FROM mailaddr WHERE email NOT LIKE %s UNION ALL SELECT MAX(id), NULL FROM mailaddr",
            (self._stored("%@%"),),
        )
        top = next((int(i) for i, e in rows if e is None and i is not None), -1)
        return [(int(i), text(e)) for i, e in rows if e is not None], top

    def mailaddr_above(self, low: int) -> list[tuple[int, str]]:
        """(id, email) of every mailaddr row with id > low, by id."""
        rows = self.db.query("SELECT id, email FROM mailaddr WHERE id > %s ORDER BY id", (low,))
        return [(int(i), text(e)) for i, e in rows]

    # --- wblist_admin (admin-tools.md §1, libs/wblist.py)

    def _list_table(self, outbound: bool) -> tuple[str, str, str]:
        """(table, column holding the users id, column holding the mailaddr id)."""
        return ("outbound_wblist", "sid", "rid") if outbound else ("wblist", "rid", "sid")

    def account_id(self, account: str, create: bool) -> int | None:
        """``users.id`` of the account; created with policy_id 0 and the type's priority."""
        sql = "SELECT id FROM users WHERE email IN ({}) LIMIT 1"
        values = self._emails([account])
        row = self.db.query_one(sql.format(in_list(values)), values)
        if row or not create:
            return int(row[0]) if row else None
        priority = MAILADDR_PRIORITIES.get(classify(account) or "", 0)
        insert = self.db.dialect.insert_ignore("users", ("policy_id", "email", "priority"), ("email",))
        self.db.execute(insert, (0, self._stored(account), priority))
        row = self.db.query_one(sql.format(in_list(values)), values)
        return int(row[0]) if row else None

    def _mailaddr_ids(self, addresses: Sequence[str]) -> list[tuple[str, int]]:
        """(email, id) of the mailaddr rows of ``addresses`` (on SQLite an address may have
        both a BLOB and a TEXT row; both count)."""
        values = self._emails(addresses)
        rows = self.db.query(f"SELECT id, email FROM mailaddr WHERE email IN ({in_list(values)})", values)
        return [(text(e), int(i)) for i, e in rows]

    def add(self, account: str, addresses: Sequence[str], wb: str, outbound: bool) -> None:
        """Add entries of colour ``wb``; an entry of the other colour for the same pair is replaced."""
        table, own, other = self._list_table(outbound)
        insert_addr = self.db.dialect.insert_ignore("mailaddr", ("email", "priority"), ("email",))
        with self.db.transaction():
            user_id = self.account_id(account, create=True)
            # An existing mailaddr row keeps its priority, as with iRedAPD's tool.
            existing = {email for email, _ in self._mailaddr_ids(addresses)}
            for address in dict.fromkeys(addresses):
                if address not in existing:
                    priority = MAILADDR_PRIORITIES.get(classify(address) or "", 0)
                    self.db.execute(insert_addr, (self._stored(address), priority))
            ids = sorted({i for _, i in self._mailaddr_ids(addresses)})
            if not ids:
                return
            # iRedAPD deletes the pairs, then inserts them; an upsert ends the same, and two
            # tools adding the same pair at once cannot collide on the primary key.
            upsert = self.db.dialect.upsert(table, (own, other, "wb"), ("rid", "sid"), "wb = excluded.wb")
            self.db.execute_many(upsert, [(user_id, i, wb) for i in ids])

    def delete(self, account: str, addresses: Sequence[str], wb: str, outbound: bool) -> list[str]:
        """Delete entries of colour ``wb``; returns the given addresses that exist in mailaddr."""
        table, own, other = self._list_table(outbound)
        with self.db.transaction():
            user_id = self.account_id(account, create=False)
            found = self._mailaddr_ids(addresses)
            if user_id is not None and found:
                ids = sorted({i for _, i in found})
                self.db.execute(
                    f"DELETE FROM {table} WHERE {own} = %s AND wb = %s AND {other} IN ({in_list(ids)})",
                    [user_id, wb, *ids],
                )
        existing = {email for email, _ in found}
        return [a for a in dict.fromkeys(addresses) if a in existing]

    def delete_all(self, account: str, wb: str, outbound: bool) -> int:
        table, own, _ = self._list_table(outbound)
        with self.db.transaction():
            user_id = self.account_id(account, create=False)
            if user_id is None:
                return 0
            return self.db.execute(f"DELETE FROM {table} WHERE {own} = %s AND wb = %s", (user_id, wb))

    def entries(self, account: str, wb: str, outbound: bool) -> list[str]:
        """The addresses listed with colour ``wb`` for the account, sorted."""
        table, own, other = self._list_table(outbound)
        values = self._emails([account])
        rows = self.db.query(
            f"SELECT m.email, w.wb FROM users u JOIN {table} w ON w.{own} = u.id"
            f" JOIN mailaddr m ON m.id = w.{other} WHERE u.email IN ({in_list(values)})",
            values,
        )
        # Exact comparison: MySQL's case-insensitive collation would also match 'w'.
        return sorted(text(e) for e, colour in rows if text(colour) == wb)


class RdnsList:
    """``iredapd.wblist_rdns``: reverse DNS names and ``.suffix`` entries."""

    def __init__(self, db: Database):
        self.db = db

    def lookup(self, names: Sequence[str]) -> list[tuple[str, str]]:
        """(rdns, wb) of every row whose name is one of ``names``."""
        unique = list(dict.fromkeys(names))
        rows = self.db.query(f"SELECT rdns, wb FROM wblist_rdns WHERE rdns IN ({in_list(unique)})", unique)
        return [(text(r), text(w)) for r, w in rows]
