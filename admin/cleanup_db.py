"""``apd-cleanup-db``: remove expired rows from the iredapd database (admin-tools.md §4).

Removes, in bounded batches of ``CLEANUP_QUERY_SIZE_LIMIT`` rows: throttle counters whose
period is over, greylisting triplets past ``record_expired``, senderscore cache entries older
than ``SENDERSCORE_CACHE_DAYS``, and smtp_sessions rows older than
``LOG_SMTP_SESSIONS_EXPIRE_DAYS``. Prints iRedAPD's lines. Run hourly (systemd/apd-cleanup.timer).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Sequence

from admin.common import add_config_option, load_settings, run_on_store
from apd.store.cleanup import count_rows, delete_in_batches, expiries


def removed_line(table: str, total: int) -> str:
    return f"* {table:<20}: {total} records removed."


def left_line(table: str, count: int) -> str:
    return f"* {table:<20}: {count} left."


def cleanup(db, settings, now: int, out: Callable[[str], None] = print) -> None:
    limit = settings.CLEANUP_QUERY_SIZE_LIMIT or 1000
    for expiry in expiries(now, settings.SENDERSCORE_CACHE_DAYS, settings.LOG_SMTP_SESSIONS_EXPIRE_DAYS):
        for total in delete_in_batches(db, expiry, limit):
            out(removed_line(expiry.table, total))
        out(left_line(expiry.table, count_rows(db, expiry.table)))


def main(argv: Sequence[str] | None = None, clock: Callable[[], float] = time.time) -> int:
    parser = argparse.ArgumentParser(prog="apd-cleanup-db", description=__doc__.split("\n\n")[0])
    add_config_option(parser)
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    return run_on_store(settings, lambda store: cleanup(store.iredapd, settings, int(clock())))


if __name__ == "__main__":
    sys.exit(main())
