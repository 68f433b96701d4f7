"""Run the checks for one request and combine their results the way iRedAPD does."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from apd import metrics, replies
from apd.checks.base import Check
from apd.context import RequestContext
from apd.errors import StoreUnavailable
from apd.log_escape import escape_controls
from apd.netmatch import TrustedClients
from apd.protocol import PolicyRequest
from apd.session_queue import SessionQueue
from apd.store.sessions import session_row, should_log

log = logging.getLogger(__name__)


class Decision:
    __slots__ = ("action", "check", "millis")  # one per request: a NamedTuple or dataclass costs more to build

    def __init__(self, action: str, check: str, millis: float):
        self.action = action
        self.check = check  # the check that decided, or '' for the default / protocol answers
        self.millis = millis

    def __repr__(self) -> str:
        return f"Decision({self.action!r}, {self.check!r}, {self.millis!r})"


def ends_chain(result: str | None) -> bool:
    """iRedAPD's rule: a result not starting with the exact prefix ``DUNNO`` ends the chain.

    None means "no opinion" (an iRedAPD plugin returning None fails, which counts as DUNNO).
    An empty string ends the chain too; iRedAPD then answers DUNNO.
    """
    return result is not None and not result.startswith("DUNNO")


def combine(results: Sequence[str | None]) -> str:
    """Pure form of the rule: the first result that ends the chain wins, else DUNNO."""
    for result in results:
        if ends_chain(result):
            return result or replies.DUNNO
    return replies.DUNNO


class Policy:
    """The check chain of one worker."""

    def __init__(self, checks: Sequence[Check], settings: Any, store: Any):
        self.checks = list(checks)
        self.settings = settings
        self.store = store
        self.trusted = TrustedClients(settings.MYNETWORKS, settings.ENABLE_ALL_WILDCARD_IP)
        self.failure_action = settings.STORE_FAILURE_ACTION
        self.sessions = SessionQueue(store)
        # (check name, seconds) of each check run, when metrics are on; None keeps the loop bare
        self.check_timer: Callable[[str, float], None] | None = None

    def decide(self, request: PolicyRequest, now: float | None = None) -> Decision:
        started = time.perf_counter()
        action, check = self._decide(request, now)
        return Decision(action, check, (time.perf_counter() - started) * 1000)

    def _decide(self, request: PolicyRequest, now: float | None) -> tuple[str, str]:
        if request.invalid_reply:
            return request.invalid_reply, ""
        if request.empty:
            return replies.DUNNO, ""
        if not self.checks:
            return replies.NO_ENABLED_PLUGINS, ""
        state = request.protocol_state
        ctx = RequestContext(request, self.store, self.trusted, now)
        timer = self.check_timer
        for check in self.checks:
            if state not in check.states:
                continue
            started = time.perf_counter() if timer is not None else 0.0
            try:
                result = check.check(request, ctx)
            except StoreUnavailable as exc:
                # the store logs each outage once; per request this is only debug detail
                log.debug("check %s skipped: %s", check.name, exc)
                if not self.failure_action.startswith("DUNNO"):
                    metrics.recorder().failsafe(getattr(exc, "database", "other"))
                    return self.failure_action, check.name
                continue
            except Exception:
                log.exception("<!> Error while applying plugin '%s' (counted as DUNNO)", check.name)
                continue
            finally:  # a check's time also when its database failed it (a timeout is what to see)
                if timer is not None:
                    timer(check.name, time.perf_counter() - started)
            if result is None:
                continue  # no opinion: the common case
            if not isinstance(result, str):
                log.error("<!> Plugin '%s' returned %r, not a string (counted as DUNNO)", check.name, result)
                continue
            if ends_chain(result):
                return result or replies.DUNNO, check.name
        return replies.DUNNO, ""

    def log_session(self, request: PolicyRequest, action: str, now: float) -> None:
        """Queue the smtp_sessions row when the rules say so: the worker writes the queue after
        the reply (``self.sessions.flush``), as the row never decides the answer."""
        if should_log(request.protocol_state, action, self.settings):
            self.sessions.add(session_row(request.attrs, action, now))


def describe(request: PolicyRequest, decision: Decision) -> str:
    """The INFO line for one decision (iRedAPD's layout plus the deciding check), control
    characters escaped (apd/log_escape.py)."""
    get = request.attrs.get
    sasl, sender, rcpt = request.sasl_username, request.sender, request.recipient
    if not sasl:
        flow = f"{sender} -> {rcpt}"
    elif sasl == sender:
        flow = f"{sasl} => {rcpt}"
    else:
        flow = f"{sasl} => {sender} -> {rcpt}"
    state = request.protocol_state or "-"
    if state == "RCPT":
        details = (
            f"sasl_username={sasl}, sender={sender}, client_name={get('client_name', '')}, "
            f"reverse_client_name={get('reverse_client_name', '').strip('[]')}, "
            f"helo={get('helo_name', '')}, encryption_protocol={get('encryption_protocol', '')}, "
            f"encryption_cipher={get('encryption_cipher', '')}, server_port={get('server_port', '')}"
        )
    else:
        details = f"recipient_count={get('recipient_count', '')}, size={get('size', '')}"
    # Every value but the timing comes from the client: one scan of the whole line escapes them all.
    return escape_controls(
        f"[{request.client_address}] {state}, {flow}, {decision.action} "
        f"[{details}, check={decision.check or '-'}, process_time={decision.millis / 1000:.4f}s]"
    )
