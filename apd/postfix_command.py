"""``apd --check-postfix [MAIN_CF [MASTER_CF]]``: read Postfix's configuration, print the findings.

Without files it asks the installed Postfix (``postconf -n``, ``postconf -M``). MASTER_CF defaults to the
master.cf beside MAIN_CF when there is one. Exit 0: no finding; 1: findings; 2: nothing to read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any, TextIO

from apd.log_escape import escape_controls
from apd.postfix_check import apd_facts, check_postfix
from apd.postfix_conf import PostfixConfError, Service, parse_main_cf, parse_master_cf

MAX_FILE_BYTES = 16 * 1024 * 1024  # far above any real main.cf; a mistaken path to a huge file stops here
POSTCONF_TIMEOUT = 30.0
EX_FINDINGS = 1
EX_UNREADABLE = 2


class Unreadable(Exception):
    """A file or postconf that gave no configuration; the message says which and why."""


def read_text(path: str) -> str:
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise Unreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise Unreadable(f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: not a Postfix configuration")
    return data.decode("utf-8", errors="replace")


def run_postconf(option: str) -> str:
    postconf = shutil.which("postconf") or shutil.which("postconf", path="/usr/sbin:/sbin")
    if postconf is None:
        raise Unreadable("postconf not found (Postfix not installed?): give MAIN_CF [MASTER_CF]")
    try:
        done = subprocess.run([postconf, option], capture_output=True, text=True, timeout=POSTCONF_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unreadable(f"postconf {option} failed: {exc}") from None
    if done.returncode != 0:
        raise Unreadable(f"postconf {option} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def load(files: list[str]) -> tuple[dict[str, str], list[Service]]:
    if not files:
        return parse_main_cf(run_postconf("-n"), "postconf -n"), parse_master_cf(run_postconf("-M"), "postconf -M")
    main_path = files[0]
    master_path = files[1] if len(files) > 1 else None
    if master_path is None and main_path != "-":
        beside = os.path.join(os.path.dirname(main_path), "master.cf")
        master_path = beside if os.path.isfile(beside) else None
    main = parse_main_cf(read_text(main_path), main_path)
    services = parse_master_cf(read_text(master_path), master_path) if master_path else []
    return main, services


def run(files: list[str], settings: Any, planned: list[Any], out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if len(files) > 2:
        print("apd: --check-postfix takes at most MAIN_CF and MASTER_CF", file=sys.stderr)
        return EX_UNREADABLE
    try:
        main, services = load(files)
    except (Unreadable, PostfixConfError) as exc:
        print(f"apd: {escape_controls(str(exc))}", file=sys.stderr)
        return EX_UNREADABLE
    found = check_postfix(main, services, apd_facts(settings, planned))
    for finding in found:
        print(escape_controls(finding.line()), file=out)
    if not found:
        print("apd: Postfix is wired to apd with no finding", file=out)
    return EX_FINDINGS if found else 0
