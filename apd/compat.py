"""What an iRedAPD custom plugin imports, built from apd, so that ``custom_*.py`` files load unchanged.

iRedAPD plugins start with ``from libs.logger import logger``, ``from libs import SMTP_ACTIONS``,
``from libs import utils`` and ``import settings``. While a custom module is loaded those names
resolve to the modules below; apd's own namespace is left as it was afterwards.
Database helpers (``libs.wblist``, ``utils.create_db_engine`` ...) are not provided: they import,
but a plugin that calls one fails at that call, which counts as DUNNO and is logged.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Iterator

from apd import address, replies
from apd.netmatch import TrustedClients

# libs/__init__.py SMTP_ACTIONS (protocol.md §4)
SMTP_ACTIONS = {
    "default": replies.DUNNO,
    "whitelist": replies.OK,
    "discard": replies.DISCARD,
    "reject": replies.REJECT,
    "reject_null_sender": replies.REJECT_NULL_SENDER,
    "reject_forged_sender": replies.REJECT_FORGED_SENDER,
    "reject_sender_login_mismatch": replies.REJECT_SENDER_LOGIN_MISMATCH,
    "reject_blacklisted": replies.REJECT_BLACKLISTED,
    "reject_not_authorized": replies.REJECT_NOT_AUTHORIZED,
    "reject_message_size_exceeded": "REJECT Message size exceed (maybe caused by big attachment file)",
    "reject_blacklisted_rdns": "REJECT Blacklisted reverse DNS name of server IP address",
    "reject_quota_exceeded": replies.REJECT_QUOTA_EXCEEDED,
    "reject_msg_size_exceeded": replies.REJECT_MSG_SIZE_EXCEEDED,
    "reject_max_rcpts_exceeded": replies.REJECT_MAX_RCPTS_EXCEEDED,
    "reject_low_sender_score": replies.REJECT_LOW_SENDER_SCORE,
}


def _module(name: str, package: bool = False, stubs: bool = True, **attrs: Any) -> ModuleType:
    module = ModuleType(name)
    if package:
        module.__path__ = []  # lets `import libs.logger` find the submodule in sys.modules
    module.__dict__.update(attrs)
    if stubs:
        module.__getattr__ = _unavailable(name)  # PEP 562: names apd does not provide
    return module


def _unavailable(module_name: str) -> Any:
    """Unknown names import fine and fail when used, so one unsupported helper does not stop the plugin."""

    def lookup(name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if module_name == "libs":
            return _module(f"libs.{name}")

        def missing(*args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError(f"{module_name}.{name} is an iRedAPD helper that apd does not provide")

        return missing

    return lookup


def legacy_modules(settings: Any) -> dict[str, ModuleType]:
    trusted = TrustedClients(settings.MYNETWORKS, settings.ENABLE_ALL_WILDCARD_IP)
    delimiters = tuple(settings.RECIPIENT_DELIMITERS)

    def strip_mail_ext_address(mail: str, delimiters: Any = delimiters) -> str:
        return address.strip_extension(mail, tuple(delimiters))

    def wildcard_ipv4(ip: str) -> list[str]:
        return address.wildcard_ipv4(ip, settings.ENABLE_ALL_WILDCARD_IP)

    logger = _module("libs.logger", logger=logging.getLogger("apd.custom"))
    utils = _module(
        "libs.utils",
        is_email=address.is_email,
        is_domain=address.is_domain,
        is_tld_domain=address.is_tld_domain,
        is_ipv4=address.is_ipv4,
        is_strict_ip=address.is_strict_ip,
        is_cidr_network=address.is_cidr_network,
        is_wildcard_ipv4=address.is_wildcard_ipv4,
        is_valid_amavisd_address=lambda value: address.classify(value) or False,
        strip_mail_ext_address=strip_mail_ext_address,
        get_policy_addresses_from_email=address.policy_addresses,
        wildcard_ipv4=wildcard_ipv4,
        is_trusted_client=lambda client_address: client_address in trusted,
    )
    stubs = {name: _module(f"libs.{name}") for name in ("wblist", "greylisting", "ldaplib", "sql", "dnsspf")}
    libs = _module("libs", package=True, SMTP_ACTIONS=dict(SMTP_ACTIONS), logger=logger, utils=utils, **stubs)
    return {
        "libs": libs,
        "libs.logger": logger,
        "libs.utils": utils,
        **{f"libs.{name}": stub for name, stub in stubs.items()},
        # a missing setting raises AttributeError, as iRedAPD's settings module does
        "settings": _module("settings", stubs=False, **settings.as_dict()),
    }


@contextmanager
def legacy_imports(settings: Any) -> Iterator[None]:
    """Make ``libs``, ``libs.logger``, ``libs.utils`` and ``settings`` importable for the block."""
    modules = legacy_modules(settings)
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
