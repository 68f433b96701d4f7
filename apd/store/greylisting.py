"""Greylisting tables of the iredapd database (schemas.md §1.3-§1.7): settings, whitelists, tracking.

Every request reads the current rows: a change to any of these tables (greylisting_admin,
iRedAdmin, plain SQL, another host) applies from the very next request, as in iRedAPD. (The
only worker-side state, the whitelist cache, is checked and verified within that same read.)

Database round trips of one greylisting decision (``Greylisting`` check):

1. ``facts()``: ONE statement (UNION ALL) returns the whitelist rows equal to a sender
   candidate (index seeks), the worker's cached network / capitalised whitelist rows that
   cover this client read back by id (apd/greylisting_whitelist_cache.py), each whitelist
   table's change marker, the settings rows of the recipient candidates, and whether the
   client has passed before. A whitelisted client, a disabled or absent setting, or an SPF
   bypass ends here: 1 round trip. (After a whitelist table changed, the cache reads the new
   rows: one more statement, once per change and worker.)
2. Either ``refresh_passed()`` (previously passed client; one UPDATE) or ``track()``: one
   atomic ``INSERT ... ON CONFLICT/ON DUPLICATE KEY UPDATE ... RETURNING`` that creates,
   resets, counts or passes the triplet: 2 round trips. Two hosts seeing the same new
   triplet at once create one row; neither gets an error.
3. Only when a triplet passes: ``forget_unpassed()`` deletes the client's unpassed rows
   (3 round trips, once per client and month).

A server without ``INSERT ... RETURNING`` (``supports_upsert_returning = False``: MySQL, and
MariaDB before 10.5; set at connect by apd/store/mysql.py) gets the upsert and a SELECT of the
row in one transaction instead (BEGIN, upsert, SELECT, COMMIT: 4 round trips for step 2).
The alias-domain lookup of the recipient domain (vmail or LDAP) comes on top, memoised per
request by RequestContext.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from apd.errors import DuplicateKey
from apd.store.base import Database, in_list

# Row kinds in the UNION ALL of ``facts()``: the whitelist tables are 1 and 2 (as in
# apd/greylisting_whitelist_cache.py); +10 their verified cached rows, +20 their change markers.
_SPF, _WHITELIST, _SETTING, _PASSED = 1, 2, 3, 4
_VERIFIED, _MARKER = 10, 20
WHITELIST_TABLES = {_SPF: "greylisting_whitelist_domain_spf", _WHITELIST: "greylisting_whitelists"}

TRACKING_COLUMNS = (
    "sender",
    "recipient",
    "client_address",
    "sender_domain",
    "rcpt_domain",
    "init_time",
    "block_expired",
    "record_expired",
    "blocked_count",
    "passed",
)
# The triplet state machine of plugins.md step 9, evaluated on the stored row. ``excluded.*``
# is the proposed new row: init_time = now, block_expired / record_expired = the values of a
# new unauthenticated triplet. The extra parameter is now + AUTH_EXPIRE.
#   reset (now > record_expired) | too soon (now < block_expired) | pass (otherwise)
# MySQL evaluates the assignments left to right and later ones see earlier results, so the
# two columns every condition reads (block_expired, record_expired) are assigned last, and the
# 'too soon' test in the last line only runs when block_expired was left unchanged.
# A reset keeps ``passed`` (schemas.md §1.12 step 6), so which branch ran is read from the row
# the statement leaves (``greylisted_after``), not from ``passed`` alone.
TRACKING_UPDATE = (
    "blocked_count = CASE WHEN excluded.init_time > greylisting_tracking.record_expired THEN 1"
    " WHEN excluded.init_time < greylisting_tracking.block_expired THEN greylisting_tracking.blocked_count + 1 ELSE greylisting_tracking.blocked_count END, "
    "init_time = CASE WHEN excluded.init_time > greylisting_tracking.record_expired THEN excluded.init_time ELSE greylisting_tracking.init_time END, "
    "passed = CASE WHEN excluded.init_time > greylisting_tracking.record_expired THEN greylisting_tracking.passed"
    " WHEN excluded.init_time < greylisting_tracking.block_expired THEN greylisting_tracking.passed ELSE 1 END, "
    "block_expired = CASE WHEN excluded.init_time > greylisting_tracking.record_expired THEN excluded.block_expired"
    " ELSE greylisting_tracking.block_expired END, "
    "record_expired = CASE WHEN excluded.init_time > greylisting_tracking.record_expired THEN excluded.record_expired"
    " WHEN excluded.init_time < greylisting_tracking.block_expired THEN greylisting_tracking.record_expired ELSE %s END"
)
TRACKING_KEY = ("sender", "recipient", "client_address")
# What ``track()`` reads back to tell the branches apart.
TRACKING_RESULT = "passed, blocked_count, init_time, block_expired, record_expired"


@dataclass(frozen=True)
class SettingRow:
    account: str
    sender: str
    priority: int
    sender_priority: int
    active: bool


@dataclass(frozen=True)
class Facts:
    """What one request needs to know before tracking, read in one query."""

    spf_whitelist: tuple[str, ...]  # LOWER(sender) of greylisting_whitelist_domain_spf rows
    whitelist: tuple[str, ...]  # LOWER(sender) of greylisting_whitelists rows
    settings: tuple[SettingRow, ...]  # greylisting rows, in database order (sorting is the check's)
    client_passed: bool
    verified: Mapping[int, Mapping[int, tuple[str, str]]] = field(default_factory=dict)  # kind -> id -> row
    markers: Mapping[int, tuple[int, int]] = field(default_factory=dict)  # kind -> (count, max id)


@dataclass(frozen=True)
class Tracked:
    """The outcome of ``track()``: did this attempt pass, and the row's blocked_count."""

    passed: bool
    blocked_count: int


def greylisted_after(row: Sequence[Any], times: "Times") -> bool:
    """Which branch the tracking statement took, from the row it left (TRACKING_RESULT order).

    Pass: ``passed = 1`` and ``block_expired <= now`` (it is never moved by a pass). A new,
    reset or too-soon triplet has ``block_expired > now``, or, with a block time of 0, was just
    (re)initialised: ``init_time = now``, ``blocked_count = 1`` and the unauthenticated
    ``record_expired`` (when that equals the authenticated one the two cannot be told apart and
    the row counts as passed, as a same-second retry of a 0-minute block would).
    """
    passed, blocked_count, init_time, block_expired, record_expired = (int(v or 0) for v in row)
    if passed != 1 or block_expired > times.now:
        return True
    return (
        init_time == times.now
        and blocked_count == 1
        and record_expired == times.unauth_expired
        and record_expired != times.auth_expired
    )


@dataclass(frozen=True)
class Times:
    """Absolute epoch seconds for one tracking statement."""

    now: int
    block_expired: int  # now + BLOCK_EXPIRE minutes
    unauth_expired: int  # now + UNAUTH_TRIPLET_EXPIRE days
    auth_expired: int  # now + AUTH_TRIPLET_EXPIRE days


class GreylistingStore:
    def __init__(self, db: Database):
        self.db = db

    # --- the check's statements

    def facts(
        self,
        rcpts: Sequence[str],
        senders: Sequence[str],
        client_keys: Sequence[str],
        verify: Mapping[int, Sequence[int]] | None = None,
        lows: Mapping[int, int] | None = None,
    ) -> Facts:
        """Whitelist rows, settings rows and the passed state, in one statement.

        Whitelist rows: those whose ``sender`` equals a candidate (an index seek on (account,
        sender)), plus the rows with the ids in ``verify`` (the worker's cached networks and
        capitalised rows for this client, apd/greylisting_whitelist_cache.py), read back with
        their current text and account. ``lows`` asks for each table's change marker:
        ``COUNT(*), MAX(id)`` of the rows with id > low.
        """
        verify = verify or {}
        lows = lows or {}
        rc, sc, kc = in_list(rcpts), in_list(senders), in_list(client_keys)
        parts: list[str] = []
        params: list[Any] = []
        for kind, table in WHITELIST_TABLES.items():
            parts.append(
                f"SELECT {kind}, LOWER(sender), account, 0, 0, 0 FROM {table}"
                f" WHERE account IN ({rc}) AND sender IN ({sc})"
            )
            params += [*rcpts, *senders]
            ids = list(verify.get(kind, ()))
            if ids:
                parts.append(
                    f"SELECT {kind + _VERIFIED}, LOWER(sender), account, id, 0, 0 FROM {table}"
                    f" WHERE id IN ({in_list(ids)})"
                )
                params += ids
            if kind in lows:
                parts.append(f"SELECT {kind + _MARKER}, '', '', COUNT(*), MAX(id), 0 FROM {table} WHERE id > %s")
                params.append(lows[kind])
        parts.append(
            f"SELECT {_SETTING}, sender, account, priority, sender_priority, active FROM greylisting"
            f" WHERE account IN ({rc})"
        )
        params += rcpts
        parts.append(
            f"SELECT {_PASSED}, '', '', COUNT(*), 0, 0 FROM greylisting_tracking"
            f" WHERE client_address IN ({kc}) AND passed = 1"
        )
        params += client_keys
        accounts = set(rcpts)
        found: dict[int, list[str]] = {kind: [] for kind in WHITELIST_TABLES}
        verified: dict[int, dict[int, tuple[str, str]]] = {kind: {} for kind in WHITELIST_TABLES}
        markers: dict[int, tuple[int, int]] = {}
        settings: list[SettingRow] = []
        passed = False
        for kind, text, account, n1, n2, n3 in self.db.query(" UNION ALL ".join(parts), params):
            text, account = text or "", account or ""
            if kind in WHITELIST_TABLES:
                found[kind].append(text)
            elif kind - _VERIFIED in WHITELIST_TABLES:
                verified[kind - _VERIFIED][int(n1)] = (account, text)
                if account.lower() in accounts:
                    found[kind - _VERIFIED].append(text)
            elif kind - _MARKER in WHITELIST_TABLES:
                markers[kind - _MARKER] = (int(n1 or 0), -1 if n2 is None else int(n2))
            elif kind == _SETTING:
                settings.append(SettingRow(account, text, int(n1 or 0), int(n2 or 0), int(n3 or 0) == 1))
            else:
                passed = int(n1 or 0) > 0
        return Facts(tuple(found[_SPF]), tuple(found[_WHITELIST]), tuple(settings), passed, verified, markers)

    def whitelist_rows_above(self, kind: int, low: int) -> list[tuple[int, str, str]]:
        """(id, account, sender) of a whitelist table's rows with id > low (cache loads)."""
        rows = self.db.query(f"SELECT id, account, sender FROM {WHITELIST_TABLES[kind]} WHERE id > %s", [low])
        return [(int(i), a or "", s or "") for i, a, s in rows]

    def refresh_passed(self, client_keys: Sequence[str], record_expired: int) -> int:
        """Keep a passed client passed: new record_expired on all its passed rows."""
        return self.db.execute(
            f"UPDATE greylisting_tracking SET record_expired = %s WHERE client_address IN ({in_list(client_keys)})"
            " AND passed = 1",
            [record_expired, *client_keys],
        )

    def track(
        self, sender: str, recipient: str, client_key: str, sender_domain: str, rcpt_domain: str, times: Times
    ) -> Tracked:
        """Create, reset, count or pass the triplet in one atomic statement."""
        dialect = self.db.dialect
        values = [
            sender,
            recipient,
            client_key,
            sender_domain,
            rcpt_domain,
            times.now,
            times.block_expired,
            times.unauth_expired,
            1,
            0,
        ]
        upsert = dialect.upsert("greylisting_tracking", TRACKING_COLUMNS, TRACKING_KEY, TRACKING_UPDATE)
        params = [*values, times.auth_expired]
        if getattr(dialect, "supports_upsert_returning", True):
            row = self.db.query_one(f"{upsert} RETURNING {TRACKING_RESULT}", params)
        else:
            with self.db.transaction():
                self.db.execute(upsert, params)
                row = self.db.query_one(
                    f"SELECT {TRACKING_RESULT} FROM greylisting_tracking"
                    " WHERE sender = %s AND recipient = %s AND client_address = %s",
                    [sender, recipient, client_key],
                )
        if row is None:  # cannot happen: the statement leaves the row in place
            return Tracked(False, 1)
        return Tracked(not greylisted_after(row, times), int(row[1] or 0))

    def forget_unpassed(self, client_key: str) -> int:
        """After a pass: the client's other unpassed triplets are no longer needed."""
        return self.db.execute(
            "DELETE FROM greylisting_tracking WHERE client_address = %s AND passed = 0", [client_key]
        )

    def tracking_row(self, sender: str, recipient: str, client_key: str) -> dict | None:
        """The stored triplet (tests and tools); None when absent."""
        row = self.db.query_one(
            f"SELECT {', '.join(TRACKING_COLUMNS)} FROM greylisting_tracking"
            " WHERE sender = %s AND recipient = %s AND client_address = %s",
            [sender, recipient, client_key],
        )
        return dict(zip(TRACKING_COLUMNS, row)) if row else None

    # --- settings (greylisting_admin --enable/--disable/--delete/--list)

    def list_settings(self, account: str | None = None) -> list[SettingRow]:
        sql = "SELECT account, sender, priority, sender_priority, active FROM greylisting"
        params: list[str] = []
        if account is not None:
            sql += " WHERE account = %s"
            params.append(account)
        rows = self.db.query(sql + " ORDER BY priority DESC, sender_priority DESC, id", params)
        return [SettingRow(a, s or "", int(p or 0), int(sp or 0), int(act or 0) == 1) for a, s, p, sp, act in rows]

    def set_setting(self, account: str, priority: int, sender: str, sender_priority: int, active: bool) -> None:
        """Replace the (account, sender) row, as iRedAPD's tool does (delete, then insert)."""
        with self.db.transaction():
            self.db.execute("DELETE FROM greylisting WHERE account = %s AND sender = %s", [account, sender])
            self.db.execute(
                "INSERT INTO greylisting (account, priority, sender, sender_priority, active)"
                " VALUES (%s, %s, %s, %s, %s)",
                [account, priority, sender, sender_priority, 1 if active else 0],
            )

    def delete_setting(self, account: str, sender: str) -> int:
        return self.db.execute("DELETE FROM greylisting WHERE account = %s AND sender = %s", [account, sender])

    # --- whitelists

    def add_whitelist_domain(self, domain: str) -> bool:
        """False when the domain was already listed (looked for first, as in add_whitelist)."""
        if self.db.query_one("SELECT 1 FROM greylisting_whitelist_domains WHERE domain = %s", [domain]):
            return False
        try:
            self.db.execute("INSERT INTO greylisting_whitelist_domains (domain) VALUES (%s)", [domain])
        except DuplicateKey:
            return False
        return True

    def remove_whitelist_domain(self, domain: str) -> None:
        """Drop the domain and every row the SPF tool derived from it (DIFFERENCES.md 8)."""
        comment = f"AUTO-UPDATE: {domain}"
        with self.db.transaction():
            self.db.execute("DELETE FROM greylisting_whitelist_domains WHERE domain = %s", [domain])
            self.db.execute("DELETE FROM greylisting_whitelists WHERE comment = %s", [comment])
            self.db.execute("DELETE FROM greylisting_whitelist_domain_spf WHERE comment = %s", [comment])

    def whitelist_domains(self) -> list[str]:
        return [str(r[0]) for r in self.db.query("SELECT domain FROM greylisting_whitelist_domains ORDER BY domain")]

    def whitelists(self, account: str | None = None) -> list[tuple[str, str, str]]:
        """(sender, account, comment) rows of greylisting_whitelists, by account then sender."""
        sql = "SELECT sender, account, comment FROM greylisting_whitelists"
        params: list[str] = []
        if account is not None:
            sql += " WHERE account = %s"
            params.append(account)
        return [(s, a, c or "") for s, a, c in self.db.query(sql + " ORDER BY account, sender", params)]

    def spf_whitelists(self) -> list[tuple[str, str, str]]:
        rows = self.db.query(
            "SELECT sender, account, comment FROM greylisting_whitelist_domain_spf ORDER BY account, sender"
        )
        return [(s, a, c or "") for s, a, c in rows]

    def add_whitelist(self, account: str, sender: str, comment: str = "") -> bool:
        """False when the (account, sender) row exists already. Looked for first: the outbound
        recipient whitelisting adds the same pair for every message, and a failing INSERT costs
        an error in PostgreSQL's log each time. The unique key still settles a race."""
        found = "SELECT 1 FROM greylisting_whitelists WHERE account = %s AND sender = %s"
        if self.db.query_one(found, [account, sender]):
            return False
        try:
            self.db.execute(
                "INSERT INTO greylisting_whitelists (account, sender, comment) VALUES (%s, %s, %s)",
                [account, sender, comment],
            )
        except DuplicateKey:
            return False
        return True
