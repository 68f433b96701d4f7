"""The throttle check on the embedded SQLite store through Policy (END-OF-MESSAGE only), clock injected:
the calls of one request, alias domains, the reply texts, what is counted, the quota notice
handed over, the round trips."""

from __future__ import annotations

import pytest

from apd import settings as settings_module
from apd.checks.throttle import Throttle
from apd.policy import Policy
from apd.protocol import PolicyRequest
from apd.store import open_store, sqlite

T0 = 1_700_000_000
QUOTA = "REJECT Throttling quota exceeded"


class Notices:
    """Stands in for apd/throttle/notice.py: the events handed over."""

    def __init__(self):
        self.events = []

    def quota_exceeded(self, event) -> bool:
        self.events.append(event)
        return True


class Env:
    def __init__(self, tmp_path, **overrides):
        values = {"backend": "sqlite", "sqlite_db_path": str(tmp_path / "apd.sqlite3"), "NOTIFICATION_RECIPIENTS": []}
        values.update(overrides)
        self.settings = settings_module.defaults().replace(**values)
        self.store = open_store(self.settings)
        sqlite.initialise(self.store.iredapd)
        self.check = Throttle(self.settings, self.store)
        self.check.notices = self.notices = Notices()
        self.policy = Policy([self.check], self.settings, self.store)
        self.statements: list[str] = []

    def setting(self, account, kind="outbound", period=60, priority=0, **limits) -> int:
        values = {"msg_size": -1, "max_rcpts": -1, "max_msgs": -1, "max_quota": -1, **limits}
        self.store.iredapd.execute(
            "INSERT INTO throttle (account, kind, priority, period, msg_size, max_rcpts, max_msgs, max_quota)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                account,
                kind,
                priority,
                period,
                values["msg_size"],
                values["max_rcpts"],
                values["max_msgs"],
                values["max_quota"],
            ),
        )
        return int(self.store.iredapd.query_one("SELECT MAX(id) FROM throttle")[0])

    def ask(self, now=T0, **attrs) -> str:
        request = {
            "request": "smtpd_access_policy",
            "protocol_state": "END-OF-MESSAGE",
            "client_address": "192.0.2.10",
            "sender": "s@a.com",
            "recipient": "r@b.com",
            "sasl_username": "",
            "recipient_count": "1",
            "size": "100",
        }
        request.update(attrs)
        return self.policy.decide(PolicyRequest.build(request), now=now).action

    def counts(self) -> dict:
        rows = self.store.iredapd.query("SELECT tid, account, cur_msgs, cur_quota FROM throttle_tracking")
        return {(tid, account): (msgs, quota) for tid, account, msgs, quota in rows}

    def trace(self) -> None:
        """Record every statement SQLite runs from now on."""
        self.store.iredapd._connection().set_trace_callback(self.statements.append)


@pytest.fixture
def env(tmp_path):
    made = []

    def make(**overrides):
        made.append(Env(tmp_path, **overrides))
        return made[-1]

    yield make
    for each in made:
        each.store.close()


def test_only_end_of_message_requests_are_throttled(env):
    e = env()
    e.setting("@.", max_msgs=1, kind="external")
    assert Throttle.states == frozenset({"END-OF-MESSAGE"})
    assert e.ask(protocol_state="RCPT") == "DUNNO"
    assert [e.ask(), e.ask()] == ["DUNNO", QUOTA]


def test_the_three_reply_texts(env):
    e = env()
    e.setting("@.", kind="external", msg_size=1000, max_rcpts=2, max_msgs=3)
    assert e.ask(size="1001") == "REJECT Message size is too large"
    assert e.ask(recipient_count="3", recipient="") == "REJECT Too many recipients in single message"
    assert e.ask(recipient_count="2", recipient="") == "DUNNO"
    assert e.ask(recipient_count="2", recipient="") == QUOTA


def test_sender_counters_stay_counted_when_the_recipient_call_rejects(env):
    e = env()
    sender = e.setting("@.", kind="external", max_msgs=100)
    recipient = e.setting("r@b.com", kind="inbound", max_msgs=1)
    assert [e.ask(), e.ask()] == ["DUNNO", QUOTA]
    assert e.counts() == {(sender, "s@a.com"): (2, 200), (recipient, "r@b.com"): (1, 100)}


def test_a_sender_rejection_skips_the_recipient_call(env):
    e = env()
    sender = e.setting("@.", kind="external", max_msgs=1)
    recipient = e.setting("@.", kind="inbound", max_msgs=100)
    assert [e.ask(), e.ask()] == ["DUNNO", QUOTA]
    assert e.counts() == {(sender, "s@a.com"): (1, 100), (recipient, "r@b.com"): (1, 100)}


def test_authenticated_sender_is_outbound_and_its_recipients_are_not_throttled(env):
    e = env()
    outbound = e.setting("@.", kind="outbound", max_msgs=1)
    e.setting("@.", kind="inbound", max_msgs=0)
    assert [e.ask(sasl_username="u@c.com"), e.ask(sasl_username="u@c.com")] == ["DUNNO", QUOTA]
    assert e.counts() == {(outbound, "u@c.com"): (1, 100)}


def test_bypass_same_domain_and_mynetworks(env):
    e = env(MYNETWORKS=["192.0.2.0/24"], THROTTLE_BYPASS_MYNETWORKS=True)
    e.setting("@.", kind="external", max_msgs=1)
    e.setting("@.", kind="inbound", max_msgs=1)
    assert [e.ask(recipient="r@a.com") for _ in range(3)] == ["DUNNO"] * 3  # same domain
    assert [e.ask() for _ in range(3)] == ["DUNNO"] * 3  # trusted client
    assert e.counts() == {}
    assert e.ask(client_address="198.51.100.1") == "DUNNO"
    assert e.ask(client_address="198.51.100.1") == QUOTA


def test_alias_domain_sender_meets_the_target_domains_setting(env):
    e = env()
    e.store.vmail.execute("INSERT INTO domain (domain, active) VALUES ('target.com', 1)")
    e.store.vmail.execute("INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('alias.org', 'target.com')")
    tid = e.setting("@target.com", kind="external", max_msgs=1)
    assert [e.ask(sender="u@alias.org"), e.ask(sender="u@alias.org")] == ["DUNNO", QUOTA]
    assert e.counts() == {(tid, "u@alias.org"): (1, 100)}


def test_address_extension_is_stripped_before_throttling(env):
    e = env()
    tid = e.setting("s@a.com", kind="external", priority=100, max_msgs=2)
    assert [e.ask(sender="s+one@a.com"), e.ask(sender="s+two@a.com"), e.ask()] == ["DUNNO", "DUNNO", QUOTA]
    assert e.counts() == {(tid, "s@a.com"): (2, 200)}


def test_window_restarts_after_the_period(env):
    e = env()
    e.setting("@.", kind="external", period=60, max_msgs=1)
    assert [e.ask(now=T0), e.ask(now=T0 + 60), e.ask(now=T0 + 61)] == ["DUNNO", QUOTA, "DUNNO"]


def test_missing_recipient_count_and_a_null_limit_mean_dunno(env, caplog):
    e = env()
    e.setting("@.", kind="external", max_msgs=1)
    request = PolicyRequest.build(
        {"protocol_state": "END-OF-MESSAGE", "client_address": "192.0.2.10", "sender": "s@a.com"}
    )
    assert [e.policy.decide(request, now=T0).action for _ in range(2)] == ["DUNNO", "DUNNO"]
    assert e.counts() == {}
    e.store.iredapd.execute("DROP TABLE throttle")  # a schema without NOT NULL, as SQLite admins may have
    e.store.iredapd.execute(
        "CREATE TABLE throttle (id INTEGER PRIMARY KEY, account TEXT, kind TEXT, priority INTEGER, period INTEGER,"
        " msg_size INTEGER, max_rcpts INTEGER, max_msgs INTEGER, max_quota INTEGER)"
    )
    e.store.iredapd.execute("INSERT INTO throttle VALUES (1, '@.', 'external', 0, 60, NULL, NULL, NULL, NULL)")
    assert e.ask() == "DUNNO"
    assert "throttle row id=1 has NULL msg_size (no throttling)" in caplog.text


def test_quota_rejection_hands_the_notice_its_event(env):
    e = env()
    size_tid = e.setting("@.", kind="external", msg_size=10**6)
    msgs_tid = e.setting("s@a.com", kind="external", priority=100, max_msgs=1)
    e.ask(now=T0)
    assert e.ask(now=T0 + 5) == QUOTA
    (event,) = e.notices.events
    assert (event.user, event.client_address, event.kind, event.rule, event.value) == (
        "s@a.com",
        "192.0.2.10",
        "external",
        "max_msgs",
        1,
    )
    assert (event.tid, event.tracking_account, event.now) == (msgs_tid, "s@a.com", T0 + 5)
    assert [(c.tid, c.rule, c.value, c.account) for c in event.claims] == [
        (msgs_tid, "max_msgs", 1, "s@a.com"),
        (size_tid, "msg_size", 10**6, "@."),
    ]
    assert e.ask(size="10000000", now=T0 + 6) == "REJECT Message size is too large"
    assert len(e.notices.events) == 1  # msg_size and max_rcpts send no notice


def test_round_trips(env):
    """Alias lookup + one settings statement + one UPDATE per counted call; a refusal reads the row."""
    e = env()
    e.setting("@.", kind="external", max_msgs=2)
    e.setting("@.", kind="inbound", max_msgs=0)
    e.ask(now=T0)  # creates the two tracking rows
    e.trace()
    assert e.ask(now=T0 + 1) == "DUNNO"
    kinds = [s.split()[0].upper() for s in e.statements]
    assert kinds == ["SELECT", "SELECT", "UPDATE", "UPDATE"], e.statements
    e.statements.clear()
    assert e.ask(now=T0 + 2) == QUOTA
    assert [s.split()[0].upper() for s in e.statements] == ["SELECT", "SELECT", "UPDATE", "SELECT"], e.statements
    e.statements.clear()
    assert e.ask(recipient="r@a.com") == "DUNNO"  # bypassed: no statement at all
    assert e.statements == []
