"""The Cluebringer (policyd v2) database the migration tools read (admin-tools.md §6).

Where it is comes from flags, else from the settings file's ``cluebringer_db_*`` names (the
constants iRedAPD's scripts asked admins to edit), else the defaults below; the password from
``--password``, ``--password-file``, ``$CLUEBRINGER_DB_PASSWORD`` or ``cluebringer_db_password``
(the flag is for a one-off run: ``ps`` shows it). The dialect is iRedAPD's: PostgreSQL with
backend ``pgsql``, MySQL otherwise, unless ``--dialect`` (``--backend``) says. Only SELECTs are
sent there.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from admin.common import EXIT_ERROR, EXIT_USAGE, add_config_option, load_settings, run_on_store
from apd.errors import StoreError
from apd.store.base import Database
from apd.store.servers import label, make_dialect

INCOMPLETE = "Incorrect database info, please update cluebringer_db_* parameters."
PASSWORD_ENV = "CLUEBRINGER_DB_PASSWORD"
DEFAULT_PORTS = {"mysql": 3306, "pgsql": 5432}


@dataclass(frozen=True)
class Source:
    dialect: str
    host: str
    port: int
    name: str
    user: str
    password: str

    def complete(self) -> bool:
        return all((self.dialect, self.host, self.port, self.name, self.user, self.password))


class SourceError(Exception):
    pass


def add_source_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Cluebringer database (default: cluebringer_db_* in the settings file)")
    group.add_argument(
        "--dialect", "--backend", choices=sorted(DEFAULT_PORTS), help="mysql or pgsql (default: as apd's backend)"
    )
    group.add_argument("--host", help="server address (default 127.0.0.1)")
    group.add_argument("--port", type=int, help="server port (default 3306, or 5432 for pgsql)")
    group.add_argument("--database", help="database name (default cluebringer)")
    group.add_argument("--user", help="user name (default cluebringer)")
    group.add_argument("--password", help=f"the password (visible in ps: prefer --password-file or ${PASSWORD_ENV})")
    group.add_argument("--password-file", metavar="FILE", help="read the password from the first line of FILE")


def chosen(flag: str | None, setting: Any, default: str) -> str:
    """The flag, else the setting, else the default; one given empty stays empty, so that it is
    reported as incomplete (as iRedAPD's empty constant was) instead of quietly replaced."""
    if flag is not None:
        return flag
    return default if setting is None else str(setting)


def source_from(args: argparse.Namespace, settings: Any, environ: dict[str, str] | None = None) -> Source:
    """The Cluebringer database named by flags, environment and settings, in that order."""
    environ = os.environ if environ is None else environ
    dialect = (
        args.dialect or settings.get("cluebringer_db_dialect") or ("pgsql" if settings.backend == "pgsql" else "mysql")
    )
    if dialect not in DEFAULT_PORTS:
        raise SourceError(f"cluebringer_db_dialect must be mysql or pgsql, not {dialect!r}")
    password = args.password or environ.get(PASSWORD_ENV, "")
    if args.password_file and not args.password:
        try:
            with open(args.password_file, encoding="utf-8") as handle:
                password = handle.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read the password file {args.password_file}: {exc}") from None
    port = args.port if args.port is not None else settings.get("cluebringer_db_port") or DEFAULT_PORTS[dialect]
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise SourceError(f"cluebringer_db_port must be a number, not {port!r}") from None
    if not 0 < port < 65536:
        raise SourceError(f"the Cluebringer database port must be 1-65535, not {port}")
    return Source(
        dialect=dialect,
        host=chosen(args.host, settings.get("cluebringer_db_host"), "127.0.0.1"),
        port=port,
        name=chosen(args.database, settings.get("cluebringer_db_name"), "cluebringer"),
        user=chosen(args.user, settings.get("cluebringer_db_user"), "cluebringer"),
        password=str(password or settings.get("cluebringer_db_password") or ""),
    )


def open_source(source: Source, timeout: float) -> Database:
    params = {
        "host": source.host,
        "port": source.port,
        "user": source.user,
        "password": source.password,
        "database": source.name,
        "use_ssl": False,
    }
    return Database(label("cluebringer", source.dialect, params), make_dialect(source.dialect, params, timeout))


def run_migration(
    prog: str, description: str, argv: Sequence[str] | None, work: Callable[[Database, Any], None]
) -> int:
    """The frame of a migration: parse, find both databases, run ``work(cluebringer, store)``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_config_option(parser)
    add_source_options(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    settings = load_settings(args.config)
    try:
        source = source_from(args, settings)
    except SourceError as exc:
        print(f"<<< ERROR >>> {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not source.complete():
        print(INCOMPLETE, file=sys.stderr)
        return EXIT_USAGE
    try:
        source_db = open_source(source, settings.SQL_QUERY_TIMEOUT)
    except StoreError as exc:  # its driver is missing
        print(f"<<< ERROR >>> {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return run_on_store(settings, lambda store: work(source_db, store))
    finally:
        source_db.close()
