"""Run the configured checks on one request as the daemon would, writing nothing.

Each database of the store runs inside one transaction that is rolled back at the end, so the
checks take the daemon's own code path (a greylisting first attempt inserts its row, a throttle
counter is incremented) and the writes vanish; no session row, decision line or quota notice is
made. While a check runs, its SQL statements (with their parameters and what they returned) and
its log lines are recorded: that is what it looked up and why it answered.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from apd import checks as check_registry
from apd import replies
from apd.context import RequestContext
from apd.errors import StoreError, StoreUnavailable
from apd.log_escape import escape_controls
from apd.netmatch import TrustedClients
from apd.policy import ends_chain
from apd.protocol import PolicyRequest

MAX_ROWS_SHOWN = 20


@dataclass
class Statement:
    database: str
    sql: str
    params: list[Any]
    rows: list[list[Any]] | None = None  # a read: the rows returned (at most MAX_ROWS_SHOWN)
    row_count: int = 0  # rows returned, or rows a write changed
    write: bool = False  # rolled back: the daemon would have kept it
    error: str = ""


@dataclass
class CheckTrace:
    name: str
    priority: int
    skipped: str = ""  # why it did not run (protocol state, backend, an earlier answer)
    result: str | None = None
    decided: bool = False
    error: str = ""
    store_down: str = ""
    log: list[str] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


@dataclass
class Explanation:
    request: dict[str, str]
    checks: list[CheckTrace]
    action: str
    decided_by: str
    note: str = ""  # a protocol-level answer (invalid address, no checks) or the fail-safe answer


class _Recording:
    """The check whose statements and log lines are being recorded."""

    def __init__(self) -> None:
        self.trace: CheckTrace | None = None


class _LogCapture(logging.Handler):
    def __init__(self, recording: _Recording):
        super().__init__(logging.DEBUG)
        self.recording = recording

    def emit(self, record: logging.LogRecord) -> None:
        if self.recording.trace is not None:
            self.recording.trace.log.append(f"{record.levelname} {escape_controls(record.getMessage())}")


class _WouldNotify:
    """Stands in for the throttle check's quota notices: says what would be sent, sends nothing."""

    def __init__(self, recording: _Recording):
        self.recording = recording

    def quota_exceeded(self, event: Any) -> bool:
        if self.recording.trace is not None:
            self.recording.trace.notices.append(
                f"a quota notice for {escape_controls(event.user)} ({event.rule}={event.value}) would be sent, "
                "unless one was sent in this window already"
            )
        return False

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None  # drain() and friends: nothing to wait for


def _record_statements(database: Any, recording: _Recording) -> None:
    run = database._run

    def recorded(sql: str, params: Any, fetch: bool, many: bool = False) -> Any:
        write = not sql.lstrip().upper().startswith(("SELECT", "BEGIN", "ROLLBACK", "COMMIT", "SAVEPOINT"))
        statement = Statement(database.name, " ".join(sql.split()), [list(p) for p in params] if many else list(params))
        statement.write = write
        trace = recording.trace
        if trace is not None and not sql.lstrip().upper().startswith(("BEGIN", "ROLLBACK")):
            trace.statements.append(statement)
        try:
            result = run(sql, params, fetch, many)
        except StoreError as exc:
            statement.error = str(exc)
            raise
        if fetch:
            rows = [list(row) for row in result]
            statement.row_count = len(rows)
            statement.rows = [[_plain(v) for v in row] for row in rows[:MAX_ROWS_SHOWN]]
        else:
            statement.row_count = int(result or 0)
        return result

    database._run = recorded


def _plain(value: Any) -> Any:
    if isinstance(value, (int, float, str)) or value is None:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


@contextlib.contextmanager
def _captured_logs(recording: _Recording) -> Iterator[None]:
    logger = logging.getLogger("apd")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    logger.handlers[:] = [_LogCapture(recording)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]


def explain(settings: Any, store: Any, attrs: dict[str, str], now: float | None = None) -> Explanation:
    """Run the configured checks on ``attrs`` against ``store`` and undo what they wrote."""
    now = time.time() if now is None else now
    request = PolicyRequest.build(attrs, tuple(settings.RECIPIENT_DELIMITERS))
    planned, _ = check_registry.plan(settings)
    recording = _Recording()
    with _captured_logs(recording):
        checks = check_registry.instantiate(planned, settings, store)
    for check in checks:
        if hasattr(check, "notices"):
            check.notices = _WouldNotify(recording)
    for database in store.databases():
        _record_statements(database, recording)
    traces = [CheckTrace(check.name, getattr(check, "priority", 0)) for check in checks]
    try:
        with _captured_logs(recording), _rolled_back(store) as down:
            return _run(settings, store, request, checks, traces, recording, now, down)
    finally:
        for check in checks:
            with contextlib.suppress(Exception):
                check.close()


@contextlib.contextmanager
def _rolled_back(store: Any) -> Iterator[list[str]]:
    """Every database in a transaction rolled back at the end; a database that cannot be
    reached is named in the list yielded (the check that needs it will say so)."""
    down: list[str] = []
    with contextlib.ExitStack() as stack:
        for database in store.databases():
            try:
                stack.enter_context(database.rolled_back())
            except StoreError as exc:
                down.append(str(exc))
        yield down


def _run(settings, store, request, checks, traces, recording, now, down) -> Explanation:
    attrs = dict(request.attrs)
    if request.invalid_reply:
        return Explanation(attrs, traces, request.invalid_reply, "", "an address field is not valid: no check runs")
    if not checks:
        return Explanation(attrs, traces, replies.NO_ENABLED_PLUGINS, "", "no check is enabled")
    ctx = RequestContext(request, store, TrustedClients(settings.MYNETWORKS, settings.ENABLE_ALL_WILDCARD_IP), now)
    state = request.protocol_state
    decided: CheckTrace | None = None
    action, note = replies.DUNNO, ""
    for check, trace in zip(checks, traces):
        if decided is not None:
            trace.skipped = f"not asked: {decided.name} already answered"
            continue
        if state not in check.states:
            trace.skipped = f"runs at {', '.join(sorted(check.states))}, not {state or '(no state)'}"
            continue
        if not check.applies:
            trace.skipped = f"needs another backend than {settings.backend!r}: answers DUNNO"
            continue
        recording.trace = trace
        try:
            result = check.check(request, ctx)
        except StoreUnavailable as exc:
            trace.store_down = str(exc)
            if not settings.STORE_FAILURE_ACTION.startswith("DUNNO"):
                action, decided = settings.STORE_FAILURE_ACTION, trace
                trace.decided = True
                note = "a database is down: the daemon answers STORE_FAILURE_ACTION"
            continue
        except Exception as exc:  # the daemon logs it and counts the check as DUNNO
            trace.error = f"{type(exc).__name__}: {escape_controls(str(exc))} (counted as DUNNO)"
            continue
        finally:
            recording.trace = None
        trace.result = result if isinstance(result, str) else None
        if isinstance(result, str) and ends_chain(result):
            action, decided = result or replies.DUNNO, trace
            trace.decided = True
    if down and not note:
        note = "database not reachable: " + "; ".join(down)
    return Explanation(attrs, traces, action, decided.name if decided else "", note)
