"""What every admin CLI shares: the settings file, the store, messages and exit codes.

Each tool: ``args = parse(...)``; ``store = open_tool_store(args.config)``; do the work through
repository methods; print results to stdout, errors to stderr; return an exit code.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, NoReturn, Sequence

from apd import settings as settings_module
from apd.errors import StoreError
from apd.store import Store, open_store, resolve_paths

EXIT_OK = 0
EXIT_ERROR = 1  # invalid input or a failed operation
EXIT_USAGE = 2


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="apd settings file (default: $APD_SETTINGS, /etc/apd/settings.py)"
    )


def undecodable_argument(argv: Sequence[str]) -> str | None:
    """The first argument that is not valid UTF-8, shown with its bytes escaped (``caf\\xe9``),
    or None. Python hands such bytes over as lone surrogates, which no database, terminal or
    encoder accepts: a tool refuses the call instead of failing half-way with a traceback."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            try:
                raw = arg.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:  # a surrogate not made by surrogateescape
                raw = arg.encode("utf-8", "backslashreplace")
            return raw.decode("ascii", "backslashreplace")
    return None


def load_settings(config: str | None) -> Any:
    try:
        return resolve_paths(settings_module.load(settings_module.settings_path(config)))
    except settings_module.ConfigError as exc:
        for problem in exc.problems:
            print(f"<<< ERROR >>> {problem}", file=sys.stderr)
        sys.exit(settings_module.EX_CONFIG)


def open_tool_store(settings: Any) -> Store:
    """Open the store; for the embedded SQLite store, create the tables if this is the first use."""
    store = open_store(settings)
    if settings.backend == "sqlite":
        from apd.store import sqlite

        try:
            sqlite.initialise(store.iredapd)
        except StoreError as exc:
            fail(f"cannot open the SQLite database: {exc}")
    return store


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    print(message, file=sys.stderr)
    sys.exit(code)


def run_on_store(settings: Any, work: Callable[[Store], int | None]) -> int:
    """Open the tool's store, run ``work`` on it and close it; a database error is printed as
    ``<<< ERROR >>> ...`` and exits 1. ``work`` returns its exit code (None: 0)."""
    store = open_tool_store(settings)
    try:
        code = work(store)
    except StoreError as exc:
        print(f"<<< ERROR >>> {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.close()
    return EXIT_OK if code is None else code
