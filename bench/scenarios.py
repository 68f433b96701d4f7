"""What ``make bench`` measures: one entry per table block.

To add rows, append a Scenario: a label, the apd settings, which cells to run (None = the full
table), optionally a request override, the label to compare with, and an ``environment``
context-manager factory when a database has to be started or filled first. Example::

    Scenario("wblist-100k-sqlite", {"plugins": ["amavisd_wblist"]}, cells=AT_50,
             environment=fill_wblist_sqlite(100_000), baseline="wblist-100-sqlite", default=False)

``make bench ARGS='--scenario wblist-100-sqlite --scenario wblist-100k-sqlite'`` then runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from bench.measure import CHURN, PERSISTENT, Cell

NULL = "null"  # the label of the null policy server
NULL_PARSE = "null-parse"  # the null server that also splits each request into a dict

FULL_TABLE = (
    Cell(PERSISTENT, 1),
    Cell(PERSISTENT, 10),
    Cell(PERSISTENT, 50),
    Cell(PERSISTENT, 200),
    Cell(CHURN, 10),
)
AT_50 = (Cell(PERSISTENT, 50),)

CORE_CHECKS = {"plugins": ["reject_null_sender", "reject_to_hostname"]}


@dataclass(frozen=True)
class Scenario:
    label: str
    settings: dict[str, Any] | None  # apd settings; None means the null server
    cells: tuple[Cell, ...] | None = None  # None: FULL_TABLE (or what --connections asks for)
    request: dict[str, str] = field(default_factory=dict)  # overrides of the RCPT request
    baseline: str = NULL  # the ratio column divides by this scenario's figures for the same cell
    environment: Callable[..., Any] | None = None  # workdir -> context manager yielding extra settings
    default: bool = True  # run by a plain `make bench`
    parse_requests: bool = False  # null server only: split each request into a dict (bench/null_server.py --parse)
    doc: str = ""
    mix: tuple[dict[str, str], ...] = ()  # requests each connection cycles through, instead of ``request``
    statements: Callable[[dict[str, Any]], str] | None = None  # apd settings -> SQL statements per request


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SCENARIOS = [
    Scenario(NULL, None, baseline="", doc="stdlib prefork server answering action=DUNNO, no parsing"),
    Scenario(
        NULL_PARSE,
        None,
        cells=AT_50,
        parse_requests=True,
        doc="the null server splitting each request into a dict before answering: the most a Python "
        "server that reads its requests can reach, for reading issue 2's ratio",
    ),
    Scenario(
        "apd-core",
        CORE_CHECKS,
        doc="issue 2 checks, SQLite backend, LOG_SMTP_SESSIONS default, INFO log line per request to a file",
    ),
    Scenario(
        "apd-core-nolog",
        {**CORE_CHECKS, "log_level": "warning"},
        cells=AT_50,
        doc="as apd-core without the INFO line per decision: the cost of logging",
    ),
    Scenario(
        "apd-core-metrics",
        {**CORE_CHECKS, "METRICS_LISTEN": f"127.0.0.1:{_free_port()}"},
        cells=AT_50,
        baseline="apd-core",
        default=False,
        doc="as apd-core with METRICS_LISTEN set: the cost of counting every request (ratio: vs apd-core)",
    ),
    Scenario(
        "apd-core-eom",
        CORE_CHECKS,
        cells=AT_50,
        request={"protocol_state": "END-OF-MESSAGE"},
        doc="END-OF-MESSAGE requests: each one also writes an smtp_sessions row to SQLite",
    ),
]


# amavisd_wblist alone: 100 vs 100,000 list entries (half CIDR networks), SQLite and MariaDB;
# the 100k rows are compared with the 100 rows (issue 4: within 10%). Data: bench/wblist.py.
# The answer is OK, which apd would log to smtp_sessions (one write per request): not
# logged here, so that the figures are the check's.
WBLIST = {"plugins": ["amavisd_wblist"], "LOG_SMTP_SESSIONS": False}
WBLIST_CELLS = (Cell(PERSISTENT, 10), Cell(PERSISTENT, 50))


def _wblist_environment(kind: str, total: int) -> Callable[..., Any]:
    from bench.wblist import environment

    return environment(kind, total)


for _kind, _name in (("sqlite", "sqlite"), ("mysql", "mariadb")):
    SCENARIOS += [
        Scenario(
            f"wblist-100-{_name}",
            WBLIST,
            cells=WBLIST_CELLS,
            environment=_wblist_environment(_kind, 100),
            doc=f"amavisd_wblist alone on {_name}, 100 list entries (50 CIDR)",
        ),
        Scenario(
            f"wblist-100k-{_name}",
            WBLIST,
            cells=WBLIST_CELLS,
            environment=_wblist_environment(_kind, 100_000),
            baseline=f"wblist-100-{_name}",
            doc=f"amavisd_wblist alone on {_name}, 100,000 list entries (50,000 CIDR, IPv4 and IPv6)",
        ),
    ]


# throttle alone at 50 connections, an END-OF-MESSAGE mix (bench/throttle.py), SQLite and MariaDB;
# the session log is off so that the figures are the check's.
THROTTLE = {"plugins": ["throttle"], "LOG_SMTP_SESSIONS": False, "NOTIFICATION_RECIPIENTS": []}


def _throttle_environment(kind: str) -> Callable[..., Any]:
    from bench.throttle import environment

    return environment(kind)


def _throttle_statements(settings: dict[str, Any]) -> str:
    from bench.throttle import statements_per_request

    return statements_per_request(settings)


def _throttle_mix() -> tuple[dict[str, str], ...]:
    from bench.throttle import MIX

    return MIX


for _kind, _name in (("sqlite", "sqlite"), ("mysql", "mariadb")):
    SCENARIOS.append(
        Scenario(
            f"throttle-{_name}",
            THROTTLE,
            cells=AT_50,
            environment=_throttle_environment(_kind),
            mix=_throttle_mix(),
            statements=_throttle_statements,
            doc=f"throttle alone on {_name}: 64 END-OF-MESSAGE requests cycled (authenticated and external "
            "senders, one and three recipients, limits reached and not; bench/throttle.py)",
        )
    )


# iRedMail's whole default plugin list on MariaDB with iRedMail's schemas, accounts and a
# 400-request RCPT / END-OF-MESSAGE mix, SPF through dnsmasq (bench/iredmail_default.py); apd's
# default settings otherwise (sessions logged). Beside apd's figures: the database server's CPU
# and counters per request, and a per-check replay of the mix (bench/profile.py).
IREDMAIL_DEFAULT = {
    "plugins": [
        "reject_null_sender",
        "wblist_rdns",
        "reject_sender_login_mismatch",
        "greylisting",
        "throttle",
        "amavisd_wblist",
        "sql_alias_access_policy",
        "sql_ml_access_policy",
    ],
    "NOTIFICATION_RECIPIENTS": [],
}


def _iredmail_environment(kind: str) -> Callable[..., Any]:
    from bench.iredmail_default import environment

    return environment(kind)


def _iredmail_mix() -> tuple[dict[str, str], ...]:
    from bench.iredmail_default import MIX

    return MIX


def _iredmail_profile(settings: dict[str, Any]) -> str:
    from apd.mailaddr_networks import LATE_COMMIT_SECONDS
    from bench.iredmail_default import MIX
    from bench.profile import format_profile, profile

    rounds = 3
    costs = profile(settings, MIX, rounds, settle=LATE_COMMIT_SECONDS + 1)
    return "\n" + format_profile(costs, rounds * len(MIX))


# Issue 12's table is the same stack at C=10/50/200 on each database ("default-stack").
STACK_CELLS = (Cell(PERSISTENT, 10), Cell(PERSISTENT, 50), Cell(PERSISTENT, 200))
for _kind, _name, _stack in (("mysql", "mariadb", "default-stack"), ("pgsql", "pgsql", "default-stack-pgsql")):
    for _label, _cells, _what in (
        (f"iredmail-default-{_name}", AT_50, ""),
        (_stack, STACK_CELLS, " at 10, 50 and 200 connections (issue 12's table)"),
    ):
        SCENARIOS.append(
            Scenario(
                _label,
                IREDMAIL_DEFAULT,
                cells=_cells,
                environment=_iredmail_environment(_kind),
                mix=_iredmail_mix(),
                statements=_iredmail_profile,
                default=False,
                doc=f"iRedMail's default plugin list on {_name} (iRedMail's schemas, 350 mailboxes, aliases, lists, "
                "greylisting on, throttle, 10k amavisd wblist rows), 400 requests cycled: 3/4 RCPT, 1/4 "
                f"END-OF-MESSAGE (throttle){_what}",
            )
        )


def by_label(label: str) -> Scenario:
    for scenario in SCENARIOS:
        if scenario.label == label:
            return scenario
    known = ", ".join(s.label for s in SCENARIOS)
    raise KeyError(f"unknown scenario {label!r}; known: {known}")


def selected(labels: list[str]) -> list[Scenario]:
    """The named scenarios (or the default ones), each preceded by its baseline chain."""
    chosen = [by_label(label) for label in labels] if labels else [s for s in SCENARIOS if s.default]
    ordered: list[Scenario] = []

    def add(scenario: Scenario) -> None:
        if scenario in ordered:
            return
        if scenario.baseline:
            add(by_label(scenario.baseline))
        ordered.append(scenario)

    for scenario in chosen:
        add(scenario)
    return ordered
