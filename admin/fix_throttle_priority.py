"""``apd-fix-throttle-priority``: give every throttle setting its account type's priority.

iRedAPD's repair tool (admin-tools.md §6): walks ``throttle`` in id order, 100 rows at a time,
and sets ``priority`` where it differs from the type's, printing each change. The priorities are
the ones apd-throttle-admin writes and the throttle check ranks by (email 100, wildcard address
90, IP 80, wildcard IP and CIDR network 70, domain 60, subdomain 50, top-level domain 40, ``@.``
and ``@ip`` 0). Unlike iRedAPD's tool, a CIDR network gets 70 (iRedAPD: 0, below every domain)
and a wildcard address 90 (iRedAPD stopped with an error).

Exit codes are iRedAPD's: 0 done (or nothing to do), 1 no database, 255 another error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Iterator, Sequence

from admin.common import add_config_option, load_settings, open_tool_store
from apd.errors import StoreError
from apd.log_escape import escape_controls
from apd.store.base import Database
from apd.throttle.rules import specificity

PAGE = 100
NO_DATABASE = "ERROR: Failed to connect to iredapd database."
NOTHING = "No throttle settings, no need to fix. Skip."
EXIT_OK, EXIT_NO_DATABASE, EXIT_FAILED = 0, 1, 255


def fixed_line(account: str, old: int | None, new: int) -> str:
    return f"Fixed throttle priority: account={escape_controls(account)}, priority: {old} -> {new}."


def pages(db: Database) -> Iterator[list[tuple[int, str, int | None]]]:
    """(id, account, priority) rows in id order, a page at a time (keyset: no OFFSET rescans)."""
    last = 0
    while True:
        rows = db.query("SELECT id, account, priority FROM throttle WHERE id > %s ORDER BY id LIMIT %s", (last, PAGE))
        if not rows:
            return
        yield [(int(i), str(a or ""), None if p is None else int(p)) for i, a, p in rows]
        last = int(rows[-1][0])


def fix(db: Database, out: Callable[[str], None] = print) -> int:
    """Fix the priorities; the number of rows seen."""
    seen = 0
    for page in pages(db):
        for row_id, account, old in page:
            seen += 1
            new = specificity(account)
            if old != new:
                db.execute("UPDATE throttle SET priority = %s WHERE id = %s", (new, row_id))
                out(fixed_line(account, old, new))
    if not seen:
        out(NOTHING)
    return seen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="apd-fix-throttle-priority", description=__doc__.split("\n\n")[0])
    add_config_option(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    settings = load_settings(args.config)
    try:
        store = open_tool_store(settings)  # SQLite: its tables made on first use
    except StoreError:
        print(NO_DATABASE)
        return EXIT_NO_DATABASE
    try:
        db = store.iredapd
        try:
            db.query_one("SELECT 1")
        except StoreError:
            print(NO_DATABASE)
            return EXIT_NO_DATABASE
        fix(db)
    except StoreError as exc:
        print(f"ERROR: An error occurred: {exc}")
        return EXIT_FAILED
    finally:
        store.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
