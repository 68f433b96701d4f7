"""The greylisting whitelist cache's change marker watches a time-based window of ids
(apd/greylisting_whitelist_cache.py): empty after a quiet minute, yet every new row is seen
by the next request; on a real SQLite store."""

from __future__ import annotations

import pytest

from apd.greylisting_whitelist_cache import (
    LATE_COMMIT_SECONDS,
    RELOAD_INTERVAL,
    SLACK,
    WHITELISTS,
    WhitelistCache,
)
from apd.settings import defaults
from apd.store import open_store
from apd.store.sqlite import initialise

ROWS = SLACK + 44


@pytest.fixture
def store(tmp_path):
    settings = defaults().replace(backend="sqlite", sqlite_db_path=str(tmp_path / "apd.sqlite3"))
    store = open_store(settings)
    initialise(store.iredapd)
    store.iredapd.execute("DELETE FROM greylisting_whitelists")
    yield store
    store.close()


def insert(store, sender: str, row_id: int | None = None) -> None:
    if row_id is None:
        sql, params = "INSERT INTO greylisting_whitelists (account, sender, comment) VALUES ('@.', %s, '')", [sender]
    else:
        sql = "INSERT INTO greylisting_whitelists (id, account, sender, comment) VALUES (%s, '@.', %s, '')"
        params = [row_id, sender]
    store.iredapd.execute(sql, params)


def top(store) -> int:
    return store.iredapd.query("SELECT MAX(id) FROM greylisting_whitelists")[0][0]


def request(cache: WhitelistCache, store) -> list[str]:
    """What one greylisting request does with the cache; returns the special rows it newly read."""
    cache.prepare()
    facts = store.greylisting.facts(["@."], ["@."], ["192.0.2.1"], {}, cache.lows())
    added = cache.refresh_moved(facts.markers)
    return [text for _, text in added.get(WHITELISTS, [])]


@pytest.fixture
def cache(store):
    for i in range(ROWS):
        insert(store, f"@d{i}.example")
    clock = [1000.0]
    cache = WhitelistCache(store.greylisting, clock=lambda: clock[0])
    cache.clock = clock  # the test moves it
    request(cache, store)
    return cache


def test_the_window_empties_after_a_quiet_minute(cache, store):
    assert cache.tables[WHITELISTS].low == top(store) - SLACK  # just loaded: the last SLACK ids are watched
    cache.clock[0] += LATE_COMMIT_SECONDS / 2
    request(cache, store)
    assert cache.tables[WHITELISTS].low == top(store) - SLACK
    cache.clock[0] += LATE_COMMIT_SECONDS / 2
    request(cache, store)
    table = cache.tables[WHITELISTS]
    assert table.low == top(store) and table.marker == (0, -1)  # one index probe per request


def test_a_new_row_answers_the_next_request_after_the_window_emptied(cache, store):
    cache.clock[0] += LATE_COMMIT_SECONDS
    request(cache, store)
    insert(store, "198.51.100.0/24")
    assert request(cache, store) == ["198.51.100.0/24"]
    assert request(cache, store) == []  # read once


def test_an_insert_committed_late_is_seen_while_its_range_is_watched(cache, store):
    cache.clock[0] += LATE_COMMIT_SECONDS
    request(cache, store)
    high = top(store)
    insert(store, "203.0.113.0/24", high + 2)  # committed first, with the higher id
    assert request(cache, store) == ["203.0.113.0/24"]
    cache.clock[0] += LATE_COMMIT_SECONDS / 2
    insert(store, "192.0.2.0/24", high + 1)  # took its id earlier, committed later
    assert "192.0.2.0/24" in request(cache, store)  # the rows above the mark are read again


def test_a_full_reload_keeps_the_empty_window(cache, store):
    cache.clock[0] += LATE_COMMIT_SECONDS
    request(cache, store)
    reloads = cache.reloads
    cache.clock[0] += RELOAD_INTERVAL
    request(cache, store)
    assert cache.reloads == reloads + 2  # both tables read again in full
    assert cache.tables[WHITELISTS].low == top(store) and cache.tables[WHITELISTS].marker == (0, -1)
