"""``apd-greylisting-admin``: manage greylisting settings and whitelists (admin-tools.md §2).

Flags, messages and the rows written are iRedAPD's ``greylisting_admin.py``, with these fixes:

* a CIDR sender (``--from 192.0.2.0/24``) is stored with ``sender_priority = 70`` (the priority
  table's ``cidr``), so the setting takes effect (DIFFERENCES.md 7; iRedAPD stores 0);
* ``--remove-whitelist-domain`` also drops the domain's SPF-derived rows from
  ``greylisting_whitelist_domain_spf`` (DIFFERENCES.md 8);
* ``--from`` and ``--to`` pass the anchored tests of apd.address.classify_strict, ``--to`` must be
  a local account (iRedAPD only asks ``--to`` for an '@', so ``x@`` or ``a b@c d`` were stored);
  an argument that is not UTF-8 is refused.

Invalid input prints what is wrong on stderr, writes nothing and exits non-zero.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass
from typing import Iterable, Sequence

from admin.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, load_settings, open_tool_store, undecodable_argument
from apd.address import ACCOUNT_PRIORITIES, classify_strict, is_local_account, is_valid_domain
from apd.errors import StoreError
from apd.store.greylisting import SettingRow

USAGE = """\
Usage: apd-greylisting-admin [-c FILE] <action> [--from SENDER] [--to ACCOUNT]

Actions (the first one given is used):
    --enable                    Enable greylisting for mail from SENDER to ACCOUNT.
    --disable                   Disable greylisting for mail from SENDER to ACCOUNT.
    --delete                    Delete the setting of SENDER -> ACCOUNT.
    --list                      Show settings (with --to: only those of ACCOUNT).
    --whitelist-domain          Whitelist the sender domain of --from '@domain.com': its SPF/MX
                                servers are stored by apd-spf-to-greylist-whitelists.
    --remove-whitelist-domain   Remove that domain and the addresses derived from it.
    --list-whitelist-domains    Show whitelisted sender domains.
    --list-whitelists           Show whitelisted senders (with --to: only those of ACCOUNT).
    --add-whitelist             Never greylist mail from SENDER to ACCOUNT.

    --from SENDER   user@domain.com, @domain.com, @.domain.com, @. (anyone; the default),
                    an IPv4/IPv6 address or network (192.0.2.0/24).
    --to ACCOUNT    Local account: user@domain.com, @domain.com, @.domain.com, @. (everyone;
                    the default).
    -c FILE         apd settings file (default: $APD_SETTINGS, /etc/apd/settings.py).

Examples:
    apd-greylisting-admin --enable --to @example.com
    apd-greylisting-admin --disable --from @gmail.com --to user@example.com
    apd-greylisting-admin --disable --from 192.0.2.0/24
    apd-greylisting-admin --list
"""

ACTIONS = (
    "--enable",
    "--disable",
    "--delete",
    "--list",
    "--whitelist-domain",
    "--remove-whitelist-domain",
    "--list-whitelist-domains",
    "--list-whitelists",
    "--add-whitelist",
)
VALUE_OPTIONS = ("--from", "--to", "-c", "--config")
SENDER_TYPES = ("catchall", "top_level_domain", "domain", "subdomain", "email")
# The greylisting priority table; 'cidr_network' is iRedAPD's type name for the 'cidr' row.
PRIORITIES = {**ACCOUNT_PRIORITIES, "cidr_network": ACCOUNT_PRIORITIES["cidr"]}
ANYONE = "@."


class UsageError(Exception):
    pass


@dataclass(frozen=True)
class Command:
    action: str
    sender: str
    recipient: str
    recipient_given: bool
    config: str | None


def parse(argv: Sequence[str]) -> Command:
    """iRedAPD's scan: the first action flag present wins; --from/--to take the next argument."""
    undecodable = undecodable_argument(argv)
    if undecodable is not None:
        raise UsageError(f"<<< ERROR >>> Argument is not valid UTF-8: {undecodable}")
    values: dict[str, str] = {}
    flags: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in VALUE_OPTIONS:
            if i + 1 >= len(args):
                raise UsageError(f"<<< ERROR >>> {arg} needs a value, e.g. {arg} {_example(arg)}")
            values["-c" if arg == "--config" else arg] = args[i + 1]
            i += 2
            continue
        if arg not in ACTIONS:
            raise UsageError(f"<<< ERROR >>> Unknown argument: {arg} (see --help)")
        flags.append(arg)
        i += 1
    action = next((a for a in ACTIONS if a in flags), None)
    if action is None:
        raise UsageError("<<< ERROR >>> No valid operation specified. Exit.")
    sender = values.get("--from", ANYONE)
    recipient = values.get("--to", ANYONE)
    validate_sender(sender)
    if not is_local_account(recipient):  # iRedAPD only asks for an '@': 'x@', '@@' passed
        raise UsageError("<<< ERROR >>> Invalid recipient address.")
    return Command(action, sender, recipient, "--to" in values, values.get("-c"))


def validate_sender(sender: str) -> None:
    """``is_valid_sender``: an IP or network, or a catch-all, TLD, domain, subdomain or email."""
    if is_ip_or_network(sender):
        return
    loose = _loose_network(sender)
    if loose is not None:
        raise UsageError(
            f"<<< ERROR >>> Invalid sender address: {sender} has host bits set, perhaps you should use {loose}"
        )
    if classify_strict(sender) not in SENDER_TYPES:
        raise UsageError("<<< ERROR >>> Invalid sender address.")


def is_ip_or_network(value: str) -> bool:
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=True)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _loose_network(value: str) -> str | None:
    """The network a CIDR with host bits set stands for, e.g. 192.0.2.1/24 -> 192.0.2.0/24."""
    if "/" not in value:
        return None
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return None


def priority(value: str) -> int:
    """The greylisting priority of an account or sender (0 for types not in the table)."""
    kind = classify_strict(value)
    return PRIORITIES.get(kind, 0) if kind else 0


def sender_domain(sender: str) -> str:
    """The domain of ``@domain`` / ``@.domain`` (a leading '.' stays), else ''."""
    if classify_strict(sender) in ("domain", "subdomain"):
        return sender.split("@", 1)[1]
    return ""


def _anyone(value: str) -> str:
    return "@. (anyone)" if value == ANYONE else value


def format_settings(rows: Iterable[SettingRow]) -> list[str]:
    rows = list(rows)
    if not rows:
        return ["* No greylisting settings."]
    lines = ["%-8s %-34s -> %-30s" % ("Status", "Sender", "Local Account"), "-" * 78]
    for row in rows:
        status = "enabled" if row.active else "disabled"
        lines.append("%-8s %-34s -> %-30s" % (status, _anyone(row.sender), _anyone(row.account)))
    return lines


def format_whitelists(rows: Iterable[tuple[str, str, str]]) -> list[str]:
    return [f"{sender} -> {account}, '{comment}'" for sender, account, comment in rows]


def run(command: Command, store) -> int:
    repo = store.greylisting
    sender, recipient = command.sender, command.recipient
    action = command.action
    if action in ("--enable", "--disable"):
        active = action == "--enable"
        print(f"* {'Enable' if active else 'Disable'} greylisting: {sender} -> {recipient}")
        repo.set_setting(recipient, priority(recipient), sender, priority(sender), active)
    elif action == "--delete":
        print(f"* Delete greylisting setting: {sender} -> {recipient}")
        repo.delete_setting(recipient, sender)
    elif action == "--list":
        for line in format_settings(repo.list_settings(recipient if command.recipient_given else None)):
            print(line)
    elif action in ("--whitelist-domain", "--remove-whitelist-domain"):
        domain = sender_domain(sender)
        # iRedAPD prints the action line first, then INVALID_DOMAIN for a bad domain
        if action == "--whitelist-domain":
            print(f"* Whitelisting sender domain: {domain}")
        else:
            print(f"* Remove whitelisted sender domain: {domain}")
        if not is_valid_domain(domain):
            print(
                f"INVALID_DOMAIN: --from must be a sender domain, e.g. --from @example.com (got {sender})",
                file=sys.stderr,
            )
            return EXIT_ERROR
        if action == "--whitelist-domain":
            repo.add_whitelist_domain(domain)  # an existing domain is fine
        else:
            repo.remove_whitelist_domain(domain)
    elif action == "--list-whitelist-domains":
        for domain in repo.whitelist_domains():
            print(domain)
    elif action == "--list-whitelists":
        if command.recipient_given:
            lines = format_whitelists(repo.whitelists(recipient))
        else:
            lines = format_whitelists(repo.whitelists()) + format_whitelists(repo.spf_whitelists())
        for line in lines:
            print(line)
    elif action == "--add-whitelist":
        if not repo.add_whitelist(recipient, sender):
            print(f"<<< ERROR >>> Whitelist exists already: {sender} -> {recipient}", file=sys.stderr)
            return EXIT_ERROR
        print(f"* Add greylisting whitelist: {sender} -> {recipient}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return EXIT_OK
    try:
        command = parse(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings(command.config)
    store = open_tool_store(settings)
    try:
        return run(command, store)
    except BrokenPipeError:  # e.g. `--list | head`: the reader is gone, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except StoreError as exc:
        print(f"<<< ERROR >>> {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.close()


def _example(option: str) -> str:
    return {"--from": "@example.com", "--to": "user@example.com"}.get(option, "/etc/apd/settings.py")


if __name__ == "__main__":
    sys.exit(main())
