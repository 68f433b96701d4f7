"""``apd-senderscore-admin``: whitelist client addresses for the senderscore check (admin-tools.md §5).

``-w IP [IP ...]`` stores a score of 100 dated 2099 for each address in ``senderscore_cache``,
so the check passes those clients and ``apd-cleanup-db`` never expires them. The lines printed
are iRedAPD's. Unlike iRedAPD, an invalid address is named and nothing is written (iRedAPD
dropped it silently and whitelisted the rest), and errors exit non-zero.
"""

from __future__ import annotations

import sys
from typing import Sequence

from admin.common import EXIT_OK, EXIT_USAGE, load_settings, run_on_store, undecodable_argument
from apd.address import is_strict_ip
from apd.log_escape import escape_controls

USAGE = """\
Usage: apd-senderscore-admin [-c FILE] -w <ip> [<ip> ...]

    -w      Whitelist the given IP addresses: store a senderscore of 100 that never expires.
    -c      apd settings file (default: $APD_SETTINGS, /etc/apd/settings.py)
"""


class UsageError(Exception):
    pass


def parse(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(settings file, addresses to whitelist). No arguments at all asks for the usage text."""
    config: str | None = None
    args = list(argv)
    if args[:1] in (["-c"], ["--config"]):
        if len(args) < 2:
            raise UsageError("-c needs a settings file.")
        config, args = args[1], args[2:]
    if not args or args[0] != "-w":
        raise UsageError("Invalid argument.")
    addresses = args[1:]
    if not addresses:
        raise UsageError("No valid IP address.")
    invalid = [address for address in addresses if not is_strict_ip(address)]
    if invalid:
        raise UsageError("Not an IP address: " + ", ".join(escape_controls(address) for address in invalid))
    return config, list(dict.fromkeys(addresses))


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return EXIT_OK
    bad = undecodable_argument(argv)
    if bad is not None:
        print(f"Not valid UTF-8: {bad}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config, addresses = parse(argv)
    except UsageError as exc:
        print(f"{exc}\n\n{USAGE}", end="", file=sys.stderr)
        return EXIT_USAGE

    def whitelist(store) -> None:
        store.senderscore.whitelist(addresses)
        print("Whitelisted: " + ", ".join(addresses))

    return run_on_store(load_settings(config), whitelist)


if __name__ == "__main__":
    sys.exit(main())
