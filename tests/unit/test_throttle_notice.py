"""Quota notices: the message against the spec text (plugins.md §throttle "Notification mail"),
the transport choice, the once-per-outage failure log, and QuotaNotices on the SQLite store
with an injected transport (the real SMTP and sendmail paths: tests/integration/test_throttle_notices.py)."""

from __future__ import annotations

import email
import email.policy
import logging
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage

import pytest

from apd import settings as settings_module
from apd.store import open_store, sqlite
from apd.throttle import notice
from apd.throttle.notice import (
    Envelope,
    FailureLog,
    NoNotices,
    QuotaEvent,
    QuotaNotices,
    compose,
    detailed_setting,
    notice_body,
    notice_subject,
    quota_notices,
    smtp_configured,
)

T0 = 1_700_000_000


@dataclass(frozen=True)
class Claim:
    tid: int
    rule: str
    value: int
    account: str


CLAIMS = (
    Claim(7, "msg_size", 10485760, "@."),
    Claim(3, "max_rcpts", 12, "user@d.com"),
    Claim(3, "max_msgs", 100, "user@d.com"),
    Claim(9, "max_quota", 0, "@d.com"),
)


def event(rule: str = "max_msgs", value: int = 100, **changes) -> QuotaEvent:
    values = dict(
        user="user@d.com",
        client_address="192.0.2.7",
        kind="outbound",
        rule=rule,
        value=value,
        claims=CLAIMS,
        tid=3,
        tracking_account="user@d.com",
        now=T0,
    )
    values.update(changes)
    return QuotaEvent(**values)


def test_subject_of_max_msgs_ends_in_a_space():
    assert notice_subject(event()) == "Throttle quota exceeded: user@d.com, max_msgs=100 "


def test_subject_of_max_quota_names_bytes():
    assert notice_subject(event("max_quota", 4096)) == "Throttle quota exceeded: user@d.com, max_quota=4096 bytes"


def test_detailed_setting_lists_every_claimed_rule_in_order():
    assert detailed_setting(CLAIMS) == (
        "id=7/msg_size=10485760 (bytes)/account=@.; "
        "id=3/max_rcpts=12/account=user@d.com; "
        "id=3/max_msgs=100/account=user@d.com; "
        "id=9/max_quota=0 (bytes)/account=@d.com; "
    )


def test_body_lines():
    assert notice_body(event("max_quota", 4096, kind="inbound")) == (
        "- User: user@d.com\n"
        "- Client IP address: 192.0.2.7\n"
        "- Throttle type: inbound\n"
        "- Throttle setting: max_quota\n"
        "- Limit: 4096 bytes\n"
        "- Detailed setting: " + detailed_setting(CLAIMS) + "\n"
    )
    assert "- Limit: 100 \n" in notice_body(event())


def test_request_values_cannot_add_lines():
    hostile = event(user="a@d.com\r\nBcc: victim@example.org", client_address="192.0.2.7\n- User: x")
    assert notice_subject(hostile) == "Throttle quota exceeded: a@d.com\\r\\nBcc: victim@example.org, max_msgs=100 "
    assert notice_body(hostile).count("\n") == 6
    assert "- Client IP address: 192.0.2.7\\n- User: x\n" in notice_body(hostile)
    separator = event(user="a@d.com\u2028Bcc: victim@example.org")
    envelope = Envelope("n@example.com", "", ("root",))
    composed = compose(envelope, notice_subject(separator), notice_body(separator), "d", "<3@x>")
    assert composed["Subject"] == "Throttle quota exceeded: a@d.com\\u2028Bcc: victim@example.org, max_msgs=100 "
    assert composed["Bcc"] is None


def test_compose_as_iredapd():
    envelope = Envelope("no-reply@example.com", "No Reply", ("root", "postmaster@example.com"))
    composed = compose(
        envelope, notice_subject(event()), notice_body(event()), "Tue, 14 Nov 2023 22:13:20 GMT", "<1@x>"
    )
    message = email.message_from_bytes(composed.as_bytes(), policy=email.policy.default)
    assert message["From"] == "No Reply <no-reply@example.com>"
    assert message["To"] == "root, postmaster@example.com"
    assert message["Subject"] == "Throttle quota exceeded: user@d.com, max_msgs=100 "
    assert (message["Date"], message["Message-ID"]) == ("Tue, 14 Nov 2023 22:13:20 +0000", "<1@x>")
    assert message.get_content() == notice_body(event())
    unnamed = compose(Envelope("n@example.com", "", ("root",)), "s", "b\n", "d", "<2@x>")
    assert unnamed["From"] == "n@example.com"


@pytest.mark.parametrize(
    "changes, smtp",
    [
        ({"NOTIFICATION_SMTP_PASSWORD": "pw"}, True),  # the defaults fill server, port and user
        ({}, False),  # no password: CMD_SENDMAIL
        ({"NOTIFICATION_SMTP_PASSWORD": "pw", "NOTIFICATION_SMTP_SERVER": ""}, False),
        ({"NOTIFICATION_SMTP_PASSWORD": "pw", "NOTIFICATION_SMTP_USER": ""}, False),
    ],
)
def test_smtp_only_when_server_port_user_and_password_are_set(changes, smtp):
    assert smtp_configured(settings_module.defaults().replace(**changes)) is smtp


def test_failure_log_says_it_once_per_outage(caplog):
    failures = FailureLog()
    with caplog.at_level(logging.WARNING, logger=notice.__name__):
        failures.succeeded()
        failures.failed("connection refused")
        failures.failed("connection refused")
        failures.failed("timed out")
        failures.succeeded()
        failures.succeeded()
        failures.failed("bad\nline")
    assert [r.getMessage() for r in caplog.records] == [
        "cannot send quota notices: connection refused (logged once until one is sent)",
        "quota notices are sent again",
        "cannot send quota notices: bad\\nline (logged once until one is sent)",
    ]


# --- QuotaNotices on SQLite, transport injected


@pytest.fixture
def store(tmp_path):
    settings = settings_module.defaults().replace(backend="sqlite", sqlite_db_path=str(tmp_path / "apd.sqlite3"))
    store = open_store(settings)
    sqlite.initialise(store.iredapd)
    store.settings = settings
    yield store
    store.close()


def tracking_row(store, init_time: int = T0 - 100, period: int = 3600, last_notify_time: int = 0) -> None:
    db = store.iredapd
    db.execute(
        "INSERT INTO throttle (id, account, kind, period, max_msgs) VALUES (3, 'user@d.com', 'outbound', 3600, 100)"
    )
    db.execute(
        "INSERT INTO throttle_tracking (tid, account, period, cur_msgs, init_time, last_time, last_notify_time)"
        " VALUES (3, 'user@d.com', %s, 100, %s, %s, %s)",
        (period, init_time, init_time, last_notify_time),
    )


def last_notify_time(store) -> int:
    return store.iredapd.query_one("SELECT last_notify_time FROM throttle_tracking")[0]


class Recorder:
    """A transport: records the messages, optionally blocks until released or fails."""

    def __init__(self, error: Exception | None = None, block: bool = False):
        self.messages: list[EmailMessage] = []
        self.error = error
        self.release = threading.Event()
        if not block:
            self.release.set()

    def __call__(self, message: EmailMessage) -> None:
        self.release.wait(10)
        if self.error:
            raise self.error
        self.messages.append(message)


def test_one_notice_per_window(store):
    tracking_row(store)
    sent = Recorder()
    notices = QuotaNotices(store.settings, store.iredapd, send=sent)
    assert notices.quota_exceeded(event(now=T0))
    assert not notices.quota_exceeded(event(now=T0 + 1))  # same window
    assert notices.drain()
    assert last_notify_time(store) == T0
    assert len(sent.messages) == 1
    message = sent.messages[0]
    assert message["Subject"] == notice_subject(event())
    assert message["To"] == "root"
    # the window restarts (an accepted message after expiry): a new notice
    store.iredapd.execute("UPDATE throttle_tracking SET init_time = %s", (T0 + 3600,))
    assert notices.quota_exceeded(event(now=T0 + 3601))
    assert notices.drain() and len(sent.messages) == 2


def test_expired_window_not_restarted_notifies_once_per_period(store):
    """Every message since the window expired was rejected (one alone over max_msgs): the row keeps
    its old window; the first rejection notifies, the next ones only a period later."""
    tracking_row(store, init_time=T0 - 5000, last_notify_time=T0 - 4000)
    notices = QuotaNotices(store.settings, store.iredapd, send=Recorder())
    assert notices.quota_exceeded(event(now=T0))
    assert not notices.quota_exceeded(event(now=T0 + 3599))
    assert notices.quota_exceeded(event(now=T0 + 3600))
    assert notices.drain()


def test_no_tracking_row_no_notice(store):
    sent = Recorder()
    assert not QuotaNotices(store.settings, store.iredapd, send=sent).quota_exceeded(event())
    assert sent.messages == []


def test_sending_never_holds_the_caller(store):
    tracking_row(store)
    sent = Recorder(block=True)
    notices = QuotaNotices(store.settings, store.iredapd, send=sent)
    started = time.monotonic()
    assert notices.quota_exceeded(event())
    assert time.monotonic() - started < 0.5
    assert sent.messages == [] and not notices.drain(0.05)
    sent.release.set()
    assert notices.drain() and len(sent.messages) == 1


def test_a_failing_transport_is_logged_once_and_never_raises(store, caplog):
    tracking_row(store)
    notices = QuotaNotices(store.settings, store.iredapd, send=Recorder(error=OSError("Connection refused")))
    with caplog.at_level(logging.INFO, logger=notice.__name__):
        for window in range(3):  # three windows, three claims, three failed sends
            store.iredapd.execute("UPDATE throttle_tracking SET init_time = %s", (T0 + window * 3600,))
            assert notices.quota_exceeded(event(now=T0 + window * 3600 + 1))
            assert notices.drain()
    assert [r.getMessage() for r in caplog.records] == [
        "cannot send quota notices: Connection refused (logged once until one is sent)"
    ]
    # iRedAPD too writes last_notify_time when sending failed: no retry within the window
    assert last_notify_time(store) == T0 + 2 * 3600 + 1


def test_in_flight_notices_are_bounded(store, caplog):
    tracking_row(store)
    sent = Recorder(block=True)
    notices = QuotaNotices(store.settings, store.iredapd, send=sent)
    db = store.iredapd
    for tid in range(10, 10 + notice.MAX_IN_FLIGHT + 1):
        db.execute(
            "INSERT INTO throttle (id, account, kind, period) VALUES (%s, %s, 'outbound', 60)", (tid, f"{tid}@d.com")
        )
        db.execute(
            "INSERT INTO throttle_tracking (tid, account, period, init_time) VALUES (%s, 'u@d.com', 60, %s)", (tid, T0)
        )
    started = [
        notices.quota_exceeded(event(tid=tid, tracking_account="u@d.com", now=T0 + 1))  # inside the window
        for tid in range(10, 10 + notice.MAX_IN_FLIGHT + 1)
    ]
    assert started == [True] * notice.MAX_IN_FLIGHT + [False]
    assert "notices are still waiting for the mail system" in caplog.text
    sent.release.set()
    assert notices.drain() and len(sent.messages) == notice.MAX_IN_FLIGHT
    # The refused one was not claimed: it goes out at the next rejection, not a window later.
    last_tid = 10 + notice.MAX_IN_FLIGHT
    assert notices.quota_exceeded(event(tid=last_tid, tracking_account="u@d.com", now=T0 + 2))
    assert notices.drain() and len(sent.messages) == notice.MAX_IN_FLIGHT + 1


def test_a_failing_claim_is_logged_and_answers_false(store, caplog):
    store.iredapd.execute("DROP TABLE throttle_tracking")
    notices = QuotaNotices(store.settings, store.iredapd, send=Recorder())
    with caplog.at_level(logging.ERROR, logger=notice.__name__):
        assert not notices.quota_exceeded(event())
        assert not notices.quota_exceeded(event())
    assert len(caplog.records) == 1 and "claiming one failed" in caplog.records[0].getMessage()


def test_no_recipients_no_notices(store):
    tracking_row(store)
    settings = store.settings.replace(NOTIFICATION_RECIPIENTS=[])
    notices = quota_notices(settings, store.iredapd)
    assert isinstance(notices, NoNotices)
    assert not notices.quota_exceeded(event()) and notices.drain()
    assert last_notify_time(store) == 0  # nothing claimed
    assert isinstance(quota_notices(store.settings, store.iredapd), QuotaNotices)
