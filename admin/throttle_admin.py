"""``apd-throttle-admin``: manage throttle settings and see the live counters.

iRedAPD has no such tool (admins write SQL by hand, or use iRedAdmin-Pro). The rows written are
the ones iRedAdmin writes: ``priority`` from the account's type (schemas.md §1.1; a CIDR
network ranks as the table's ``cidr``, 70, as the throttle check ranks it), -1 for the limits
not given. ``--show`` runs the check's own rule claiming (apd/throttle/rules.py) on the stored
rows, so it names the row that sets each limit for a user or client, with its live counter.

Invalid input prints what is wrong on stderr, writes nothing and exits 2; a failed operation
exits 1.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, NoReturn, Sequence

from admin.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    add_config_option,
    load_settings,
    run_on_store,
    undecodable_argument,
)
from apd.address import classify_strict, domain_of, is_email, is_ipv4, is_strict_ip, wildcard_ipv4
from apd.store.counters import TrackingRow
from apd.store.throttle_settings import LIMITS, ThrottleSettings
from apd.throttle.rules import (
    COUNTED,
    Claim,
    Setting,
    SettingError,
    account_type,
    candidates,
    claim,
    counters,
    current,
    expired,
    matching,
    ordered,
    specificity,
    tracking_key,
)

USAGE = """\
Usage: apd-throttle-admin [-c FILE] <action> [options]

Actions (give one):
    --add       Add the setting of --account and --kind, or change the values given of an
                existing one. A new setting needs --period and at least one limit.
    --delete    Delete the setting of --account and --kind, and its counters.
    --list      Show the settings (only those of --account and/or --kind when given).
    --show ADDRESS
                Show which setting sets each limit for a sender or recipient (an email
                address) or a client (an IP address), with its live counter: used / limit,
                bytes, when its window resets. --client IP adds the settings of a client
                to those of an email address; --kind shows one kind only.

Options:
    --account ACCOUNT   user@domain.com, @domain.com, @.domain.com (and its subdomains),
                        @.com (a top-level domain), @. (everyone), an IP address, a network
                        (192.0.2.0/24, counted together), a wildcard IPv4 address (192.0.2.*,
                        counted together) or @ip (every client, counted per IP address).
    --kind KIND         outbound (authenticated or local senders), external (other senders)
                        or inbound (recipients).
    --period SECONDS    The counting window of --max-msgs and --max-quota (1 or more).
    --msg-size N        Bytes of one message.
    --max-rcpts N       Recipients of one message.
    --max-msgs N        Recipients of all messages in a period.
    --max-quota N       Bytes of all messages in a period.
                        Limit values: N > 0, 0 (unlimited), -1 (inherit: a setting of lower
                        priority decides). Limits not given stay as they are (new: -1).
    -c FILE             apd settings file (default: $APD_SETTINGS, /etc/apd/settings.py).

Examples:
    apd-throttle-admin --add --account @. --kind outbound --period 3600 --max-msgs 500
    apd-throttle-admin --add --account user@example.com --kind outbound --period 60 --max-msgs 10
    apd-throttle-admin --add --account 192.0.2.0/24 --kind external --period 3600 --max-quota 104857600
    apd-throttle-admin --delete --account user@example.com --kind outbound
    apd-throttle-admin --list --kind outbound
    apd-throttle-admin --show user@example.com
"""

KINDS = ("outbound", "external", "inbound")
ACTIONS = ("add", "delete", "list", "show")
VALUE_OPTIONS = {"period": "--period", **{limit: "--" + limit.replace("_", "-") for limit in LIMITS}}
# Account types a throttle setting may name: the throttle check's candidates (rules.candidates).
ACCOUNT_TYPES = frozenset(
    {"email", "domain", "subdomain", "top_level_domain", "catchall", "catchall_ip", "ip", "cidr_network", "wildcard_ip"}
)
FORMS = (
    "user@domain.com, @domain.com, @.domain.com, @.com, @., an IP address, a network (192.0.2.0/24), "
    "a wildcard IPv4 address (192.0.2.*) or @ip"
)
MAX_PERIOD = 4294967295  # INT UNSIGNED on MySQL
MAX_LIMIT = 2**63 - 1  # BIGINT
_INTEGER = re.compile(r"-?[0-9]+\Z")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # our wording and exit code, not argparse's usage dump
        raise UsageError(f"{message} (see --help)")


@dataclass(frozen=True)
class Command:
    action: str
    account: str | None = None  # normalised; for --show the email address ('' for a client alone)
    kind: str | None = None
    values: Mapping[str, int] = field(default_factory=dict)  # --period and the limits given
    client: str = ""  # --show: the client IP ('' when none)
    config: str | None = None


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="apd-throttle-admin", usage=USAGE, add_help=False, allow_abbrev=False)
    p.add_argument("-h", "--help", action="store_true")
    add_config_option(p)
    for action in ("add", "delete", "list"):
        p.add_argument("--" + action, action="store_true")
    p.add_argument("--show", metavar="ADDRESS")
    p.add_argument("--account")
    p.add_argument("--kind")
    p.add_argument("--client")
    for name, option in VALUE_OPTIONS.items():
        p.add_argument(option, dest=name)
    return p


# --- validation (pure)


def parse(argv: Sequence[str]) -> Command:
    args = parser().parse_args(argv)
    chosen = [a for a in ACTIONS if (getattr(args, a) if a != "show" else args.show is not None)]
    if not chosen:
        raise UsageError("No action: give one of --add, --delete, --list or --show ADDRESS (see --help)")
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join('--' + a for a in chosen)} conflict: give only one action")
    action = chosen[0]
    values = {name: value_of(name, getattr(args, name)) for name in VALUE_OPTIONS if getattr(args, name) is not None}
    if values and action != "add":
        raise UsageError(f"{', '.join(VALUE_OPTIONS[n] for n in values)}: only --add takes values")
    if args.client is not None and action != "show":
        raise UsageError("--client goes with --show only")
    kind = kind_of(args.kind) if args.kind is not None else None
    if action == "show":
        if args.account is not None:
            raise UsageError("--show takes the address itself: --show user@example.com (not --account)")
        user, client = show_target(args.show, args.client)
        return Command(action, user, kind, client=client, config=args.config)
    account = throttle_account(args.account) if args.account is not None else None
    if action in ("add", "delete"):
        if account is None:
            raise UsageError(f"--{action} needs --account ACCOUNT (see --help)")
        if kind is None:
            raise UsageError(f"--{action} needs --kind {', '.join(KINDS[:-1])} or {KINDS[-1]}")
    if action == "add" and not values:
        raise UsageError(f"--add needs a value to set: {', '.join(VALUE_OPTIONS.values())}")
    return Command(action, account, kind, values, config=args.config)


def kind_of(text: str) -> str:
    kind = text.strip().lower()
    if kind not in KINDS:
        raise UsageError(f'invalid --kind "{text}": expected {", ".join(KINDS[:-1])} or {KINDS[-1]}')
    return kind


def value_of(name: str, text: str) -> int:
    option = VALUE_OPTIONS[name]
    number = int(text) if _INTEGER.match(text.strip()) else None
    if name == "period":
        if number is None or not 1 <= number <= MAX_PERIOD:
            raise UsageError(f'invalid {option} "{text}": expected seconds, 1 to {MAX_PERIOD}')
    elif number is None or not -1 <= number <= MAX_LIMIT:
        raise UsageError(
            f'invalid {option} "{text}": expected a number > 0, 0 (unlimited) or -1 (inherit from a lower-priority setting)'
        )
    return number


def throttle_account(text: str) -> str:
    """The account as stored (lowercase; an IP address or network in its canonical form), or
    UsageError saying what is wrong and, where it can, what to write instead."""
    value = text.strip().lower()
    kind = classify_strict(value)  # anchored, every label and octet checked (not the check's prefix match)
    if kind == "ip":
        return str(ipaddress.ip_address(value))
    if kind == "cidr_network":
        return str(ipaddress.ip_network(value))
    if kind == "wildcard_ip":
        return wildcard_account(value)
    if kind in ACCOUNT_TYPES:
        return value
    if kind == "wildcard_addr":
        raise UsageError(f'invalid account "{value}": the throttle check never matches user@*, use {FORMS}')
    if "/" in value:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise UsageError(f'invalid network "{value}": expected a network such as 192.0.2.0/24') from None
        raise UsageError(f'non-null host address bits in "{value}", perhaps you should use "{network}" instead')
    if re.fullmatch(r"[0-9*]+(\.[0-9*]+){3}", value):
        raise UsageError(f'invalid IP address "{value}": each octet is 0-255 or * (192.0.2.*)')
    if value.startswith("@") and not value.startswith("@.") and re.fullmatch(r"@[a-z0-9\-]{2,25}", value):
        raise UsageError(f'invalid account "{value}": perhaps you should use "@.{value[1:]}" (a top-level domain)')
    raise UsageError(f'invalid account "{value}": expected {FORMS}')


def wildcard_account(value: str) -> str:
    """A wildcard IPv4 account the check can match: it is one of the wildcard forms of its own
    addresses (protocol.md §8)."""
    sample = value.replace("*", "1")
    if "*" not in value or not is_ipv4(sample):
        raise UsageError(f'invalid IP address "{value}": expected an IP address or a wildcard such as 192.0.2.*')
    if value not in wildcard_ipv4(sample, all_forms=True):
        raise UsageError(
            f'the throttle check never matches "{value}": a wildcard stands for the last octet (192.0.2.*), '
            "the third (192.0.*.10), or, with ENABLE_ALL_WILDCARD_IP = True, for leading or trailing octets"
        )
    return value


def needs_all_wildcards(account: str) -> bool:
    """A wildcard form the check tries only with ENABLE_ALL_WILDCARD_IP = True (192.*.*.*)."""
    if account_type(account) != "wildcard_ip":
        return False
    return account not in wildcard_ipv4(account.replace("*", "1"))


def show_target(text: str, client: str | None) -> tuple[str, str]:
    """(user, client) for --show: an email address, optionally with --client, or a client alone."""
    value = text.strip().lower()
    if is_strict_ip(value):
        if client is not None:
            raise UsageError("--client goes with an email address; --show IP already shows that client")
        return "", str(ipaddress.ip_address(value))
    if not is_email(value):
        raise UsageError(
            f'--show takes an email address or an IP address (a sender, recipient or client), got "{text}";'
            " the settings of an account: --list --account ACCOUNT"
        )
    if client is None:
        return value, ""
    if not is_strict_ip(client.strip()):
        raise UsageError(f'invalid --client "{client}": expected an IP address')
    return value, str(ipaddress.ip_address(client.strip()))


# --- output (pure)


def _text(value: int | None) -> str:
    return "NULL" if value is None else str(value)


def describe(setting: Setting) -> str:
    values = ", ".join(f"{name}={_text(getattr(setting, name))}" for name in ("priority", "period", *LIMITS))
    return f"{setting.account} ({setting.kind}): {values}"


def format_list(rows: Sequence[Setting]) -> list[str]:
    if not rows:
        return ["* No throttle settings."]
    width = max(7, *(len(row.account) for row in rows))
    header = ("Account".ljust(width), "Kind".ljust(8), "Priority", "Period", *(f"{n:>10}" for n in LIMITS))
    lines = ["  ".join(header), "-" * len("  ".join(header))]
    for row in rows:
        numbers = (
            f"{_text(row.priority):>8}",
            f"{_text(row.period):>6}",
            *(f"{_text(getattr(row, n)):>10}" for n in LIMITS),
        )
        lines.append("  ".join((row.account.ljust(width), row.kind.ljust(8), *numbers)))
    lines.append("(-1: inherit from a lower-priority setting, 0: unlimited; seconds and bytes)")
    return lines


def window(tracked: TrackingRow | None, period: int, now: int) -> str:
    if tracked is None:
        return "nothing counted yet"
    if expired(tracked.counters(), period, now):
        return "window over, restarts with the next message"
    if not tracked.init_time:
        return "window starts with the next message"
    return f"window resets in {tracked.init_time + period - now} s"


def rule_line(
    c: Claim,
    setting: Setting | None,
    key: str | None,
    tracked: TrackingRow | None,
    now: int,
) -> str:
    """One claimed rule: its limit (and for the counted ones, the use of its window), and the row that set it."""
    who = f"set by {c.account} (id {c.tid}, priority {_text(setting.priority) if setting else '?'})"
    limit = "unlimited" if c.value == 0 else str(c.value)
    if c.rule not in COUNTED:
        unit = "bytes" if c.rule == "msg_size" else "recipients"
        return f"    {c.rule}: {limit} {unit + ' ' if c.value else ''}per message; {who}"
    unit = "recipients" if c.rule == "max_msgs" else "bytes"
    if not key:  # counted per client, and no client given
        return f"    {c.rule}: {limit} {unit} in {c.period} s per client IP address (--client IP shows one); {who}"
    msgs, quota = current(tracked.counters(), c.period, now) if tracked else (0, 0)
    used = msgs if c.rule == "max_msgs" else quota
    return f"    {c.rule}: {used} / {limit} {unit} in {c.period} s, {window(tracked, c.period, now)}; {who}, counted on {key}"


def show_kind(
    kind: str,
    user: str,
    client: str,
    claims: Sequence[Claim],
    settings: Mapping[int, Setting],
    tracked: Mapping[tuple[int, str], TrackingRow],
    now: int,
) -> list[str]:
    whom = f"{user} from {client or 'any client'}" if user else f"client {client}"
    if not claims:
        return [f"* {kind}, {whom}: no throttle setting applies."]
    lines = [f"* {kind}, {whom}:"]
    for c in claims:
        key = tracking_key(c.account, user, client) if c.rule in COUNTED else None
        row = tracked.get((c.tid, key.lower())) if key else None
        lines.append(rule_line(c, settings.get(c.tid), key, row, now))
    return lines


# --- actions (I/O)


def show(command: Command, store: Any, settings: Any, now: int) -> list[str]:
    user, client = command.account or "", command.client
    alias = store.accounts.alias_target(domain_of(user)) if user else None
    accounts = candidates(user, client, alias, settings.ENABLE_ALL_WILDCARD_IP)
    kinds = [command.kind] if command.kind else list(KINDS)
    rows = store.throttle.matching(kinds, accounts)
    by_id = {row.id: row for row in rows}
    lines: list[str] = []
    for kind in kinds:
        try:
            claims = claim(ordered(matching(rows, kind, accounts)))
        except SettingError as exc:
            lines.append(f"* {kind}: the throttle check skips this kind for it: {exc}")
            continue
        keys = [(k.tid, k.key) for k in counters(claims, user, client) if k.key]
        # lowercased both ways: MySQL finds 'User@x' for 'user@x'
        tracked = {(row.tid, row.account.lower()): row for row in store.throttle_counters.rows(keys)}
        lines += show_kind(kind, user, client, claims, by_id, tracked, now)
    return lines


def run(command: Command, store: Any, settings: Any, now: int) -> int:
    repo = ThrottleSettings(store.iredapd)
    account, kind = command.account, command.kind
    if command.action == "add":
        assert account is not None and kind is not None
        if not repo.get(account, kind):
            if "period" not in command.values:
                print(
                    f"<<< ERROR >>> A new setting needs --period SECONDS: {account} ({kind}) has none", file=sys.stderr
                )
                return EXIT_USAGE
            if not set(LIMITS) & set(command.values):
                print(
                    f"<<< ERROR >>> A new setting needs a limit: {', '.join(VALUE_OPTIONS[n] for n in LIMITS)}",
                    file=sys.stderr,
                )
                return EXIT_USAGE
        saved = repo.save(account, kind, specificity(account), command.values)
        print(f"* {'Add' if saved.created else 'Update'} throttle setting: {describe(saved.setting)}")
        if needs_all_wildcards(account) and not settings.ENABLE_ALL_WILDCARD_IP:
            print(f"* Note: the check tries {account} only with ENABLE_ALL_WILDCARD_IP = True", file=sys.stderr)
        if not saved.setting.period:
            print("* Note: its period is 0, so the check ignores it: set --period", file=sys.stderr)
    elif command.action == "delete":
        assert account is not None and kind is not None
        deleted, counted = repo.delete(account, kind)
        if not deleted:
            print(f"<<< ERROR >>> No throttle setting: {account} ({kind})", file=sys.stderr)
            return EXIT_ERROR
        print(f"* Delete throttle setting: {account} ({kind}), and {counted} counter(s)")
    elif command.action == "list":
        for line in format_list(repo.select(account, kind)):
            print(line)
    else:
        for line in show(command, store, settings, now):
            print(line)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except BrokenPipeError:  # `--list | head`: the reader is gone, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return EXIT_OK
    undecodable = undecodable_argument(argv)
    if undecodable is not None:
        print(f"<<< ERROR >>> Argument is not valid UTF-8: {undecodable}", file=sys.stderr)
        return EXIT_USAGE
    try:
        command = parse(argv)
    except UsageError as exc:
        print(f"<<< ERROR >>> {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings(command.config)
    return run_on_store(settings, lambda store: run(command, store, settings, int(time.time())))


if __name__ == "__main__":
    sys.exit(main())
