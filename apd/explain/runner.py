"""Run the configured checks on one request as the daemon would, writing nothing.

The checks take the daemon's own code path against the live store; what one writes (a first
greylisting attempt's row, a throttle count) is undone when it ends (apd/explain/sandbox.py),
and no session row, decision line or quota notice is made. While a check runs, its SQL
statements (with their parameters and what they returned), its log lines and the findings of
the greylisting and throttle repositories (apd/explain/views.py) are recorded: what it looked
up and why it answered.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from apd import checks as check_registry
from apd import replies
from apd.checks.greylisting import Timing
from apd.context import RequestContext
from apd.errors import StoreError, StoreUnavailable
from apd.explain.sandbox import Sandbox, Statement
from apd.explain.views import StoreView
from apd.log_escape import escape_controls
from apd.netmatch import TrustedClients
from apd.policy import ends_chain
from apd.protocol import PolicyRequest
from apd.store.throttle_notices import claim_notice


@dataclass
class CheckTrace:
    name: str
    priority: int
    skipped: str = ""  # why it did not run (protocol state, backend, an earlier answer)
    result: str | None = None
    decided: bool = False
    error: str = ""
    store_down: str = ""
    findings: list[str] = field(default_factory=list)  # what it looked up, in words (greylisting, throttle)
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
    """The check whose statements, findings and log lines are being recorded."""

    def __init__(self) -> None:
        self.trace: CheckTrace | None = None

    def statement(self, statement: Statement) -> None:
        if self.trace is not None:
            self.trace.statements.append(statement)

    def finding(self, text: str) -> None:
        if self.trace is not None:
            self.trace.findings.append(escape_controls(text))


class _LogCapture(logging.Handler):
    def __init__(self, recording: _Recording):
        super().__init__(logging.DEBUG)
        self.recording = recording

    def emit(self, record: logging.LogRecord) -> None:
        if self.recording.trace is not None:
            self.recording.trace.log.append(f"{record.levelname} {escape_controls(record.getMessage())}")


class _WouldNotify:
    """Stands in for the throttle check's quota notices: claims the window's notice by the
    daemon's own atomic UPDATE (undone with the check's other writes) to say whether one would
    be sent, and sends nothing."""

    def __init__(self, recording: _Recording, notices: Any):
        self.recording = recording
        self.db = getattr(notices, "db", None)  # None: notices are off (NOTIFICATION_RECIPIENTS empty)
        envelope = getattr(notices, "envelope", None)
        self.recipients = ", ".join(envelope.recipients) if envelope else ""

    def quota_exceeded(self, event: Any) -> bool:
        what = f"quota notice for {escape_controls(event.user)} ({event.rule}={event.value})"
        if self.db is None:
            self._say(f"no {what}: NOTIFICATION_RECIPIENTS is empty")
            return False
        try:
            claimed = claim_notice(self.db, event.tid, event.tracking_account, event.now, event.period)
        except StoreError as exc:
            self._say(f"no {what}: claiming it failed: {escape_controls(str(exc))}")
            return False
        if claimed:
            self._say(f"a {what} would be sent to {escape_controls(self.recipients)}")
        else:
            self._say(f"no {what}: one was sent in this counting window already")
        return False

    def _say(self, text: str) -> None:
        if self.recording.trace is not None:
            self.recording.trace.notices.append(text)

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None  # drain() and friends: nothing to wait for


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
    view = StoreView(
        store,
        recording.finding,
        Timing(
            settings.GREYLISTING_BLOCK_EXPIRE,
            settings.GREYLISTING_AUTH_TRIPLET_EXPIRE,
            settings.GREYLISTING_UNAUTH_TRIPLET_EXPIRE,
        ),
    )
    with _captured_logs(recording):
        checks = check_registry.instantiate(planned, settings, view)
    for check in checks:
        if hasattr(check, "notices"):
            check.notices = _WouldNotify(recording, check.notices)
    traces = [CheckTrace(check.name, getattr(check, "priority", 0)) for check in checks]
    sandbox = Sandbox(store.databases(), recording.statement)
    try:
        with _captured_logs(recording):
            return _run(settings, view, request, checks, traces, recording, now, sandbox)
    finally:
        sandbox.undo()
        sandbox.close()
        for check in checks:
            with contextlib.suppress(Exception):
                check.close()


def _run(
    settings: Any,
    store: StoreView,
    request: PolicyRequest,
    checks: list[Any],
    traces: list[CheckTrace],
    recording: _Recording,
    now: float,
    sandbox: Sandbox,
) -> Explanation:
    """The daemon's chain (apd/policy.py ``Policy._decide``), every check's trace kept."""
    attrs = dict(request.attrs)
    if request.invalid_reply:
        for trace in traces:
            trace.skipped = "not asked: the daemon answers an invalid address itself"
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
            else:
                note = "a database is down: the daemon goes on without this check (STORE_FAILURE_ACTION is DUNNO)"
            continue
        except Exception as exc:  # the daemon logs it and counts the check as DUNNO
            trace.error = f"{type(exc).__name__}: {escape_controls(str(exc))} (counted as DUNNO)"
            continue
        finally:
            recording.trace = None
            sandbox.undo()
        if result is not None and not isinstance(result, str):
            trace.error = escape_controls(f"returned {result!r}, not a string (counted as DUNNO)")
            continue
        trace.result = result
        if isinstance(result, str) and ends_chain(result):
            action, decided = result or replies.DUNNO, trace
            trace.decided = True
    return Explanation(attrs, traces, action, decided.name if decided else "", note)
