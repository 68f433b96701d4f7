"""The check chain (protocol.md §3), the two database-free checks and MYNETWORKS (§5)."""

from __future__ import annotations

import importlib.util
import json
import logging

import pytest

from apd import checks as registry
from apd import replies
from apd.checks import reject_null_sender, reject_to_hostname
from apd.checks.base import Check
from apd.errors import StoreUnavailable
from apd.netmatch import TrustedClients
from apd.policy import Policy, combine, ends_chain
from apd.protocol import PolicyRequest
from apd.settings import ConfigError, defaults


def rcpt(**attrs: str) -> PolicyRequest:
    base = {
        "protocol_state": "RCPT",
        "client_address": "192.0.2.10",
        "sender": "a@example.net",
        "recipient": "b@example.com",
    }
    return PolicyRequest.build({**base, **attrs})


def fake(name: str, result=None, states=("RCPT",), calls: list | None = None):
    """A Check whose answer is fixed: a string, None, or an exception instance to raise."""

    class Fake(Check):
        def check(self, request, ctx):
            if calls is not None:
                calls.append(name)
            if isinstance(result, BaseException):
                raise result
            return result

    Fake.name = name
    Fake.states = frozenset(states)
    return Fake(defaults(), None)


def policy(*checks: Check, **settings) -> Policy:
    return Policy(list(checks), defaults().replace(**settings), None)


# --- combining


@pytest.mark.parametrize(
    "results, action",
    [
        ([], "DUNNO"),
        ([None, None], "DUNNO"),
        (["DUNNO", "REJECT x", "OK"], "REJECT x"),
        (["DUNNO some text", None], "DUNNO"),  # text after DUNNO never reaches Postfix
        (["OK", "REJECT x"], "OK"),
        (["dunno", "REJECT x"], "dunno"),  # the prefix test is case-sensitive
        (["DUNNOx", "REJECT y"], "REJECT y"),  # starts with DUNNO: goes on
        (["", "REJECT x"], "DUNNO"),  # an empty result ends the chain; the answer is DUNNO
        (["451 4.7.1 later", "OK"], "451 4.7.1 later"),
    ],
)
def test_combine(results, action) -> None:
    assert combine(results) == action


def test_ends_chain() -> None:
    assert not ends_chain(None)
    assert not ends_chain("DUNNO")
    assert ends_chain("OK")
    assert ends_chain("")


def test_first_ending_result_wins_and_later_checks_do_not_run() -> None:
    calls: list[str] = []
    p = policy(fake("a", "DUNNO", calls=calls), fake("b", "REJECT b", calls=calls), fake("c", "OK", calls=calls))
    decision = p.decide(rcpt())
    assert (decision.action, decision.check) == ("REJECT b", "b")
    assert calls == ["a", "b"]
    assert decision.millis >= 0


def test_all_dunno_gives_plain_dunno_and_no_deciding_check() -> None:
    decision = policy(fake("a", "DUNNO with text"), fake("b")).decide(rcpt())
    assert (decision.action, decision.check) == ("DUNNO", "")


def test_state_filter() -> None:
    calls: list[str] = []
    eom = fake("eom", "REJECT eom", states=("END-OF-MESSAGE",), calls=calls)
    both = fake("both", "DUNNO", states=("RCPT", "END-OF-MESSAGE"), calls=calls)
    p = policy(eom, both)
    assert p.decide(rcpt()).action == "DUNNO"
    assert calls == ["both"]
    calls.clear()
    assert p.decide(rcpt(protocol_state="end-of-message")).action == "REJECT eom"
    assert calls == ["eom"]
    calls.clear()
    assert p.decide(rcpt(protocol_state="DATA")).action == "DUNNO"
    assert calls == []


def test_exception_in_a_check_counts_as_dunno_and_chain_continues(caplog) -> None:
    caplog.set_level(logging.ERROR)
    p = policy(fake("broken", RuntimeError("bug here")), fake("next", "REJECT next"))
    assert p.decide(rcpt()).action == "REJECT next"
    assert "Error while applying plugin 'broken'" in caplog.text
    assert "RuntimeError: bug here" in caplog.text  # the traceback is logged


def test_exception_in_the_only_check_gives_dunno() -> None:
    assert policy(fake("broken", KeyError("x"))).decide(rcpt()).action == "DUNNO"


@pytest.mark.parametrize("bad", [42, True, ("REJECT", "x"), b"REJECT bytes"])
def test_a_result_that_is_not_a_string_counts_as_dunno(bad, caplog) -> None:
    p = policy(fake("odd", bad), fake("next", "REJECT next"))
    assert p.decide(rcpt()).action == "REJECT next"
    assert "Plugin 'odd' returned" in caplog.text


def test_store_unavailable_default_is_fail_open() -> None:
    p = policy(fake("db", StoreUnavailable("down")), fake("next", "REJECT next"))
    assert p.decide(rcpt()).action == "REJECT next"


def test_store_unavailable_with_tempfail_action() -> None:
    p = policy(
        fake("db", StoreUnavailable("down")), fake("next", "REJECT next"), STORE_FAILURE_ACTION="451 4.3.0 try later"
    )
    decision = p.decide(rcpt())
    assert (decision.action, decision.check) == ("451 4.3.0 try later", "db")


def test_invalid_address_and_empty_request_skip_the_chain() -> None:
    calls: list[str] = []
    p = policy(fake("a", "REJECT a", calls=calls))
    assert p.decide(rcpt(sender="bad")).action == "DUNNO Error: Invalid sender address: bad"
    assert p.decide(PolicyRequest.build({})).action == "DUNNO"
    assert calls == []


def test_empty_plugin_list() -> None:
    assert policy().decide(rcpt()).action == replies.NO_ENABLED_PLUGINS == "DUNNO No enabled plugins"


# --- ordering (registry.plan)


def order(**settings) -> list[tuple[str, int]]:
    planned, _ = registry.plan(defaults().replace(**settings))
    return [(p.name, p.priority) for p in planned]


def write_custom(folder, name: str, states: str = "['RCPT']") -> None:
    (folder / f"{name}.py").write_text(
        f"SMTP_PROTOCOL_STATE = {states}\n\ndef restriction(**kwargs):\n    return 'REJECT from {name}'\n"
    )


def test_ties_keep_plugins_list_order() -> None:
    assert order(plugins=["reject_to_hostname", "reject_null_sender"]) == [
        ("reject_to_hostname", 100),
        ("reject_null_sender", 100),
    ]
    assert order(plugins=["reject_null_sender", "reject_to_hostname"]) == [
        ("reject_null_sender", 100),
        ("reject_to_hostname", 100),
    ]


def test_plugin_priorities_override_and_larger_runs_first() -> None:
    got = order(plugins=["reject_null_sender", "reject_to_hostname"], PLUGIN_PRIORITIES={"reject_to_hostname": 101})
    assert got == [("reject_to_hostname", 101), ("reject_null_sender", 100)]
    got = order(plugins=["reject_null_sender", "reject_to_hostname"], PLUGIN_PRIORITIES={"reject_null_sender": -5})
    assert got == [("reject_to_hostname", 100), ("reject_null_sender", -5)]


def test_custom_checks_default_to_priority_zero_and_can_be_raised(tmp_path) -> None:
    for name in ("custom_a", "custom_b", "custom_c"):
        write_custom(tmp_path, name)
    plugins = ["custom_a", "custom_b", "reject_null_sender", "custom_c"]
    assert order(plugins=plugins, CUSTOM_CHECKS_DIR=str(tmp_path)) == [
        ("reject_null_sender", 100),
        ("custom_a", 0),
        ("custom_b", 0),
        ("custom_c", 0),
    ]
    got = order(plugins=plugins, CUSTOM_CHECKS_DIR=str(tmp_path), PLUGIN_PRIORITIES={"custom_c": 100, "custom_b": 200})
    assert got == [("custom_b", 200), ("reject_null_sender", 100), ("custom_c", 100), ("custom_a", 0)]


def test_a_name_listed_twice_is_applied_twice() -> None:
    assert order(plugins=["reject_null_sender", "reject_null_sender"]) == [("reject_null_sender", 100)] * 2


def test_unknown_check_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        registry.plan(defaults().replace(plugins=["reject_null_sender", "no_such_check"]))
    assert "no_such_check" in str(err.value)


def test_every_iredapd_plugin_is_a_check() -> None:
    """iRedMail's plugin lists load unchanged: every iRedAPD plugin name plans, none is skipped
    (the *_force_change_password warnings are iRedAPD's priority-key quirk)."""
    names = sorted(registry.IREDAPD_PLUGINS)
    assert [name for name in names if importlib.util.find_spec(f"apd.checks.{name}") is None] == []
    planned, warnings = registry.plan(defaults().replace(plugins=names))
    assert sorted(p.name for p in planned) == names
    assert all(issubclass(p.cls, Check) and p.cls.name == p.name for p in planned)
    assert [w for w in warnings if "priority 0" not in w] == []


def test_legacy_module_states_and_arguments(tmp_path) -> None:
    (tmp_path / "custom_args.py").write_text(
        "import json\n"
        "SMTP_PROTOCOL_STATE = ['rcpt', 'END-OF-MESSAGE']\n"
        "def restriction(**kwargs):\n"
        "    kwargs['smtp_session_data'] = sorted(kwargs['smtp_session_data'].items())\n"
        "    return 'REJECT ' + json.dumps(kwargs, sort_keys=True)\n"
    )
    settings = defaults().replace(plugins=["custom_args"], CUSTOM_CHECKS_DIR=str(tmp_path))
    planned, _ = registry.plan(settings)
    assert planned[0].cls.states == frozenset({"RCPT", "END-OF-MESSAGE"})

    class FakeStore:
        vmail, amavisd, iredapd = "vmail-db", "amavisd-db", "iredapd-db"

    (check,) = registry.instantiate(planned, settings, FakeStore())
    p = Policy([check], settings, FakeStore())
    action = p.decide(rcpt(sender="s+x@example.net", sasl_username="u@example.org")).action
    kwargs = json.loads(action.split(" ", 1)[1])
    assert kwargs["sender"] == "s+x@example.net"
    assert kwargs["sender_without_ext"] == "s@example.net"
    assert kwargs["sender_domain"] == "example.net"
    assert kwargs["recipient"] == kwargs["recipient_without_ext"] == "b@example.com"
    assert kwargs["recipient_domain"] == "example.com"
    assert kwargs["sasl_username"] == "u@example.org"
    assert kwargs["sasl_username_domain"] == "example.org"
    assert kwargs["client_address"] == "192.0.2.10"
    assert kwargs["conn_vmail"] == "vmail-db"
    assert kwargs["engine_amavisd"] == "amavisd-db"
    assert kwargs["engine_iredapd"] == "iredapd-db"
    assert ["recipient_without_ext", "b@example.com"] in kwargs["smtp_session_data"]
    assert p.decide(rcpt(protocol_state="END-OF-MESSAGE")).action.startswith("REJECT ")
    assert p.decide(rcpt(protocol_state="DATA")).action == "DUNNO"


# --- reject_null_sender


@pytest.mark.parametrize(
    "sasl, sender, action",
    [
        ("u@example.com", "", replies.REJECT_NULL_SENDER),
        ("u@example.com", "u@example.com", None),
        ("", "", None),
        ("", "a@example.com", None),
    ],
)
def test_reject_null_sender_decide(sasl: str, sender: str, action) -> None:
    assert reject_null_sender.decide(sasl, sender) == action


def test_reject_null_sender_text() -> None:
    assert replies.REJECT_NULL_SENDER == "REJECT Policy rejection due to null sender"


# --- reject_to_hostname

HOST = "mx.example.com"


@pytest.mark.parametrize(
    "sasl, trusted, recipient, action",
    [
        ("", False, f"user@{HOST}", "REJECT Not authorized"),
        ("u@example.com", False, f"user@{HOST}", None),
        ("", True, f"user@{HOST}", None),
        ("", False, f"srs0=abc=tt=d.com=u@{HOST}", None),
        ("", False, f"srs1=abc=tt=d.com=u@{HOST}", None),
        ("", False, f"SRS0x@{HOST}", "REJECT Not authorized"),
        ("", False, "user@example.com", None),
        ("", False, f"user@sub.{HOST}", None),
    ],
)
def test_reject_to_hostname_decide(sasl: str, trusted: bool, recipient: str, action) -> None:
    domain = recipient.split("@", 1)[1]
    assert reject_to_hostname.decide(sasl, trusted, recipient, domain, HOST) == action


def test_reject_to_hostname_check() -> None:
    settings = defaults().replace(plugins=["reject_to_hostname"], MYNETWORKS=["198.51.100.0/24"])
    planned, _ = registry.plan(settings)
    (check,) = registry.instantiate(planned, settings, None)
    check.hostname = HOST
    p = Policy([check], settings, None)
    assert p.decide(rcpt(recipient=f"user@{HOST}")).action == "REJECT Not authorized"
    assert p.decide(rcpt(recipient=f"u@{HOST}", client_address="127.0.0.1")).action == "DUNNO"
    assert p.decide(rcpt(recipient=f"u@{HOST}", client_address="198.51.100.7")).action == "DUNNO"
    assert p.decide(rcpt(recipient=f"u@{HOST}", client_address="unknown")).action == "DUNNO"
    assert p.decide(rcpt(recipient=f"u@{HOST}", sasl_username="u@example.com")).action == "DUNNO"


# --- MYNETWORKS


@pytest.mark.parametrize(
    "mynetworks, all_wildcards, client, trusted",
    [
        ([], False, "127.0.0.1", True),
        ([], False, "::1", True),
        ([], False, "127.0.0.2", False),
        ([], False, "192.0.2.1", False),
        (["192.0.2.1"], False, "192.0.2.1", True),
        (["192.0.2.1"], False, "192.0.2.11", False),
        (["2001:db8::1"], False, "2001:db8::1", True),
        (["2001:db8::1"], False, "2001:db8:0::1", False),  # IPv6 strings match textually
        (["192.0.2.*"], False, "192.0.2.200", True),
        (["192.0.*.7"], False, "192.0.99.7", True),
        (["192.0.*.*"], False, "192.0.99.7", False),  # needs ENABLE_ALL_WILDCARD_IP
        (["192.0.*.*"], True, "192.0.99.7", True),
        (["*.*.*.*"], True, "203.0.113.9", True),
        (["192.0.2.0/24"], False, "192.0.2.77", True),
        (["192.0.2.0/24"], False, "192.0.3.1", False),
        (["2001:db8::/32"], False, "2001:db8:1::5", True),
        (["2001:db8::/32"], False, "2001:db9::5", False),
        (["192.0.2.1/24"], False, "192.0.2.77", False),  # host bits set: dropped silently
        (["10.0.0.0/8"], False, "not-an-ip", False),
    ],
)
def test_trusted_clients(mynetworks, all_wildcards, client: str, trusted: bool) -> None:
    assert (client in TrustedClients(mynetworks, all_wildcards)) is trusted
