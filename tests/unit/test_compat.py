"""iRedAPD-style custom plugins (imports of libs.* and settings) load and run unchanged."""

from __future__ import annotations

import sys

import pytest

from apd import checks as registry
from apd.compat import SMTP_ACTIONS, legacy_imports
from apd.policy import Policy
from apd.protocol import RequestReader
from apd.settings import defaults

# Written in the style of iRedAPD's samples/plugins: module-level imports of libs and settings.
TRAP_PLUGIN = """\
from libs.logger import logger
from libs import SMTP_ACTIONS
from libs import utils, wblist
from libs.wblist import add_wblist
import settings

_action = settings.SPAM_TRAP_SMTP_ACTION
_relay = getattr(settings, 'CUSTOM_RELAY_DEFAULT_RELAY', 'smtp-amavis:[127.0.0.1]:10025')


def restriction(**kwargs):
    recipient = kwargs['recipient']
    if recipient in settings.SPAM_TRAP_ACCOUNTS or any(
        recipient.startswith(t) for t in settings.SPAM_TRAP_ACCOUNTS if t.endswith('@')
    ):
        logger.info('spam trap hit: %s', recipient)
        if settings.SPAM_TRAP_BLOCK_SENDER:
            add_wblist(conn=None, account='@.', bl_senders=[utils.strip_mail_ext_address(kwargs['sender'])])
        return _action
    if kwargs['recipient_domain'] == 'relay.example' and utils.is_trusted_client(kwargs['client_address']):
        return 'FILTER ' + _relay
    if not utils.is_email(kwargs['sender']):
        return SMTP_ACTIONS['reject_not_authorized']
    return SMTP_ACTIONS['default']
"""


class NoDatabases:
    vmail = amavisd = iredapd = None


def load(tmp_path, **settings):
    (tmp_path / "custom_trap.py").write_text(TRAP_PLUGIN)
    s = defaults().replace(plugins=["custom_trap"], CUSTOM_CHECKS_DIR=str(tmp_path), **settings)
    planned, _ = registry.plan(s)
    return Policy(registry.instantiate(planned, s, NoDatabases()), s, NoDatabases())


def decide(policy: Policy, lines: str) -> str:
    (request,) = RequestReader().feed(f"protocol_state=RCPT\nclient_address=192.0.2.1\n{lines}\n\n".encode())
    return policy.decide(request).action


PASS = {"SPAM_TRAP_ACCOUNTS": ["trap@example.com", "spam@"], "SPAM_TRAP_SMTP_ACTION": "FILTER smtp:[127.0.0.1]:10028"}


def test_iredapd_style_plugin_loads_and_decides(tmp_path) -> None:
    policy = load(tmp_path, SPAM_TRAP_BLOCK_SENDER=False, MYNETWORKS=["192.0.2.0/24"], **PASS)
    assert decide(policy, "sender=a@example.net\nrecipient=trap@example.com") == "FILTER smtp:[127.0.0.1]:10028"
    assert decide(policy, "sender=a@example.net\nrecipient=spam@example.org") == "FILTER smtp:[127.0.0.1]:10028"
    assert decide(policy, "sender=a@example.net\nrecipient=x@relay.example") == "FILTER smtp-amavis:[127.0.0.1]:10025"
    assert decide(policy, "sender=a@example.net\nrecipient=x@example.com") == "DUNNO"


def test_an_unprovided_helper_fails_at_its_call_and_counts_as_dunno(tmp_path, caplog) -> None:
    policy = load(tmp_path, SPAM_TRAP_BLOCK_SENDER=True, **PASS)
    assert decide(policy, "sender=a@example.net\nrecipient=trap@example.com") == "DUNNO"
    assert "libs.wblist.add_wblist is an iRedAPD helper that apd does not provide" in caplog.text


def test_a_missing_required_setting_stops_loading(tmp_path) -> None:
    (tmp_path / "custom_trap.py").write_text(TRAP_PLUGIN)
    s = defaults().replace(plugins=["custom_trap"], CUSTOM_CHECKS_DIR=str(tmp_path))
    with pytest.raises(Exception, match="custom check 'custom_trap' failed to load: AttributeError"):
        registry.plan(s)


def test_legacy_names_do_not_leak_into_sys_modules(tmp_path) -> None:
    sentinel = object()
    sys.modules["settings"] = sentinel  # type: ignore[assignment]
    try:
        load(tmp_path, SPAM_TRAP_BLOCK_SENDER=False, **PASS)
        assert sys.modules["settings"] is sentinel
        assert "libs" not in sys.modules and "libs.utils" not in sys.modules
    finally:
        del sys.modules["settings"]


def test_settings_module_mirrors_the_settings() -> None:
    s = defaults().replace(GREYLISTING_BLOCK_EXPIRE=7, RECIPIENT_DELIMITERS=["-"])
    with legacy_imports(s):
        import libs.utils  # type: ignore[import-not-found]
        import settings  # type: ignore[import-not-found]

        assert settings.GREYLISTING_BLOCK_EXPIRE == 7
        assert not hasattr(settings, "NO_SUCH_SETTING")
        assert libs.utils.strip_mail_ext_address("a-b@example.com") == "a@example.com"
        assert libs.utils.is_valid_amavisd_address("@.") == "catchall"
        assert libs.utils.is_valid_amavisd_address("bad") is False
        assert libs.utils.is_trusted_client("127.0.0.1")
        assert libs.utils.wildcard_ipv4("192.0.2.1") == ["192.0.2.*", "192.0.*.1"]


def test_smtp_actions_texts() -> None:
    assert SMTP_ACTIONS["default"] == "DUNNO"
    assert SMTP_ACTIONS["reject_not_authorized"] == "REJECT Not authorized"
    assert SMTP_ACTIONS["discard"] == "DISCARD Policy discard"
    assert SMTP_ACTIONS["reject_blacklisted_rdns"] == "REJECT Blacklisted reverse DNS name of server IP address"
    assert len(SMTP_ACTIONS) == 15
