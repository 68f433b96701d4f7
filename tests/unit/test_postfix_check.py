"""apd --check-postfix: one main.cf/master.cf sample per finding, and the samples that give none."""

from __future__ import annotations

import io
import sys

import pytest

from apd import checks as registry
from apd import settings as settings_module
from apd.cli import main
from apd.postfix_check import apd_facts, check_postfix
from apd.postfix_conf import Parameters, PostfixConfError, expand, parse_main_cf, parse_master_cf, restriction_list

APD = "check_policy_service inet:127.0.0.1:7777"

# iRedMail's samples/postfix/main.cf, its restriction part.
IREDMAIL = f"""\
smtpd_helo_required = yes
smtpd_helo_restrictions =
    permit_mynetworks
    permit_sasl_authenticated
    check_helo_access pcre:/etc/postfix/helo_access.pcre
    reject_non_fqdn_helo_hostname
    reject_unknown_helo_hostname
smtpd_sender_restrictions =
    reject_non_fqdn_sender
    reject_unlisted_sender
    permit_mynetworks
    permit_sasl_authenticated
    check_sender_access pcre:/etc/postfix/sender_access.pcre
    reject_unknown_sender_domain
# Recipient restrictions
smtpd_recipient_restrictions =
    reject_unknown_recipient_domain
    reject_non_fqdn_recipient
    reject_unlisted_recipient
    {APD}
    permit_mynetworks
    permit_sasl_authenticated
    reject_unauth_destination
    check_policy_service inet:127.0.0.1:12340
smtpd_end_of_data_restrictions =
    {APD}
smtpd_data_restrictions = reject_unauth_pipelining
"""
IREDMAIL_COMPAT = IREDMAIL + "compatibility_level = 2\n"
RECIPIENT_ONLY = f"compatibility_level = 3.6\nsmtpd_recipient_restrictions = {APD}, reject_unauth_destination\n"
BOTH = RECIPIENT_ONLY + f"smtpd_end_of_data_restrictions = {APD}\n"

# iRedMail's master.cf services (submission, smtps, the amavisd re-injection listener).
IREDMAIL_MASTER = """\
smtp      inet  n       -       n       -       -       smtpd
submission inet n       -       n       -       -       smtpd
    -o syslog_name=postfix/submission
    -o smtpd_tls_security_level=encrypt
    -o smtpd_sasl_auth_enable=yes
    -o smtpd_client_restrictions=permit_sasl_authenticated,reject
    -o content_filter=smtp-amavis:[127.0.0.1]:10026
smtps     inet  n       -       n       -       -       smtpd
    -o syslog_name=postfix/smtps
    -o smtpd_tls_wrappermode=yes
    -o smtpd_sasl_auth_enable=yes
    -o smtpd_client_restrictions=permit_sasl_authenticated,reject
127.0.0.1:10025 inet n  -   n   -   -  smtpd
    -o content_filter=
    -o smtpd_restriction_classes=
    -o smtpd_delay_reject=no
    -o smtpd_client_restrictions=permit_mynetworks,reject
    -o smtpd_helo_restrictions=
    -o smtpd_sender_restrictions=
    -o smtpd_recipient_restrictions=permit_mynetworks,reject
    -o smtpd_end_of_data_restrictions=
"""
# Debian's commented-out submission service, enabled: its recipient list is emptied.
DEBIAN_SUBMISSION = """\
smtp      inet  n       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_client_restrictions=$mua_client_restrictions
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=
"""
SUBMISSION_PERMITS_FIRST = f"""\
submission inet n - n - - smtpd
  -o {{ smtpd_recipient_restrictions = permit_sasl_authenticated, {APD}, reject }}
"""

NO_FINDING = [
    ("iredmail-compat-2", IREDMAIL_COMPAT, "", {}),
    ("iredmail-compat-2-with-master", IREDMAIL_COMPAT, IREDMAIL_MASTER, {}),
    (
        "iredmail-relay-restrictions",
        IREDMAIL + "smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination\n",
        "",
        {},
    ),
    ("iredmail-without-amavisd-wblist", IREDMAIL, "", {"plugins": ["greylisting", "throttle"]}),
    ("both-states", BOTH, "", {}),
    (
        "delayed-sender-list-is-rcpt",
        f"compatibility_level=2\nsmtpd_sender_restrictions = {APD}\nsmtpd_end_of_data_restrictions = {APD}\n",
        "",
        {},
    ),
    (
        "restriction-class",
        "compatibility_level = 2\nsmtpd_restriction_classes = apd_policy\n"
        f"apd_policy = {APD}\nsmtpd_recipient_restrictions = apd_policy\nsmtpd_end_of_data_restrictions = apd_policy\n",
        "",
        {},
    ),
    (
        "dollar-expansion",
        "compatibility_level = 2\napd = inet:${host}:7777\nhost = 127.0.0.1\n"
        "smtpd_recipient_restrictions = check_policy_service $apd\nsmtpd_end_of_data_restrictions = "
        "check_policy_service $(apd)\n",
        "",
        {},
    ),
    (
        "ipv6-listener",
        "compatibility_level = 2\nsmtpd_recipient_restrictions = check_policy_service inet:[::1]:7777\n"
        "smtpd_end_of_data_restrictions = check_policy_service inet:[::1]:7777\n",
        "",
        {"listen_address": "::1"},
    ),
    (
        "wildcard-listener",
        "compatibility_level = 2\nsmtpd_recipient_restrictions = check_policy_service inet:192.0.2.1:7777\n"
        "smtpd_end_of_data_restrictions = check_policy_service inet:localhost:7777\n",
        "",
        {"listen_address": "0.0.0.0"},
    ),
    ("reinjection-listener-ignored", BOTH, "10025 inet n - n - - smtpd -o smtpd_recipient_restrictions=", {}),
    (
        "trusted-clients-bypass-throttle",
        RECIPIENT_ONLY + f"smtpd_end_of_data_restrictions = permit_mynetworks, {APD}\n",
        "",
        {"THROTTLE_BYPASS_MYNETWORKS": True},
    ),
    (
        "default-action-matches",
        BOTH + "smtpd_policy_service_default_action = 451 4.3.0 Store down\n",
        "",
        {"STORE_FAILURE_ACTION": "451 4.3.0 Store down"},
    ),
    (
        "default-action-per-service",
        "compatibility_level = 2\n"
        "smtpd_recipient_restrictions = check_policy_service { inet:127.0.0.1:7777, default_action=DUNNO }\n"
        f"smtpd_end_of_data_restrictions = {APD}\n",
        "",
        {},
    ),
]

FINDINGS = [
    (
        "iredmail-relay-by-ok",
        IREDMAIL,
        "",
        {},
        [
            "main.cf: smtpd_recipient_restrictions: check_policy_service inet:127.0.0.1:7777 comes before "
            "reject_unauth_destination and amavisd_wblist can answer OK"
        ],
    ),
    (
        "relay-guard-after-apd-in-relay-list",
        f"compatibility_level = 2\nsmtpd_relay_restrictions = {APD}, reject_unauth_destination\n"
        f"smtpd_end_of_data_restrictions = {APD}\n",
        "",
        {},
        [
            "smtpd_relay_restrictions: check_policy_service inet:127.0.0.1:7777 comes before reject_unauth_destination"
            " and amavisd_wblist can answer OK: a whitelisted sender may relay to any domain; fix: move "
            "check_policy_service inet:127.0.0.1:7777 to smtpd_recipient_restrictions"
        ],
    ),
    (
        "no-policy-service",
        "smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:127.0.0.1:12340\n",
        "",
        {},
        ["main.cf: no check_policy_service for apd (inet:127.0.0.1:7777) in any smtpd_*_restrictions: Postfix"],
    ),
    (
        "other-host-same-port",
        "smtpd_recipient_restrictions = check_policy_service inet:192.0.2.7:7777, reject_unauth_destination\n",
        "",
        {},
        ["(check_policy_service inet:192.0.2.7:7777 has apd's port but not its address 127.0.0.1)"],
    ),
    (
        "undeclared-restriction-class",
        f"apd_policy = {APD}\nsmtpd_recipient_restrictions = apd_policy, reject_unauth_destination\n",
        "",
        {},
        ["no check_policy_service for apd"],
    ),
    (
        "unreachable-after-permit",
        f"smtpd_recipient_restrictions = reject_unauth_destination, permit, {APD}\n",
        "",
        {},
        ["no check_policy_service for apd"],
    ),
    (
        "throttle-without-end-of-data",
        RECIPIENT_ONLY,
        "",
        {},
        [
            "main.cf: throttle needs protocol state END-OF-MESSAGE but apd is asked only at RCPT "
            "(smtpd_recipient_restrictions): it never runs; fix: add check_policy_service inet:127.0.0.1:7777 to "
            "smtpd_end_of_data_restrictions"
        ],
    ),
    (
        "rcpt-checks-only-at-end-of-data",
        f"compatibility_level = 2\nsmtpd_end_of_data_restrictions = {APD}\n",
        "",
        {"plugins": ["greylisting", "reject_sender_login_mismatch", "throttle"]},
        [
            "reject_sender_login_mismatch, greylisting need protocol state RCPT but apd is asked only at "
            "END-OF-MESSAGE (smtpd_end_of_data_restrictions): they never run"
        ],
    ),
    (
        "sender-list-without-delay-reject",
        f"compatibility_level = 2\nsmtpd_delay_reject = no\nsmtpd_sender_restrictions = {APD}\n"
        f"smtpd_end_of_data_restrictions = {APD}\n",
        "",
        {"plugins": ["greylisting", "throttle"]},
        ["greylisting needs protocol state RCPT but apd is asked only at MAIL (smtpd_sender_restrictions)"],
    ),
    (
        "after-permit-sasl",
        f"compatibility_level = 2\nsmtpd_recipient_restrictions = permit_sasl_authenticated, {APD}\n"
        f"smtpd_end_of_data_restrictions = {APD}\n",
        "",
        {"plugins": ["reject_sender_login_mismatch", "greylisting", "throttle"]},
        [
            "main.cf: smtpd_recipient_restrictions: check_policy_service inet:127.0.0.1:7777 comes after "
            "permit_sasl_authenticated, so apd is never asked for SMTP-authenticated clients and "
            "reject_sender_login_mismatch never runs for them; fix: move check_policy_service inet:127.0.0.1:7777 "
            "before permit_sasl_authenticated"
        ],
    ),
    (
        "outbound-throttle-after-permits",
        RECIPIENT_ONLY + f"smtpd_end_of_data_restrictions = permit_mynetworks, permit_sasl_authenticated, {APD}\n",
        "",
        {"plugins": ["throttle"]},
        [
            "smtpd_end_of_data_restrictions: check_policy_service inet:127.0.0.1:7777 comes after "
            "permit_sasl_authenticated, so apd is never asked for SMTP-authenticated clients and throttle never runs",
            "comes after permit_mynetworks, so apd is never asked for mynetworks clients and throttle never runs",
        ],
    ),
    (
        "request-limit-1",
        BOTH + "smtpd_policy_service_request_limit = 1\n",
        "",
        {},
        ["main.cf: smtpd_policy_service_request_limit = 1: smtpd opens a new connection to apd for every request"],
    ),
    (
        "request-limit-1-per-service",
        "compatibility_level = 2\n"
        "smtpd_recipient_restrictions = check_policy_service { inet:127.0.0.1:7777, request_limit = 1 }\n"
        f"smtpd_end_of_data_restrictions = {APD}\n",
        "",
        {},
        ["smtpd_policy_service_request_limit = 1"],
    ),
    (
        "default-action-differs",
        BOTH,
        "",
        {"STORE_FAILURE_ACTION": "451 4.3.0 Store down"},
        [
            "main.cf: smtpd_policy_service_default_action is Postfix's default ('451 4.3.5 Server configuration "
            "problem') while apd's STORE_FAILURE_ACTION is '451 4.3.0 Store down'"
        ],
    ),
    (
        "submission-empties-recipient-list",
        BOTH,
        DEBIAN_SUBMISSION,
        {"plugins": ["reject_sender_login_mismatch", "throttle"]},
        [
            "master.cf service submission: reject_sender_login_mismatch needs protocol state RCPT but apd is asked "
            "only at END-OF-MESSAGE"
        ],
    ),
    (
        "submission-permits-before-apd",
        BOTH,
        SUBMISSION_PERMITS_FIRST,
        {"plugins": ["reject_sender_login_mismatch", "throttle"]},
        [
            "master.cf service submission: smtpd_recipient_restrictions: check_policy_service inet:127.0.0.1:7777 "
            "comes after permit_sasl_authenticated"
        ],
    ),
]


def facts_for(changes: dict):
    settings = settings_module.defaults().replace(**changes)
    planned, _ = registry.plan(settings)
    return apd_facts(settings, planned)


def run(main_cf: str, master_cf: str, changes: dict) -> list[str]:
    found = check_postfix(parse_main_cf(main_cf), parse_master_cf(master_cf), facts_for(changes))
    return [finding.line() for finding in found]


@pytest.mark.parametrize(
    "main_cf, master_cf, changes", [case[1:] for case in NO_FINDING], ids=[c[0] for c in NO_FINDING]
)
def test_no_finding(main_cf, master_cf, changes):
    assert run(main_cf, master_cf, changes) == []


@pytest.mark.parametrize(
    "main_cf, master_cf, changes, expected", [case[1:] for case in FINDINGS], ids=[c[0] for c in FINDINGS]
)
def test_finding(main_cf, master_cf, changes, expected):
    lines = run(main_cf, master_cf, changes)
    assert len(lines) == len(expected), lines
    for line, text in zip(lines, expected):
        assert text in line
        assert "; fix: " in line


def test_states_come_from_the_registry():
    """A check's protocol states are read from its class: a custom END-OF-MESSAGE check is judged by them."""
    facts = facts_for({"plugins": ["throttle"]})
    assert facts.checks == (("throttle", frozenset({"END-OF-MESSAGE"})),)


# --- parsing ----------------------------------------------------------------------------------------------------


def test_continuation_and_comment_lines():
    params = parse_main_cf("a = one\n  two\n# comment\n  # indented comment\n\tthree\nb=\nc = x # not a comment\n")
    assert params == {"a": "one two three", "b": "", "c": "x # not a comment"}


def test_later_line_wins():
    assert parse_main_cf("a = 1\na = 2\n") == {"a": "2"}


def test_malformed_line_names_it():
    with pytest.raises(PostfixConfError, match=r"main.cf:2: expected 'name = value'"):
        parse_main_cf("a = 1\nnot a setting\n")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("$a", "A"),
        ("${a}-$(a)", "A-A"),
        ("${a?{yes it is}}", "yes it is"),
        ("${empty?yes}", ""),
        ("${empty:no}", "no"),
        ("${a:no}", ""),
        ("$$a", "$a"),
        ("$nested", "A A"),
        ("$loop", ""),
        ("$undefined", ""),
    ],
)
def test_expand(value, expected):
    params = {"a": "A", "empty": "", "nested": "$a ${a}", "loop": "$loop"}
    assert expand(value, lambda name: params.get(name, "")) == expected


def test_relay_default_follows_compatibility_level():
    assert Parameters({}).get("smtpd_relay_restrictions") == ""
    assert "defer_unauth_destination" in Parameters({"compatibility_level": "3.6"}).get("smtpd_relay_restrictions")


def test_restriction_arguments_and_braces():
    params = Parameters(
        {
            "smtpd_recipient_restrictions": "reject_rbl_client zen.example, check_sender_access hash:/x,"
            "check_policy_service { inet:127.0.0.1:7777, timeout=10s, default_action = {451 4.3.0 busy} }, permit"
        }
    )
    items = restriction_list(params, "smtpd_recipient_restrictions")
    assert [str(item) for item in items] == [
        "reject_rbl_client zen.example",
        "check_sender_access hash:/x",
        "check_policy_service inet:127.0.0.1:7777",
        "permit",
    ]
    assert items[2].option("default_action") == "451 4.3.0 busy"
    assert items[2].option("timeout") == "10s"


def test_master_cf_overrides():
    services = parse_master_cf(
        "# comment\nsubmission inet n - n - - smtpd\n  -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n"
        "  -o { smtpd_recipient_restrictions = permit_mynetworks, reject }\n"
        "pickup unix n - n 60 1 pickup\n"
    )
    assert [(s.name, s.type, s.command) for s in services] == [
        ("submission", "inet", "smtpd"),
        ("pickup", "unix", "pickup"),
    ]
    assert services[0].overrides == (
        ("smtpd_client_restrictions", "permit_sasl_authenticated,reject"),
        ("smtpd_recipient_restrictions", "permit_mynetworks, reject"),
    )


def test_master_cf_short_line_refused():
    with pytest.raises(PostfixConfError, match=r"master.cf:1: expected at least 8 fields"):
        parse_master_cf("smtp inet n - n\n")


# --- the command ------------------------------------------------------------------------------------------------


def test_command_exit_codes(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("APD_SETTINGS", raising=False)
    settings = tmp_path / "settings.py"
    settings.write_text("plugins = ['greylisting', 'throttle']\n")
    good = tmp_path / "good" / "main.cf"
    good.parent.mkdir()
    good.write_text(BOTH)
    assert main(["-c", str(settings), "--check-postfix", str(good)]) == 0
    assert "no finding" in capsys.readouterr().out

    bad = tmp_path / "bad.cf"
    bad.write_text(RECIPIENT_ONLY)
    assert main(["-c", str(settings), "--check-postfix", str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("main.cf: throttle needs protocol state END-OF-MESSAGE")

    assert main(["-c", str(settings), "--check-postfix", str(tmp_path / "missing.cf")]) == 2
    assert "cannot read" in capsys.readouterr().err
    garbage = tmp_path / "garbage.cf"
    garbage.write_text("this is not\x1b[31m main.cf\n")
    assert main(["-c", str(settings), "--check-postfix", str(garbage)]) == 2
    err = capsys.readouterr().err
    assert "expected 'name = value'" in err and "\x1b" not in err
    assert main(["-c", str(settings), "--check-postfix", "a", "b", "c"]) == 2


def test_command_reads_master_cf_beside_main_cf(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("APD_SETTINGS", raising=False)
    settings = tmp_path / "settings.py"
    settings.write_text("plugins = ['reject_sender_login_mismatch', 'throttle']\n")
    (tmp_path / "main.cf").write_text(BOTH)
    (tmp_path / "master.cf").write_text(DEBIAN_SUBMISSION)
    assert main(["-c", str(settings), "--check-postfix", str(tmp_path / "main.cf")]) == 1
    assert capsys.readouterr().out.startswith("master.cf service submission: reject_sender_login_mismatch needs")
    other = tmp_path / "empty-master.cf"
    other.write_text("")
    assert main(["-c", str(settings), "--check-postfix", str(tmp_path / "main.cf"), str(other)]) == 0


def test_command_reads_stdin(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("APD_SETTINGS", raising=False)
    settings = tmp_path / "settings.py"
    settings.write_text("plugins = ['throttle']\n")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(RECIPIENT_ONLY.encode())))
    assert main(["-c", str(settings), "--check-postfix", "-"]) == 1
    assert capsys.readouterr().out.startswith("main.cf: throttle needs protocol state END-OF-MESSAGE")
