"""``apd --check-postfix``: how Postfix is wired to apd, judged against apd's settings (pure, no I/O).

Each finding names a risk and its fix. The checks' protocol states come from the registry (``states``);
which checks act on SMTP-authenticated or trusted clients, and which can answer ``OK``, is known here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable

from apd.postfix_conf import (
    POSTFIX_DEFAULT_ACTION,
    Parameters,
    Restriction,
    Service,
    inet_endpoint,
    restriction_list,
)

# smtpd's lists in the order it evaluates them at RCPT, with the protocol_state apd then receives.
# With smtpd_delay_reject = yes (the default) the client, helo and sender lists wait for RCPT too.
LIST_STATES: dict[str, frozenset[str]] = {
    "smtpd_client_restrictions": frozenset({"CONNECT"}),
    "smtpd_helo_restrictions": frozenset({"HELO", "EHLO"}),
    "smtpd_sender_restrictions": frozenset({"MAIL"}),
    "smtpd_relay_restrictions": frozenset({"RCPT"}),
    "smtpd_recipient_restrictions": frozenset({"RCPT"}),
    "smtpd_data_restrictions": frozenset({"DATA"}),
    "smtpd_end_of_data_restrictions": frozenset({"END-OF-MESSAGE"}),
    "smtpd_etrn_restrictions": frozenset({"ETRN"}),
}
DELAYED_LISTS = ("smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions")
LIST_FOR_STATE = {
    "RCPT": "smtpd_recipient_restrictions",
    "END-OF-MESSAGE": "smtpd_end_of_data_restrictions",
    "DATA": "smtpd_data_restrictions",
    "MAIL": "smtpd_sender_restrictions (with smtpd_delay_reject = no)",
    "CONNECT": "smtpd_client_restrictions (with smtpd_delay_reject = no)",
    "HELO": "smtpd_helo_restrictions (with smtpd_delay_reject = no)",
    "EHLO": "smtpd_helo_restrictions (with smtpd_delay_reject = no)",
    "ETRN": "smtpd_etrn_restrictions",
}
FINAL = frozenset({"permit", "reject", "defer"})  # nothing after them in a list is ever evaluated
RELAY_GUARDS = frozenset({"reject_unauth_destination", "defer_unauth_destination", "reject", "defer"})

# Checks that act on SMTP-authenticated senders: a permit_sasl_authenticated before apd skips them.
FOR_AUTHENTICATED = frozenset(
    {
        "reject_sender_login_mismatch",
        "throttle",
        "whitelist_outbound_recipient",
        "amavisd_wblist",
        "sql_alias_access_policy",
        "sql_ml_access_policy",
        "ldap_maillist_access_policy",
        "sql_force_change_password",
        "ldap_force_change_password",
    }
)
# Checks that act on clients in mynetworks (the rest skip MYNETWORKS themselves).
FOR_TRUSTED = frozenset({"throttle", "sql_alias_access_policy", "sql_ml_access_policy", "ldap_maillist_access_policy"})
# Checks that can answer OK, which ends the list it is in (amavisd_wblist: an inbound whitelist hit).
CAN_ACCEPT = frozenset({"amavisd_wblist"})
# master.cf services judged besides main.cf: the public SMTP listeners. Other smtpd services (content-filter
# re-injection on 10025, ...) clear their restrictions on purpose.
PUBLIC_SERVICES = frozenset({"smtp", "25", "submission", "587", "smtps", "submissions", "465"})


@dataclass(frozen=True)
class ApdFacts:
    """What the check needs from apd's settings."""

    hosts: tuple[str, ...]
    port: int
    checks: tuple[tuple[str, frozenset[str]], ...]  # (name, protocol states), in plan order
    store_failure_action: str
    throttle_skips_trusted: bool = False  # THROTTLE_BYPASS_MYNETWORKS: a permit_mynetworks costs throttle nothing

    @property
    def endpoint(self) -> str:
        host = self.hosts[0] if self.hosts else "127.0.0.1"
        return f"inet:[{host}]:{self.port}" if ":" in host else f"inet:{host}:{self.port}"


@dataclass(frozen=True)
class Finding:
    where: str
    risk: str
    fix: str

    def line(self) -> str:
        return f"{self.where}: {self.risk}; fix: {self.fix}"


@dataclass(frozen=True)
class Call:
    """apd's check_policy_service in a list: where, and the names of the restrictions evaluated before it."""

    list_name: str
    states: frozenset[str]
    restriction: Restriction
    names_before: frozenset[str]
    guarded: bool  # a relay guard (reject_unauth_destination, ...) comes before it in its list


def apd_facts(settings: Any, planned: Iterable[Any]) -> ApdFacts:
    hosts = tuple(part.strip("[]") for part in settings.listen_address.replace(",", " ").split())
    checks = tuple((p.name, frozenset(s.upper() for s in p.cls.states)) for p in planned)
    return ApdFacts(
        hosts,
        int(settings.listen_port),
        checks,
        settings.STORE_FAILURE_ACTION,
        bool(settings.THROTTLE_BYPASS_MYNETWORKS),
    )


def is_apd(restriction: Restriction, facts: ApdFacts) -> bool:
    if restriction.name != "check_policy_service":
        return False
    endpoint = inet_endpoint(restriction.argument)
    if endpoint is None or endpoint[1] != str(facts.port):
        return False
    return host_matches(endpoint[0], facts.hosts)


def host_matches(host: str, listen_hosts: tuple[str, ...]) -> bool:
    """Whether smtpd connecting to ``host`` reaches apd listening on ``listen_hosts``."""
    try:
        wanted = ipaddress.ip_address(host)
    except ValueError:
        wanted = None
    for listen in listen_hosts:
        try:
            address = ipaddress.ip_address(listen)
        except ValueError:
            continue
        if address.is_unspecified or address == wanted:
            return True
        if host.lower() == "localhost" and address.is_loopback:
            return True
    return False


def list_states(params: Parameters, list_name: str) -> frozenset[str]:
    if list_name in DELAYED_LISTS and params.get("smtpd_delay_reject").lower() != "no":
        return frozenset({"RCPT"})
    return LIST_STATES[list_name]


def reachable(items: list[Restriction]) -> list[Restriction]:
    """The elements smtpd can reach: up to and including the first unconditional permit/reject/defer."""
    for index, item in enumerate(items):
        if item.name in FINAL:
            return items[: index + 1]
    return items


def apd_calls(params: Parameters, facts: ApdFacts) -> list[Call]:
    calls: list[Call] = []
    for list_name in LIST_STATES:
        permits: set[str] = set()
        guarded = False
        for item in reachable(restriction_list(params, list_name)):
            if is_apd(item, facts):
                calls.append(Call(list_name, list_states(params, list_name), item, frozenset(permits), guarded))
            permits.add(item.name)
            guarded = guarded or item.name in RELAY_GUARDS
    return calls


def relay_guarded_lists(params: Parameters, facts: ApdFacts) -> set[str]:
    """RCPT-time lists holding a relay guard that an OK from apd cannot skip (it comes before apd there)."""
    guarded: set[str] = set()
    for list_name in LIST_STATES:
        if "RCPT" not in list_states(params, list_name):
            continue
        for item in reachable(restriction_list(params, list_name)):
            if is_apd(item, facts):
                break
            if item.name in RELAY_GUARDS:
                guarded.add(list_name)
                break
    return guarded


def findings(params: Parameters, facts: ApdFacts, where: str) -> list[Finding]:
    """Every risk in one smtpd's parameters (main.cf, or main.cf with a master.cf service's overrides)."""
    calls = apd_calls(params, facts)
    if not calls:
        return [no_policy_service(params, facts, where)]
    result = state_findings(calls, facts, where)
    result += permit_findings(calls, facts, where)
    result += relay_findings(params, calls, facts, where)
    result += policy_client_findings(params, calls, facts, where)
    return result


def no_policy_service(params: Parameters, facts: ApdFacts, where: str) -> Finding:
    others = sorted(
        {
            str(item)
            for name in LIST_STATES
            for item in restriction_list(params, name)
            if item.name == "check_policy_service" and (inet_endpoint(item.argument) or ("", ""))[1] == str(facts.port)
        }
    )
    near = f" ({', '.join(others)} has apd's port but not its address {', '.join(facts.hosts)})" if others else ""
    return Finding(
        where,
        f"no check_policy_service for apd ({facts.endpoint}) in any smtpd_*_restrictions{near}: "
        "Postfix never asks apd, so no check runs",
        f"add check_policy_service {facts.endpoint} to smtpd_recipient_restrictions (before permit_mynetworks, "
        "permit_sasl_authenticated and reject_unauth_destination) and to smtpd_end_of_data_restrictions",
    )


def _states_text(states: Iterable[str]) -> str:
    return " or ".join(sorted(states))


def state_findings(calls: list[Call], facts: ApdFacts, where: str) -> list[Finding]:
    """Checks whose protocol state apd is never asked in."""
    reached = set().union(*(call.states for call in calls))
    missing: dict[frozenset[str], list[str]] = {}
    for name, states in facts.checks:
        if states and not states & reached:
            missing.setdefault(states, []).append(name)
    asked = ", ".join(f"{state} ({call.list_name})" for call in calls for state in sorted(call.states))
    result = []
    for states, names in missing.items():
        lists = " or ".join(sorted({LIST_FOR_STATE.get(state, state) for state in states}))
        result.append(
            Finding(
                where,
                f"{', '.join(names)} {'needs' if len(names) == 1 else 'need'} protocol state {_states_text(states)} "
                f"but apd is asked only at {asked}: {'it never runs' if len(names) == 1 else 'they never run'}",
                f"add check_policy_service {facts.endpoint} to {lists}",
            )
        )
    return result


def permit_findings(calls: list[Call], facts: ApdFacts, where: str) -> list[Finding]:
    """Checks meant for authenticated or trusted clients that a permit before apd keeps from them."""
    for_trusted = FOR_TRUSTED - {"throttle"} if facts.throttle_skips_trusted else FOR_TRUSTED
    result = []
    for permit, meant, who in (
        ("permit_sasl_authenticated", FOR_AUTHENTICATED, "SMTP-authenticated clients"),
        ("permit_mynetworks", for_trusted, "mynetworks clients"),
    ):
        skipped: list[str] = []
        lists: set[str] = set()
        for name, states in facts.checks:
            relevant = [call for call in calls if call.states & states]
            if name in meant and relevant and all(permit in call.names_before for call in relevant):
                skipped.append(name)
                lists.update(call.list_name for call in relevant)
        if skipped:
            result.append(
                Finding(
                    where,
                    f"{', '.join(sorted(lists))}: check_policy_service {facts.endpoint} comes after {permit}, "
                    f"so apd is never asked for {who} and {', '.join(skipped)} never "
                    f"{'runs' if len(skipped) == 1 else 'run'} for them",
                    f"move check_policy_service {facts.endpoint} before {permit}",
                )
            )
    return result


def relay_findings(params: Parameters, calls: list[Call], facts: ApdFacts, where: str) -> list[Finding]:
    """An OK from apd ends its list: without a relay guard elsewhere, that is relay permission."""
    accepting = [name for name, states in facts.checks if name in CAN_ACCEPT and "RCPT" in states]
    if not accepting:
        return []
    guarded_lists = relay_guarded_lists(params, facts)
    result = []
    for call in calls:
        if "RCPT" not in call.states or call.guarded or guarded_lists - {call.list_name}:
            continue
        if call.list_name == "smtpd_relay_restrictions":
            fix = f"move check_policy_service {facts.endpoint} to smtpd_recipient_restrictions"
        else:
            fix = (
                "set smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
                "reject_unauth_destination (smtpd evaluates it apart from the list apd is in; compatibility_level "
                "1 or later has the like by default)"
            )
        result.append(
            Finding(
                where,
                f"{call.list_name}: check_policy_service {facts.endpoint} comes before reject_unauth_destination "
                f"and {', '.join(accepting)} can answer OK: a whitelisted sender may relay to any domain",
                fix,
            )
        )
        break
    return result


def policy_client_findings(params: Parameters, calls: list[Call], facts: ApdFacts, where: str) -> list[Finding]:
    """smtpd's policy client settings (main.cf, or per service in the check_policy_service braces)."""
    result = []
    limits = {
        call.restriction.option("request_limit") or params.get("smtpd_policy_service_request_limit") for call in calls
    }
    if "1" in limits:
        result.append(
            Finding(
                where,
                "smtpd_policy_service_request_limit = 1: smtpd opens a new connection to apd for every request, "
                "a connect and a worker hand-off each time, several times the cost of a reused connection",
                "remove it (default 0: smtpd keeps its connection for max_idle/max_ttl)",
            )
        )
    actions = {
        call.restriction.option("default_action") or params.get("smtpd_policy_service_default_action") for call in calls
    }
    wanted = facts.store_failure_action
    if POSTFIX_DEFAULT_ACTION in actions and wanted.upper() != "DUNNO" and wanted != POSTFIX_DEFAULT_ACTION:
        result.append(
            Finding(
                where,
                f"smtpd_policy_service_default_action is Postfix's default ({POSTFIX_DEFAULT_ACTION!r}) while "
                f"apd's STORE_FAILURE_ACTION is {wanted!r}: when apd cannot be reached, mail gets another answer "
                "than when apd's database cannot",
                f"set smtpd_policy_service_default_action = {wanted}",
            )
        )
    return result


def judged_services(services: list[Service]) -> list[Service]:
    """Public smtpd listeners with overrides of their own."""
    return [
        service
        for service in services
        if service.command == "smtpd"
        and service.type == "inet"
        and service.name.rpartition(":")[2] in PUBLIC_SERVICES
        and service.overrides
    ]


def check_postfix(main: dict[str, str], services: list[Service], facts: ApdFacts) -> list[Finding]:
    """main.cf's findings, then those a public master.cf service adds by its own overrides."""
    params = Parameters(main)
    result = findings(params, facts, "main.cf")
    seen = {(finding.risk, finding.fix) for finding in result}
    for service in judged_services(services):
        where = f"master.cf service {service.name}"
        for finding in findings(params.overlaid(service.overrides), facts, where):
            if (finding.risk, finding.fix) not in seen:
                seen.add((finding.risk, finding.fix))
                result.append(finding)
    return result
