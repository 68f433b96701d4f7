"""spf_to_greylist_whitelists: store the mail servers of big senders as greylisting whitelists.

Usage: spf_to_greylist_whitelists.py [-c FILE] [--debug] [--submit] [domain ...]

For each domain (default: every domain in ``greylisting_whitelist_domains``), the IPs and
networks its SPF record allows (or, without SPF, the IPv4 addresses of its MX hosts) replace
its ``AUTO-UPDATE: <domain>`` rows in ``greylisting_whitelist_domain_spf``; greylisting
tracking rows of those IPs are dropped. ``--submit`` also lists the domains in
``greylisting_whitelist_domains``. Run every 30 minutes (systemd timer or cron).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from admin.common import EXIT_ERROR, EXIT_OK, add_config_option, load_settings, open_tool_store
from apd.address import is_domain, is_valid_domain
from apd.errors import DuplicateKey, StoreError
from apd.spf import Seen, SpfEvaluator, SpfResult

log = logging.getLogger("apd.tools.spf_to_greylist_whitelists")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="spf_to_greylist_whitelists",
        description="Whitelist the mail servers (SPF, else MX) of the given domains for greylisting.",
    )
    add_config_option(parser)
    parser.add_argument("--debug", action="store_true", help="print every address found")
    parser.add_argument("--submit", action="store_true", help="also store the domains in greylisting_whitelist_domains")
    parser.add_argument("domains", nargs="*", metavar="domain", help="default: every whitelisted domain")
    return parser.parse_intermixed_args(argv)  # flags anywhere, as iRedAPD scans them


def valid_domains(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(lowercased valid domains without duplicates, in order; the invalid names)."""
    valid: list[str] = []
    invalid: list[str] = []
    for name in names:
        domain = name.strip().lower()
        if not (is_domain(domain) and is_valid_domain(domain, underscore=True)):  # iRedAPD's test, anchored
            invalid.append(name)
        elif domain not in valid:
            valid.append(domain)
    return valid, invalid


@dataclass
class Collected:
    results: list[SpfResult]

    @property
    def found_any(self) -> bool:
        return any(result.entries for result in self.results)


def collect_all(spf: SpfEvaluator, domains: Sequence[str]) -> Collected:
    """Look up every domain; records and addresses already seen for one domain are not
    queried or stored again for the next (the shared "queried" set of iRedAPD's tool)."""
    seen = Seen()
    results = []
    for domain in domains:
        if seen.spf_queried(domain):
            continue
        log.info("\t+ [%s]", domain)
        result = spf.collect(domain, seen)
        for entry in result.entries:
            log.debug("\t\t- %s", entry)
        if not result.complete:
            log.debug("\t\t(incomplete: a lookup failed, or the time budget or lookup limit was reached)")
        results.append(result)
    return Collected(results)


def run(args: argparse.Namespace, settings: Any) -> int:
    status = EXIT_OK
    store = open_tool_store(settings)
    repo = store.greylisting_whitelists
    try:
        if args.domains:
            names = args.domains
        else:
            log.info("* Query SQL server to get mail domain names.")
            names = repo.domains()
        domains, invalid = valid_domains(names)
        for name in invalid:
            print(
                f"<<< ERROR >>> Invalid domain name: {name!r} (expected a domain name such as example.com)",
                file=sys.stderr,
            )
            status = EXIT_ERROR
        if not domains:
            log.info("* No valid domain names. Abort.")
            return EXIT_ERROR if invalid else EXIT_OK

        log.info("* %d mail domains in total.", len(domains))
        collected = collect_all(SpfEvaluator(settings), domains)
        if not collected.found_any:
            log.info("* No IP address/network found. Exit.")
            return status

        for result in collected.results:
            try:
                repo.replace_spf_senders(result.domain, result.entries)
            except StoreError as exc:
                log.error("* <<< ERROR >>> Cannot insert new record for domain %s: %s", result.domain, one_line(exc))
                status = EXIT_ERROR

        if args.submit:
            log.info("* Store domain names in SQL database as greylisting whitelists.")
            for domain in domains:
                try:
                    repo.add_domain(domain)
                except DuplicateKey as exc:
                    log.info("<<< ERROR >>> %s", one_line(exc))
                except StoreError as exc:
                    log.error("<<< ERROR >>> %s", one_line(exc))
                    status = EXIT_ERROR
    except StoreError as exc:
        print(f"<<< ERROR >>> {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.close()
    return status


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def setup_logging(debug: bool) -> None:
    """iRedAPD's tools print their log lines to stdout, bare; apd's own modules stay quiet."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.debug)
    settings = load_settings(args.config)
    return run(args, settings)


if __name__ == "__main__":
    sys.exit(main())
