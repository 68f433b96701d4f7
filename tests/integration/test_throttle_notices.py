"""Quota notices for real: the claim race on SQLite, MariaDB and PostgreSQL (apd's DDL and the
iRedMail schemas), delivery to a real SMTP server (tests/helpers/smtp_sink.py) with STARTTLS and
AUTH, delivery through CMD_SENDMAIL, and transports that fail or hang."""

from __future__ import annotations

import email
import email.policy
import logging
import multiprocessing
import socket
import subprocess
import time
from pathlib import Path

import pytest

from apd import settings as settings_module
from apd.store import open_store, sqlite
from apd.store.throttle_notices import claim_notice
from apd.throttle import notice
from apd.throttle.notice import QuotaEvent, QuotaNotices, notice_body, notice_subject
from tests.helpers.servers import require_binary
from tests.helpers.smtp_sink import SmtpSink

T0 = 1_700_000_000
PERIOD = 3600
PROCESSES, PER_PROCESS = 8, 50
USER = "user@example.com"


def add_tracking_row(db, init_time: int = T0) -> int:
    """A throttle setting of USER and its tracking row in a window from ``init_time``; the tid."""
    db.execute(
        "INSERT INTO throttle (account, kind, priority, period, max_msgs) VALUES (%s, 'outbound', 100, %s, 10)",
        (USER, PERIOD),
    )
    tid = int(db.query_one("SELECT id FROM throttle WHERE account = %s", (USER,))[0])
    db.execute(
        "INSERT INTO throttle_tracking (tid, account, period, cur_msgs, init_time, last_time)"
        " VALUES (%s, %s, %s, 10, %s, %s)",
        (tid, USER, PERIOD, init_time, init_time),
    )
    return tid


def event(tid: int, now: int) -> QuotaEvent:
    return QuotaEvent(USER, "192.0.2.7", "outbound", "max_msgs", 10, (), tid, USER, now)


def run_processes(target, *args) -> list:
    """PROCESSES children of ``target(*args, barrier, results)``, released together; their results."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results)) for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    return outcomes


def _claimer(settings, tid: int, now: int, barrier, results) -> None:
    store = open_store(settings)
    barrier.wait()
    won = sum(claim_notice(store.iredapd, tid, USER, now + i % 10) for i in range(PER_PROCESS))
    store.close()
    results.put(won)


@pytest.mark.servers
def test_concurrent_claims_one_winner_per_window(schema_store):
    """8 processes x 50 claims at once: exactly one wins; after the window restarts, again exactly one."""
    tid = add_tracking_row(schema_store.iredapd)
    schema_store.close()  # the children open their own connections
    assert sum(run_processes(_claimer, schema_store.settings, tid, T0 + 5)) == 1
    assert sum(run_processes(_claimer, schema_store.settings, tid, T0 + 100)) == 0  # same window, later
    schema_store.iredapd.execute("UPDATE throttle_tracking SET init_time = %s", (T0 + PERIOD + 1,))
    assert sum(run_processes(_claimer, schema_store.settings, tid, T0 + PERIOD + 2)) == 1
    row = schema_store.iredapd.query_one("SELECT last_notify_time FROM throttle_tracking")
    assert T0 + PERIOD + 2 <= row[0] < T0 + PERIOD + 12


def _first_claimer(settings, tid: int, barrier, results) -> None:
    store = open_store(settings)
    barrier.wait()
    won = sum(claim_notice(store.iredapd, tid, USER, T0 + i % 10, PERIOD) for i in range(PER_PROCESS))
    store.close()
    results.put(won)


@pytest.mark.servers
def test_rejection_before_any_counter_row_claims_one_notice(schema_store):
    """max_msgs = 0 or a first message over max_quota is refused before the counter has a row:
    the claim creates it (nothing counted), and of 8 x 50 simultaneous claims exactly one wins."""
    db = schema_store.iredapd
    tid = add_tracking_row(db)
    db.execute("DELETE FROM throttle_tracking")
    assert claim_notice(db, tid, USER, T0) is False  # without the period a missing row still loses
    assert db.query("SELECT id FROM throttle_tracking") == []
    schema_store.close()
    assert sum(run_processes(_first_claimer, schema_store.settings, tid)) == 1
    rows = db.query(
        "SELECT tid, account, period, cur_msgs, cur_quota, init_time, last_notify_time FROM throttle_tracking"
    )
    assert len(rows) == 1
    tid_, account, period, msgs, quota, init_time, notified = rows[0]
    assert (tid_, account, period, msgs, quota) == (tid, USER, PERIOD, 0, 0)
    assert T0 <= init_time <= notified < T0 + 10


def _notifier(settings, tid: int, barrier, results) -> None:
    store = open_store(settings)
    notices = QuotaNotices(settings, store.iredapd)
    barrier.wait()
    started = sum(notices.quota_exceeded(event(tid, T0 + 5)) for _ in range(PER_PROCESS))
    notices.drain()
    store.close()
    results.put(started)


def smtp_settings(base, port: int, **changes):
    values = dict(
        NOTIFICATION_SMTP_SERVER="127.0.0.1",
        NOTIFICATION_SMTP_PORT=port,
        NOTIFICATION_SMTP_USER="no-reply@example.com",
        NOTIFICATION_SMTP_PASSWORD="Secret-pw-1",
        NOTIFICATION_SMTP_STARTTLS=False,
        NOTIFICATION_RECIPIENTS=["postmaster@example.com", "root"],
    )
    values.update(changes)
    return base.replace(**values)


@pytest.mark.servers
def test_concurrent_rejections_send_one_notice(schema_store):
    """Workers on several hosts rejecting the same sender at once: the SMTP server gets one notice."""
    sink = SmtpSink(users={"no-reply@example.com": "Secret-pw-1"}).start()
    try:
        tid = add_tracking_row(schema_store.iredapd)
        schema_store.close()
        settings = smtp_settings(schema_store.settings, sink.port)
        assert sum(run_processes(_notifier, settings, tid)) == 1
        (received,) = sink.wait_for(1)
        time.sleep(0.2)
        assert len(sink.messages) == 1 and sink.connections == 1
        assert received.rcpt_to == ("postmaster@example.com", "root")
    finally:
        sink.stop()


# --- transports, on the embedded SQLite store


@pytest.fixture
def store(tmp_path):
    settings = settings_module.defaults().replace(backend="sqlite", sqlite_db_path=str(tmp_path / "apd.sqlite3"))
    store = open_store(settings)
    sqlite.initialise(store.iredapd)
    store.settings = settings
    store.tid = add_tracking_row(store.iredapd)
    yield store
    store.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    openssl = require_binary("openssl")
    base = tmp_path_factory.mktemp("smtp-tls")
    cert, key = base / "cert.pem", base / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-days", "2", "-subj", "/CN=sink.test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def notify(store, settings, **kwargs) -> QuotaNotices:
    notices = QuotaNotices(settings, store.iredapd, **kwargs)
    assert notices.quota_exceeded(event(store.tid, T0 + 5))
    assert notices.drain()
    return notices


def test_smtp_with_starttls_and_login(store, certificate):
    sink = SmtpSink(users={"no-reply@example.com": "Secret-pw-1"}, tls=certificate).start()
    try:
        notify(store, smtp_settings(store.settings, sink.port, NOTIFICATION_SMTP_STARTTLS=True))
        (received,) = sink.wait_for(1)
    finally:
        sink.stop()
    assert (received.tls, received.login) == (True, "no-reply@example.com")
    assert received.mail_from == "no-reply@example.com"
    assert received.rcpt_to == ("postmaster@example.com", "root")
    assert b"\n" not in received.data.replace(b"\r\n", b"")  # no bare LF on the wire
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    assert message["Subject"] == notice_subject(event(store.tid, T0 + 5))
    assert message["From"] == "No Reply <no-reply@example.com>"
    assert message.get_content().replace("\r\n", "\n") == notice_body(event(store.tid, T0 + 5))


def test_smtp_without_starttls(store):
    sink = SmtpSink(users={"no-reply@example.com": "Secret-pw-1"}).start()
    try:
        notify(store, smtp_settings(store.settings, sink.port))
        (received,) = sink.wait_for(1)
    finally:
        sink.stop()
    assert (received.tls, received.login) == (False, "no-reply@example.com")


SENDMAIL = """#!/bin/sh
printf '%s\\n' "$@" > "$0.args"
cat > "$0.stdin"
"""


def test_cmd_sendmail_without_an_smtp_password(store, tmp_path):
    script = tmp_path / "sendmail"
    script.write_text(SENDMAIL)
    script.chmod(0o755)
    settings = store.settings.replace(CMD_SENDMAIL=str(script), NOTIFICATION_RECIPIENTS=["root", "admin@example.com"])
    notify(store, settings)
    assert Path(f"{script}.args").read_text() == "-f\nno-reply@localhost.localdomain\nroot,admin@example.com\n"
    message = email.message_from_bytes(Path(f"{script}.stdin").read_bytes(), policy=email.policy.default)
    assert message["Subject"] == notice_subject(event(store.tid, T0 + 5))
    assert message["To"] == "root, admin@example.com"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def failures(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_smtp_refused_connection_is_logged_once(store, caplog):
    settings = smtp_settings(store.settings, closed_port())
    notices = QuotaNotices(settings, store.iredapd)
    with caplog.at_level(logging.INFO, logger=notice.__name__):
        for window in range(3):
            store.iredapd.execute("UPDATE throttle_tracking SET init_time = %s", (T0 + window * PERIOD,))
            assert notices.quota_exceeded(event(store.tid, T0 + window * PERIOD + 1))
            assert notices.drain()
    (line,) = failures(caplog)
    assert line.startswith("cannot send quota notices: [Errno 111] Connection refused")


def test_smtp_server_refusing_then_accepting(store, caplog):
    sink = SmtpSink(users={"no-reply@example.com": "Secret-pw-1"}).start()
    sink.refuse = "451 4.3.0 Try again later"
    notices = QuotaNotices(smtp_settings(store.settings, sink.port), store.iredapd)
    try:
        with caplog.at_level(logging.INFO, logger=notice.__name__):
            for window in range(3):
                if window == 2:
                    sink.refuse = None
                store.iredapd.execute("UPDATE throttle_tracking SET init_time = %s", (T0 + window * PERIOD,))
                assert notices.quota_exceeded(event(store.tid, T0 + window * PERIOD + 1))
                assert notices.drain()
        assert len(sink.wait_for(1)) == 1
    finally:
        sink.stop()
    assert failures(caplog) == [
        "cannot send quota notices: (451, b'4.3.0 Try again later', 'no-reply@example.com')"
        " (logged once until one is sent)",
        "quota notices are sent again",
    ]


def test_hung_smtp_server_holds_nobody(store, caplog):
    sink = SmtpSink()
    sink.silent = True
    sink.start()
    notices = QuotaNotices(smtp_settings(store.settings, sink.port), store.iredapd, timeout=0.5)
    try:
        with caplog.at_level(logging.INFO, logger=notice.__name__):
            started = time.monotonic()
            assert notices.quota_exceeded(event(store.tid, T0 + 5))
            assert time.monotonic() - started < 0.2
            assert notices.drain(5)
    finally:
        sink.stop()
    assert failures(caplog) == [
        "cannot send quota notices: Connection unexpectedly closed: timed out (logged once until one is sent)"
    ]


@pytest.mark.parametrize(
    "script, reason",
    [
        (
            "#!/bin/sh\necho 'sendmail: fatal: no such user' >&2\nexit 75\n",
            "exited with 75: sendmail: fatal: no such user",
        ),
        ("#!/bin/sh\nexec sleep 5\n", "did not finish within 0.5 s"),
        (None, "No such file or directory"),
    ],
)
def test_failing_sendmail_is_logged(store, tmp_path, caplog, script, reason):
    command = tmp_path / "sendmail"
    if script:
        command.write_text(script)
        command.chmod(0o755)
    notices = QuotaNotices(store.settings.replace(CMD_SENDMAIL=str(command)), store.iredapd, timeout=0.5)
    with caplog.at_level(logging.INFO, logger=notice.__name__):
        assert notices.quota_exceeded(event(store.tid, T0 + 5))
        assert notices.drain(5)
    (line,) = failures(caplog)
    assert reason in line
