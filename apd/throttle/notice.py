"""Quota notices of the throttle check (plugins.md §throttle "Notification mail", settings.md §3.12).

When ``max_msgs`` or ``max_quota`` rejects, NOTIFICATION_RECIPIENTS get a mail, at most one per
counting window however many workers and hosts reject at that moment: the notice is claimed
first with one atomic UPDATE of throttle_tracking.last_notify_time
(apd/store/throttle_notices.py), and only the winner sends. Sending runs on a short-lived
daemon thread, through SMTP when NOTIFICATION_SMTP_SERVER, _PORT, _USER and _PASSWORD are all
set, else through CMD_SENDMAIL, each bounded by SEND_TIMEOUT: the policy answer never waits for
a mail server. A failing transport is logged once, and once more when a notice gets through.

The check calls ``notices.quota_exceeded(QuotaEvent(...))`` on the rejecting path;
``quota_notices(settings, db)`` gives ``NoNotices`` when NOTIFICATION_RECIPIENTS is empty.
"""

from __future__ import annotations

import email.policy
import functools
import logging
import smtplib
import subprocess
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Any, Callable, Protocol, Sequence, Union

from apd.errors import StoreError
from apd.store.base import Database
from apd.store.throttle_notices import claim_notice

log = logging.getLogger(__name__)

# Seconds for each SMTP step (connect, each command), or for the whole CMD_SENDMAIL run.
SEND_TIMEOUT = 10.0
# Notices one worker sends at once; more are dropped (and logged) while a mail server hangs.
MAX_IN_FLIGHT = 4
# The unit after a limit: bytes for the size rules, none for the counts (so a max_msgs
# subject ends in a space, as iRedAPD's does).
UNITS = {"msg_size": "bytes", "max_rcpts": "", "max_msgs": "", "max_quota": "bytes"}

Send = Callable[[EmailMessage], None]


class Claim(Protocol):
    """A rule claimed by a throttle setting row (plugins.md §throttle apply() step 3)."""

    @property
    def tid(self) -> int: ...

    @property
    def rule(self) -> str: ...

    @property
    def value(self) -> int: ...

    @property
    def account(self) -> str: ...


@dataclass(frozen=True)
class QuotaEvent:
    """What the check knows when max_msgs or max_quota rejects."""

    user: str  # the throttled sender or recipient (may be '')
    client_address: str
    kind: str  # outbound, external or inbound
    rule: str  # max_msgs or max_quota: the rule that rejected
    value: int  # its limit
    claims: Sequence[Claim]  # every claimed rule, in claiming order, for "Detailed setting"
    tid: int  # the rejecting rule's throttle_tracking row is (tid, tracking_account)
    tracking_account: str
    now: int
    period: int = 0  # the counter's window, to create its row when the first message is rejected


@dataclass(frozen=True)
class Envelope:
    sender: str  # NOTIFICATION_SMTP_USER: envelope sender and From address
    sender_name: str  # NOTIFICATION_SENDER_NAME: From display name ('' for none)
    recipients: tuple[str, ...]


# --- the message (pure)


def printable(text: str) -> str:
    """Non-printable characters as escapes (``\\n``, ``\\x1b``, ``\\u2028``): a request value can
    neither add a header or body line to a notice nor break a log line. Stricter than
    apd/log_escape.py: the email package also splits header values at U+2028 and friends."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def detailed_setting(claims: Sequence[Claim]) -> str:
    """``id=<tid>/<rule>=<value>[ (bytes)]/account=<account>; `` for each claimed rule."""
    return "".join(
        f"id={c.tid}/{c.rule}={c.value}{' (bytes)' if UNITS.get(c.rule) else ''}/account={printable(c.account)}; "
        for c in claims
    )


def notice_subject(event: QuotaEvent) -> str:
    return f"Throttle quota exceeded: {printable(event.user)}, {event.rule}={event.value} {UNITS[event.rule]}"


def notice_body(event: QuotaEvent) -> str:
    lines = (
        f"- User: {printable(event.user)}",
        f"- Client IP address: {printable(event.client_address)}",
        f"- Throttle type: {event.kind}",
        f"- Throttle setting: {event.rule}",
        f"- Limit: {event.value} {UNITS[event.rule]}",
        f"- Detailed setting: {detailed_setting(event.claims)}",
    )
    return "\n".join(lines) + "\n"


def compose(envelope: Envelope, subject: str, body: str, date: str, message_id: str) -> EmailMessage:
    """The notice as iRedAPD sends it: From "name <user>", To every recipient, plain text in UTF-8."""
    message = EmailMessage()
    message["From"] = formataddr((envelope.sender_name, envelope.sender)) if envelope.sender_name else envelope.sender
    message["To"] = ",".join(envelope.recipients)
    message["Subject"] = subject
    message["Date"] = date
    message["Message-ID"] = message_id
    message.set_content(body)
    return message


# --- transports (I/O)


class NoticeError(Exception):
    """A notice could not be handed to the mail system."""


def smtp_configured(settings: Any) -> bool:
    """SMTP only when server, port, user and password are all set (settings.md §3.12)."""
    return all(
        (
            settings.NOTIFICATION_SMTP_SERVER,
            settings.NOTIFICATION_SMTP_PORT,
            settings.NOTIFICATION_SMTP_USER,
            settings.NOTIFICATION_SMTP_PASSWORD,
        )
    )


def send_smtp(settings: Any, envelope: Envelope, message: EmailMessage, timeout: float = SEND_TIMEOUT) -> None:
    server, port = settings.NOTIFICATION_SMTP_SERVER, int(settings.NOTIFICATION_SMTP_PORT)
    with smtplib.SMTP(server, port, timeout=timeout) as smtp:
        smtp.set_debuglevel(settings.NOTIFICATION_SMTP_DEBUG_LEVEL)
        if settings.NOTIFICATION_SMTP_STARTTLS:
            smtp.ehlo()
            smtp.starttls()  # as iRedAPD: encrypted, the certificate is not verified
            smtp.ehlo()
        smtp.login(settings.NOTIFICATION_SMTP_USER, settings.NOTIFICATION_SMTP_PASSWORD)
        # CRLF line ends: smtplib sends bytes as they are, and a bare LF is refused by many servers
        refused = smtp.sendmail(envelope.sender, list(envelope.recipients), message.as_bytes(policy=email.policy.SMTP))
    if refused:
        raise NoticeError(f"{server}:{port} refused {', '.join(sorted(refused))}")


def send_command(command: str, envelope: Envelope, message: EmailMessage, timeout: float = SEND_TIMEOUT) -> None:
    """``CMD_SENDMAIL -f <from> <comma-joined recipients>`` with the message on stdin (LF line
    ends, as sendmail reads them; no shell)."""
    argv = [command, "-f", envelope.sender, ",".join(envelope.recipients)]
    try:
        done = subprocess.run(
            argv, input=message.as_bytes(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise NoticeError(f"{command} did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        error = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise NoticeError(f"{command} exited with {done.returncode}{': ' + error[0] if error else ''}")


def transport(settings: Any, envelope: Envelope, timeout: float = SEND_TIMEOUT) -> Send:
    if smtp_configured(settings):
        return functools.partial(send_smtp, settings, envelope, timeout=timeout)
    return functools.partial(send_command, settings.CMD_SENDMAIL, envelope, timeout=timeout)


# --- the part the check holds


class FailureLog:
    """One line when notices start failing, one when one gets through again, nothing between:
    a mail server outage must not add a log line per rejected message."""

    def __init__(self) -> None:
        self._failing = False
        self._lock = threading.Lock()  # sending threads report concurrently

    def failed(self, reason: str) -> None:
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
            log.error("cannot send quota notices: %s (logged once until one is sent)", printable(reason))

    def succeeded(self) -> None:
        with self._lock:
            recovered, self._failing = self._failing, False
        if recovered:
            log.warning("quota notices are sent again")


class QuotaNotices:
    def __init__(self, settings: Any, db: Database, send: Send | None = None, timeout: float = SEND_TIMEOUT):
        self.db = db
        self.envelope = Envelope(
            settings.NOTIFICATION_SMTP_USER, settings.NOTIFICATION_SENDER_NAME, tuple(settings.NOTIFICATION_RECIPIENTS)
        )
        self.send = send or transport(settings, self.envelope, timeout)
        self.failures = FailureLog()
        self._slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def quota_exceeded(self, event: QuotaEvent) -> bool:
        """Claim the notice of the event's window and, when this call won it, start sending it.
        Never raises and never waits for the mail system; True when a notice was started."""
        # A sending slot first: a notice claimed without one would be gone for the whole window.
        if not self._slots.acquire(blocking=False):
            self.failures.failed(f"{MAX_IN_FLIGHT} notices are still waiting for the mail system")
            return False
        try:
            claimed = claim_notice(self.db, event.tid, event.tracking_account, event.now, event.period)
        except StoreError as exc:
            self.failures.failed(f"claiming one failed: {exc}")
            claimed = False
        if not claimed:
            self._slots.release()
            return False
        thread = threading.Thread(target=self._deliver, args=(event,), name="apd-quota-notice", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return True

    def _deliver(self, event: QuotaEvent) -> None:
        try:
            domain = self.envelope.sender.rpartition("@")[2] or "localhost"
            message = compose(
                self.envelope,
                notice_subject(event),
                notice_body(event),
                formatdate(event.now, usegmt=True),
                make_msgid(domain=domain),  # a domain given: no DNS lookup of our own name
            )
            self.send(message)
        except Exception as exc:  # the thread's last stop: any failure is only logged
            self.failures.failed(str(exc) or type(exc).__name__)
        else:
            self.failures.succeeded()
            log.info(
                "Sent quota notice to %s: user=%s, %s=%d",
                ",".join(self.envelope.recipients),
                printable(event.user),
                event.rule,
                event.value,
            )
        finally:
            self._slots.release()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def drain(self, timeout: float = SEND_TIMEOUT) -> bool:
        """Wait for the notices being sent (tests, shutdown); True when none is left."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        with self._lock:
            return not self._threads


class NoNotices:
    """NOTIFICATION_RECIPIENTS is empty: nobody to tell, nothing claimed."""

    def quota_exceeded(self, event: QuotaEvent) -> bool:
        return False

    def drain(self, timeout: float = SEND_TIMEOUT) -> bool:
        return True


Notices = Union[QuotaNotices, NoNotices]


def quota_notices(settings: Any, db: Database) -> Notices:
    if not settings.NOTIFICATION_RECIPIENTS:
        return NoNotices()
    return QuotaNotices(settings, db)
