"""``apd explain``: the command line (exit 0: explained; 2: bad input; 78: bad settings)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence, TextIO

from apd import settings as settings_module
from apd.explain.render import as_json, as_text
from apd.explain.request import (
    FLAGS,
    RequestError,
    flag_attributes,
    flag_of,
    from_attribute_lines,
    from_flags,
    from_log_line,
)
from apd.log_escape import escape_controls

EXIT_OK, EXIT_INPUT = 0, 2
FLAG_HELP = {
    "state": "protocol_state: RCPT (default), END-OF-MESSAGE, ...",
    "helo": "helo_name",
    "sasl_username": "sasl_username: the client logged in as this user",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="apd explain",
        description="Run the configured checks on one request without side effects and show why apd answers "
        "as it does. The request comes from flags, from --from-log, or as name=value lines on stdin.",
        epilog="Exit codes: 0 explained (a database down is said in the output), 2 the request cannot be read, "
        "78 bad settings, 1 the store cannot be opened.",
    )
    p.add_argument(
        "-c", "--config", metavar="FILE", help="settings file (default: $APD_SETTINGS, /etc/apd/settings.py)"
    )
    for flag, attribute in FLAGS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, metavar="VALUE", help=FLAG_HELP.get(flag, attribute))
    p.add_argument(
        "--from-log", metavar="LINE", help="an smtpd log line (NOQUEUE: reject: RCPT from ...); - reads it from stdin"
    )
    p.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of text")
    p.add_argument("--sql", action="store_true", help="text: also each check's SQL statements and the rows they got")
    p.add_argument("--now", type=float, metavar="EPOCH", help=argparse.SUPPRESS)  # reproducible output in tests
    return p


def read_request(args: argparse.Namespace, stdin: TextIO) -> tuple[dict[str, str], str]:
    """(attributes, what to say about where they came from: what Postfix logged, what the log
    line did not give, or '')."""
    flags = {name: getattr(args, name) for name in FLAGS}
    if args.from_log is not None:
        line = stdin.readline() if args.from_log == "-" else args.from_log
        attrs, logged, missing = from_log_line(line)
        given = flag_attributes(flags)  # flags complete the line (e.g. --sasl-username)
        attrs.update(given)
        return attrs, log_note(logged, [name for name in missing if name not in given])
    if any(value is not None for value in flags.values()):
        return from_flags(flags), ""
    if stdin.isatty():
        raise RequestError("no request: give flags (--sender ...), --from-log LINE, or name=value lines on stdin")
    return from_attribute_lines(stdin), ""


def log_note(logged: str, missing: list[str]) -> str:
    note = f"Postfix logged: {logged}"
    if missing:
        note += (
            f"; not in the log line, taken as empty or 0: {', '.join(missing)}"
            f" (give {', '.join(flag_of(name) for name in missing)} to set them)"
        )
    return note


def main(argv: Sequence[str], stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    args = parser().parse_args(list(argv))
    try:
        attrs, logged = read_request(args, stdin)
    except (RequestError, UnicodeDecodeError) as exc:
        print(f"apd explain: {escape_controls(str(exc))}", file=sys.stderr)
        return EXIT_INPUT
    try:
        from apd.store import resolve_paths

        settings = resolve_paths(settings_module.load(settings_module.settings_path(args.config)))
    except settings_module.ConfigError as exc:
        for problem in exc.problems:
            print(f"apd explain: {problem}", file=sys.stderr)
        return settings_module.EX_CONFIG
    from apd.errors import StoreError
    from apd.explain.runner import explain
    from apd.store import open_store
    from apd.store.servers import check_drivers

    try:
        check_drivers(settings)  # a missing driver is said with what to install, as at start-up
        store = open_store(settings)
    except StoreError as exc:
        print(f"apd explain: {escape_controls(str(exc))}", file=sys.stderr)
        return 1
    try:
        explanation = explain(settings, store, attrs, args.now)
    finally:
        store.close()
    if logged:
        explanation.note = (explanation.note + "; " if explanation.note else "") + escape_controls(logged)
    stdout.write(as_json(explanation) + "\n" if args.json else as_text(explanation, args.sql))
    return EXIT_OK
