"""``apd``: run the daemon in the foreground, or check / print / initialise."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys
from typing import Any

from apd import __version__
from apd import checks as check_registry
from apd import settings as settings_module
from apd.decision_log import StderrHandler, SyslogHandler
from apd.store import resolve_paths

log = logging.getLogger("apd")

FACILITIES = logging.handlers.SysLogHandler.facility_names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="apd", description="Postfix SMTP access-policy server (iRedAPD compatible).")
    p.add_argument(
        "-c", "--config", metavar="FILE", help="settings file (default: $APD_SETTINGS, /etc/apd/settings.py)"
    )
    p.add_argument("--check-config", action="store_true", help="validate the settings and the check list, then exit")
    p.add_argument(
        "--check-postfix",
        nargs="*",
        metavar="CF",
        help="judge how Postfix asks apd: [MAIN_CF [MASTER_CF]] (default: postconf -n, postconf -M), then exit",
    )
    p.add_argument("--print-config", action="store_true", help="print every setting with its value, then exit")
    p.add_argument("--print-sample", action="store_true", help="print a documented sample settings file, then exit")
    p.add_argument("--init-db", action="store_true", help="create apd's tables where missing, then exit")
    p.add_argument(
        "--log-to",
        choices=("stderr", "syslog"),
        help="where logs go (default: stderr on a terminal, else syslog)",
    )
    p.add_argument("--foreground", action="store_true", help="accepted for iRedAPD compatibility; apd never forks away")
    p.add_argument("--version", action="version", version=f"apd {__version__}")
    return p


def setup_logging(settings: Any, target: str) -> None:
    """apd's one log handler, for ``target`` ('stderr' or 'syslog'). A reload keeps the handler
    when its destination is unchanged: its connection, and what it knows of a syslog outage
    (reported once, not again by every worker re-reading the settings)."""
    root = logging.getLogger("apd")
    root.setLevel(settings.log_level.upper())
    root.propagate = False
    wanted = log_destination(settings, target)
    if [destination_of(handler) for handler in root.handlers] == [wanted]:
        return
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if wanted is None:
        root.addHandler(StderrHandler())
    else:
        root.addHandler(SyslogHandler(*wanted))


def log_destination(settings: Any, target: str) -> tuple[Any, int] | None:
    """(syslog address, facility), or None for stderr."""
    if target != "syslog":
        return None
    if settings.SYSLOG_SERVER.startswith("/"):
        address: Any = settings.SYSLOG_SERVER
    else:
        address = (settings.SYSLOG_SERVER, settings.SYSLOG_PORT)
    return address, FACILITIES.get(settings.SYSLOG_FACILITY.lower(), FACILITIES["local5"])


def destination_of(handler: logging.Handler) -> tuple[Any, int] | None | str:
    if isinstance(handler, SyslogHandler):
        return handler.address, handler.facility
    return None if type(handler) is StderrHandler else "other"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["explain"]:  # a subcommand: apd explain [-c FILE] ...
        from apd.explain.command import main as explain

        return explain(argv[1:])
    args = parser().parse_args(argv)
    if args.print_sample:
        from apd.sample import render

        sys.stdout.write(render())
        return 0
    path = settings_module.settings_path(args.config)
    try:
        settings = settings_module.load(path)
        settings = resolve_paths(settings)
        planned, plan_warnings = check_registry.plan(settings)
    except settings_module.ConfigError as exc:
        for problem in exc.problems:
            print(f"apd: {problem}", file=sys.stderr)
        return settings_module.EX_CONFIG
    if args.check_postfix is not None:
        from apd.postfix_command import run as check_postfix

        return check_postfix(args.check_postfix, settings, planned)
    if args.check_config:
        for warning in (*settings.warnings, *plan_warnings):
            print(f"apd: warning: {warning}", file=sys.stderr)
        problem, drivers = missing_driver(settings)
        problem = problem or store_problem(settings)
        if problem:
            print(f"apd: error: {problem}", file=sys.stderr)
            return 1
        order = ", ".join(f"{p.name}({p.priority})" for p in planned) or "(none)"
        print(f"apd: settings OK ({settings.source}); checks in order: {order}")
        for driver in drivers:
            print(f"apd: {driver}")
        return 0
    if args.print_config:
        print(settings_module.describe(settings))
        return 0
    target = args.log_to or ("stderr" if sys.stderr.isatty() else "syslog")
    setup_logging(settings, target)
    if args.init_db:
        from apd.errors import StoreError
        from apd.store import init_db

        try:
            for line in init_db(settings):
                print(line)
        except StoreError as exc:
            print(f"apd: --init-db failed: {exc}", file=sys.stderr)
            return 1
        return 0
    from apd.errors import StoreError
    from apd.master import HaltServer, Master

    os.umask(0o077)
    master = Master(settings, path, reconfigure_logging=lambda s: setup_logging(s, target))
    try:
        return master.run()
    except (OSError, StoreError) as exc:  # bind, pid file, SQLite file: before any worker runs
        log.error("cannot start: %s", exc)
        if target != "stderr":
            print(f"apd: cannot start: {exc}", file=sys.stderr)
        return 1
    except HaltServer as exc:
        log.error("cannot start: %s", exc)
        return exc.exit_code


def missing_driver(settings) -> tuple[str | None, list[str]]:
    """What --check-config reports when the backend's Python driver is not installed, else
    the drivers the workers will use."""
    from apd.errors import StoreError
    from apd.store.servers import check_drivers

    try:
        return None, check_drivers(settings)
    except StoreError as exc:
        return str(exc), []


def store_problem(settings: Any) -> str | None:
    """What --check-config reports when the workers could not write the SQLite database: the
    store is prepared as at start (file and tables created, given to run_as_user), then that
    account tries a write, which is rolled back."""
    if settings.backend != "sqlite":
        return None
    from apd.errors import StoreError
    from apd.master import prepare_store

    try:
        prepare_store(settings)
    except (StoreError, OSError) as exc:
        return f"cannot use the SQLite store: {exc}"
    return None
