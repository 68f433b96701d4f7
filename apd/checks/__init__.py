"""Check registry: names from the ``plugins`` setting -> ordered Check instances.

Order follows iRedAPD: larger priority first, ``PLUGIN_PRIORITIES`` overrides the built-in
table, equal priorities keep their ``plugins`` list order (a stable sort).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any

from apd.checks.base import Check
from apd.settings import ConfigError

log = logging.getLogger(__name__)

BUILTIN_PRIORITIES = {
    "reject_null_sender": 100,
    "reject_to_hostname": 100,
    "wblist_rdns": 99,
    "reject_sender_login_mismatch": 90,
    "greylisting": 80,
    # iRedAPD's keys; they do not match the file names *_force_change_password, which
    # therefore run at priority 0 unless PLUGIN_PRIORITIES names them (protocol.md §3.3).
    "ldap_force_change_password_in_days": 70,
    "sql_force_change_password_in_days": 70,
    "throttle": 60,
    "sql_ml_access_policy": 51,
    "ldap_maillist_access_policy": 50,
    "sql_alias_access_policy": 50,
    "amavisd_wblist": 40,
    "whitelist_outbound_recipient": 30,
    "senderscore": 10,
}

# iRedAPD's plugin names: each is a module here (tests/unit/test_policy.py holds that true).
IREDAPD_PLUGINS = frozenset(
    {
        "reject_null_sender",
        "reject_to_hostname",
        "wblist_rdns",
        "reject_sender_login_mismatch",
        "greylisting",
        "throttle",
        "sql_ml_access_policy",
        "ldap_maillist_access_policy",
        "sql_alias_access_policy",
        "amavisd_wblist",
        "whitelist_outbound_recipient",
        "senderscore",
        "ldap_force_change_password",
        "sql_force_change_password",
    }
)


@dataclass(frozen=True)
class PlannedCheck:
    name: str
    priority: int
    cls: type


def priorities(settings: Any) -> dict[str, int]:
    table = dict(BUILTIN_PRIORITIES)
    table.update(settings.PLUGIN_PRIORITIES)
    return table


def plan(settings: Any) -> tuple[list[PlannedCheck], list[str]]:
    """Resolve and order the enabled checks; returns (plan, warnings). Raises ConfigError."""
    table = priorities(settings)
    planned: list[PlannedCheck] = []
    warnings: list[str] = []
    problems: list[str] = []
    for name in settings.plugins:
        try:
            cls = _find_class(name, settings)
        except _Missing as exc:
            problems.append(f"{settings.origin('plugins')}: plugins: {exc}")
            continue
        if name.endswith("_force_change_password") and name not in settings.PLUGIN_PRIORITIES:
            warnings.append(f"check {name} runs at priority 0 (iRedAPD's priority key is {name}_in_days)")
        planned.append(PlannedCheck(name, table.get(name, 0), cls))
    if problems:
        raise ConfigError(problems)
    planned.sort(key=lambda p: -p.priority)  # stable: ties keep list order
    return planned, warnings


def instantiate(planned: list[PlannedCheck], settings: Any, store: Any) -> list[Check]:
    checks = []
    for item in planned:
        check = item.cls(settings, store)
        check.priority = item.priority
        if not getattr(check, "name", ""):
            check.name = item.name
        checks.append(check)
    return checks


class _Missing(Exception):
    pass


def _find_class(name: str, settings: Any) -> type:
    if name.startswith("custom_") and settings.CUSTOM_CHECKS_DIR:
        module = _load_custom(name, settings.CUSTOM_CHECKS_DIR, settings)
    else:
        if not name.isidentifier():
            raise _Missing(f"{name!r} is not a check name")
        try:
            module = importlib.import_module(f"apd.checks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"apd.checks.{name}":
                raise
            raise _Missing(f"unknown check {name!r}") from None
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, Check) and obj is not Check and obj.__module__ == module.__name__:
            return obj
    if callable(getattr(module, "restriction", None)):
        return _legacy_plugin_class(name, module)
    raise _Missing(f"module for check {name!r} defines no Check subclass or restriction()")


def _load_custom(name: str, folder: str, settings: Any) -> Any:
    from apd.compat import legacy_imports

    path = os.path.join(folder, name + ".py")
    if not os.path.isfile(path):
        raise _Missing(f"custom check {name!r} not found: {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"apd_custom_{name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        with legacy_imports(settings):  # iRedAPD plugins import libs.* and settings
            spec.loader.exec_module(module)
    except Exception as exc:
        raise _Missing(f"custom check {name!r} failed to load: {exc!r}") from None
    return module


def _legacy_plugin_class(name: str, module: Any) -> type:
    """Wrap an iRedAPD-style plugin module (``restriction(**kwargs)``) as a Check."""
    states = frozenset(s.upper() for s in getattr(module, "SMTP_PROTOCOL_STATE", ["RCPT"]))

    class LegacyPlugin(Check):
        def check(self, request, ctx):
            attrs = request.attrs
            return module.restriction(
                smtp_session_data=dict(attrs),
                conn_vmail=ctx.store.vmail,
                engine_amavisd=ctx.store.amavisd,
                engine_iredapd=ctx.store.iredapd,
                sender=request.sender,
                sender_without_ext=request.sender_without_ext,
                recipient=request.recipient,
                recipient_without_ext=request.recipient_without_ext,
                client_address=request.client_address,
                sender_domain=request.sender_domain,
                recipient_domain=request.recipient_domain,
                sasl_username=request.sasl_username,
                sasl_username_domain=request.sasl_username_domain,
            )

    LegacyPlugin.name = name
    LegacyPlugin.states = states
    LegacyPlugin.__name__ = f"Legacy_{name}"
    return LegacyPlugin
