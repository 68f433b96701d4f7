"""apd-wblist-admin: manage the Amavisd white/blacklists (admin-tools.md §1, iRedAPD's
tools/wblist_admin.py): the same flags, messages and stored rows.

Differences (DIFFERENCES.md 14): every error exits non-zero; each invalid entry is reported
on stderr with what is wrong and the right form, and skipped while the valid entries are
stored (exit 1 then, as something was wrong); conflicting flags, or an --add/--delete with no
valid entry, exit non-zero before anything is written. Accounts and entries pass anchored tests
with each octet checked (apd.address.classify_strict): iRedAPD took `999.1.1.1` for a wildcard IP
and `@.bad_domain!` for a top-level domain; an argument that is not UTF-8 is refused (exit 2).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from typing import Sequence

from admin.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    add_config_option,
    load_settings,
    open_tool_store,
    undecodable_argument,
)
from apd.address import classify_strict, is_local_account, is_wildcard_ipv4
from apd.errors import StoreError

USAGE = """Usage: apd-wblist-admin [-c FILE] [--outbound] [--account ACCOUNT]
                        (--add | --delete | --delete-all | --list)
                        (--whitelist | --blacklist) [ADDRESS ...]

    --outbound
        Manage white/blacklist for outbound messages.

        If no '--outbound' argument, defaults to manage inbound messages.

    --account account
        Add white/blacklists for specified (local) account. Valid formats:

            - a single user: username@domain.com
            - a single domain: @domain.com
            - entire domain and all its sub-domains: @.domain.com
            - anyone: @. (the ending dot is required)

        if no '--account' argument, defaults to '@.' (anyone).

    --add
        Add white/blacklists for specified (local) account.

    --delete
        Delete specified white/blacklists for specified (local) account.

    --delete-all
        Delete ALL white/blacklists for specified (local) account.

    --list
        Show existing white/blacklists for specified (local) account. If no
        account specified, defaults to manage server-wide white/blacklists.

    --whitelist sender1 [sender2 sender3 ...]
        Whitelist specified sender(s). Multiple senders must be separated by a space.

    --blacklist sender1 [sender2 sender3 ...]
        Blacklist specified sender(s). Multiple senders must be separated by a space.

    -c FILE
        apd settings file (default: $APD_SETTINGS, then /etc/apd/settings.py).

    Senders (inbound) or recipients (outbound) may be: user@domain.com, user@*,
    @domain.com, @.domain.com, @., an IPv4 or IPv6 address, a CIDR network
    (192.168.1.0/24, 2001:db8::/32) or a wildcard IPv4 address (192.168.1.*).

Sample usage:

    * Show and add server-wide whitelists or blacklists:

        apd-wblist-admin --add --whitelist 192.168.1.10 user@example.com
        apd-wblist-admin --add --blacklist 172.16.1.10 baduser@example.com
        apd-wblist-admin --list --whitelist
        apd-wblist-admin --list --blacklist

    * For per-user or per-domain whitelists and blacklists, please use option
      `--account`. for example:

        apd-wblist-admin --account user@mydomain.com --add --whitelist 192.168.1.10 user@example.com
        apd-wblist-admin --account user@mydomain.com --add --blacklist 172.16.1.10 baduser@example.com
        apd-wblist-admin --account user@mydomain.com --list --whitelist
        apd-wblist-admin --account user@mydomain.com --list --blacklist
"""

ACTIONS = ("add", "delete", "delete_all", "list")
ACTION_TITLES = {"add": "Add", "delete": "Delete", "delete_all": "Delete all", "list": "List all"}
FORMS = (
    "user@domain.com, user@*, @domain.com, @.domain.com, @., an IP address, "
    "a CIDR network (192.168.1.0/24) or a wildcard IPv4 address (192.168.1.*)"
)


class UsageError(Exception):
    pass


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="apd-wblist-admin", usage=USAGE, add_help=False, allow_abbrev=False)
    p.add_argument("-h", "--help", action="store_true")
    add_config_option(p)
    p.add_argument("--outbound", action="store_true")
    p.add_argument("--account", default="@.")
    for action in ACTIONS:
        p.add_argument("--" + action.replace("_", "-"), dest=action, action="store_true")
    p.add_argument("--whitelist", action="store_true")
    p.add_argument("--blacklist", action="store_true")
    p.add_argument("entries", nargs="*")
    return p


def invalid_reason(entry: str) -> str | None:
    """None for a valid list entry, else what is wrong and what would be right."""
    if classify_strict(entry):
        return None
    if "/" in entry:
        address, _, length = entry.partition("/")
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            try:
                version = ipaddress.ip_address(address).version
            except ValueError:
                return f'invalid network address in "{entry}", expected a CIDR network such as 192.168.1.0/24'
            bits = 32 if version == 4 else 128
            return f'invalid prefix length "{length}" in "{entry}", expected 0 to {bits} for IPv{version}'
        return f'non-null host address bits in "{entry}", perhaps you should use "{network}" instead'
    if entry.startswith("@."):
        return f'invalid domain in "{entry}", expected @.domain.com (the domain and its subdomains) or @.'
    if entry.startswith("@"):
        rest = entry[1:]
        if re.fullmatch(r"[a-z0-9\-]{2,25}", rest):
            return f'invalid domain in "{entry}", perhaps you should use "@.{rest}" (a top-level domain) instead'
        return f'invalid domain in "{entry}", expected @domain.com'
    if "@" in entry:
        return f'invalid email address "{entry}", expected user@domain.com or user@*'
    if is_wildcard_ipv4(entry):  # four groups of digits or '*', as iRedAPD's loose test reads them
        return f'invalid IPv4 address "{entry}", expected octets 0 to 255, or * in a wildcard such as 192.168.1.*'
    return f'invalid entry "{entry}", expected {FORMS}'


def choose(args: argparse.Namespace) -> tuple[str, str]:
    """(action, colour 'W'/'B') or UsageError/SystemExit with iRedAPD's messages."""
    colours = [c for c, flag in (("W", args.whitelist), ("B", args.blacklist)) if flag]
    actions = [a for a in ACTIONS if getattr(args, a)]
    if len(colours) > 1:
        raise UsageError("--whitelist and --blacklist conflict: give only one of them")
    if len(actions) > 1:
        flags = " and ".join("--" + a.replace("_", "-") for a in actions)
        raise UsageError(f"{flags} conflict: give only one of --add, --delete, --delete-all or --list")
    if not colours:
        raise SystemExit("No --whitelist or --blacklist specified. Exit.")
    if not actions:
        raise SystemExit("No --add, --delete or --list specified. Exit.")
    return actions[0], colours[0]


def valid_entries(entries: Sequence[str]) -> tuple[list[str], list[str]]:
    """(valid entries, lowercased and without duplicates; one message per invalid entry)."""
    valid: list[str] = []
    problems: list[str] = []
    for raw in entries:
        entry = raw.strip().lower()
        reason = invalid_reason(entry)
        if reason:
            problems.append(reason)
        elif entry not in valid:
            valid.append(entry)
    return valid, problems


def err(message: str) -> None:
    print(message, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(USAGE)
        return EXIT_OK
    undecodable = undecodable_argument(argv)
    if undecodable is not None:
        err(f"<<< ERROR >>> Argument is not valid UTF-8: {undecodable}")
        return EXIT_USAGE
    try:
        args = parser().parse_intermixed_args(argv)
    except SystemExit as exc:  # argparse already printed why
        return EXIT_USAGE if exc.code else EXIT_OK
    if args.help:
        print(USAGE)
        return EXIT_OK
    print("* Establishing SQL connection.")
    account = args.account.strip().lower()
    if "@" not in account:
        err("<<< ERROR >>> Invalid account format.")
        return EXIT_ERROR
    try:
        action, colour = choose(args)
    except UsageError as exc:
        err(f"<<< ERROR >>> {exc}")
        return EXIT_USAGE
    except SystemExit as exc:
        err(str(exc.code))
        return EXIT_ERROR
    if not is_local_account(account):
        err(
            f'INVALID_ACCOUNT: "{account}" is not a valid account, expected user@domain.com, @domain.com, '
            "@.domain.com or @."
        )
        return EXIT_ERROR
    direction = "outbound" if args.outbound else "inbound"
    entries, problems = valid_entries(args.entries)
    for problem in problems:
        err(f"<<< ERROR >>> Skipped: {problem}")
    if action in ("add", "delete") and not entries:
        err("<<< ERROR >>> No valid address given. Nothing changed.")
        return EXIT_ERROR
    if action in ("delete_all", "list") and args.entries:
        err(f"* Ignored with --{action.replace('_', '-')}: {' '.join(args.entries)}")
        problems = []
    colour_name = "whitelist" if colour == "W" else "blacklist"
    print(f"* {ACTION_TITLES[action]} {direction} {colour_name} for account: {account}")
    settings = load_settings(args.config)
    store = open_tool_store(settings)
    try:
        lists = store.wblist
        outbound = bool(args.outbound)
        if action == "add":
            print(f"* Add senders: {', '.join(entries)}")
            lists.add(account, entries, colour, outbound)
        elif action == "delete":
            for address in lists.delete(account, entries, colour, outbound):
                print(f"- Deleted: {address}")
        elif action == "delete_all":
            lists.delete_all(account, colour, outbound)
        else:
            found = lists.entries(account, colour, outbound)
            for address in found:
                print(address)
            if not found:
                print("* No whitelist/blacklist.")
    except StoreError as exc:
        err(f"<<< ERROR >>> {exc}")
        return EXIT_ERROR
    finally:
        store.close()
    return EXIT_ERROR if problems else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
