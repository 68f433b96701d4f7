"""What a worker needs from the disk once root is dropped: its modules imported beforehand, and
a warning naming each file the account will still have to read but cannot.

Workers import lazily: the store modules (``open_store``), the checks' helpers (``apd.spf``),
the database drivers, dnspython's record types (parsed as answers arrive). After the drop to
``run_as_user`` the files of a clone or venv inside a private folder (root's home, mode 0700)
are out of reach: every worker died with ``ModuleNotFoundError`` and apd halted. Imported while
still root, the modules stay in memory and every forked worker has them.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import pwd
from dataclasses import dataclass
from typing import Any, Iterator

from apd.privileges import ask_as, group_name, why_unreadable

# Packages imported whole: apd's own modules and the drivers (which import parts of themselves
# lazily), and every DNS record type (dnspython imports one when an answer holds it, and falls
# back to a generic record, unusable to apd.spf, when that import fails).
PACKAGES = ("apd", "MySQLdb", "pymysql", "psycopg2", "ldap", "dns.rdtypes")
MODULES = ("dns.resolver", "dns.nameserver", "dns.rdatatype", "dns.exception", "radix")
NOT_IMPORTED = frozenset({"apd.__main__"})  # importing it runs apd


def preload_modules() -> list[str]:
    """Import every module a worker may import later. Returns what could not be imported (an
    optional driver that is not installed; ``check_drivers`` refuses a backend missing its own)."""
    failed: list[str] = []
    for name in module_names(failed):
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or an optional part failing its own import
            failed.append(f"{name}: {exc}")
    return failed


def module_names(failed: list[str]) -> Iterator[str]:
    yield from MODULES
    for package_name in PACKAGES:
        try:
            package = importlib.import_module(package_name)
        except Exception as exc:
            failed.append(f"{package_name}: {exc}")
            continue
        prefix = package_name + "."
        for info in pkgutil.walk_packages(package.__path__, prefix, onerror=lambda name: failed.append(name)):
            if info.name not in NOT_IMPORTED:
                yield info.name


@dataclass(frozen=True)
class NeededLater:
    path: str
    what: str  # why the account reads it after the drop


def needed_later(settings: Any, settings_path: str | None) -> list[NeededLater]:
    """The files and folders the account reads after the drop: the settings file and the custom
    checks (both re-read on reload), and Python's standard library (imported from as needed)."""
    needed = []
    if settings_path:
        needed.append(NeededLater(os.path.abspath(settings_path), "the settings file, re-read on reload (SIGHUP)"))
    folder = settings.CUSTOM_CHECKS_DIR
    if folder:
        needed.append(NeededLater(os.path.abspath(folder), "CUSTOM_CHECKS_DIR, re-read on reload (SIGHUP)"))
        for name in settings.plugins:
            if name.startswith("custom_"):
                path = os.path.abspath(os.path.join(folder, name + ".py"))
                needed.append(NeededLater(path, f"custom check {name}, re-read on reload (SIGHUP)"))
    needed.append(NeededLater(os.path.dirname(os.__file__), "Python's standard library, imported from at run time"))
    return needed


def unreadable_warnings(user: pwd.struct_passwd, needed: list[NeededLater]) -> list[str]:
    """A warning for each path ``user`` cannot read, with the fix; asked of the account itself."""

    def question() -> str:
        return "\n".join("\t".join(why_unreadable(item.path)) for item in needed)

    warnings = []
    for item, line in zip(needed, ask_as(user, question).split("\n")):
        blocker, detail = (line.split("\t", 1) + [""])[:2]
        if blocker:
            warnings.append(unreadable_warning(user.pw_name, group_name(user.pw_gid), item, blocker, detail))
    return warnings


def unreadable_warning(account: str, group: str, item: NeededLater, blocker: str, detail: str) -> str:
    """Pure: the text of one warning. ``blocker`` is the folder or file that stops the account."""
    if blocker != item.path:
        fix = f"make {blocker} enterable by {account} (chmod o+x {blocker}), or move {item.path} out of it"
    elif os.path.basename(item.path).endswith(".py") or item.what.startswith("the settings"):
        fix = f"make it readable by {account} (chgrp {group} {item.path} && chmod g+r {item.path})"
    else:
        fix = f"make the folder readable by {account} (chmod o+rx {item.path})"
    if item.what.startswith("Python's"):
        fix += "; or run apd on a Python outside private folders (/usr/bin/python3: make clean && make run)"
    return f"run_as_user {account} cannot read {item.what}: {item.path} ({detail}); {fix}"
