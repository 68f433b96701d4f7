"""Every apd setting, declared once, and the loader for iRedAPD-style settings files.

The site file is Python in form (an iRedAPD ``settings.py`` loads unchanged), but it
is *read*, not executed: plain assignments of literals, ``NAME[key] = literal`` on
dict settings, ``+=`` on lists and the ``from libs.default_settings import *`` line.
"""

from __future__ import annotations

import ast
import difflib
import ipaddress
import math
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from apd.address import is_valid_wildcard_ipv4, tried_wildcard
from apd.settings_eval import MAX_DEPTH, MAX_FILE_SIZE, Evaluator, Exhausted, Unsupported, deep_statement

EX_CONFIG = 78  # os.EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a restart loop

DEFAULT_SETTINGS_PATH = "/etc/apd/settings.py"


class ConfigError(Exception):
    """One or more invalid settings; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


# --- value converters: return the normalised value or raise ValueError(expected form)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ValueError("expected an integer")


def _port(value: Any) -> int:
    try:
        port = _int(value)
    except ValueError:
        raise ValueError("expected a TCP port number (1-65535), as int or string") from None
    if not 0 < port < 65536:
        raise ValueError("expected a TCP port number (1-65535), as int or string")
    return port


def _nonneg_int(unit: str) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        try:
            number = _int(value)
        except ValueError:
            raise ValueError(f"expected {unit} as an integer") from None
        if number < 0:
            raise ValueError(f"expected {unit} as an integer >= 0")
        return number

    return convert


MAX_DAYS = 36500  # a century: larger day counts overflow date arithmetic (timedelta) in the checks


def _days(value: Any) -> int:
    days = _nonneg_int("days")(value)
    if days > MAX_DAYS:
        raise ValueError(f"expected days as an integer from 0 to {MAX_DAYS}")
    return days


def _prefix_length(exact: int, longest: int | None = None) -> Callable[[Any], int]:
    """A network prefix length 0..``longest``, or ``exact`` (the whole address)."""
    longest = exact if longest is None else longest

    def convert(value: Any) -> int:
        expected = f"expected a prefix length 0-{longest}" + (f" or {exact}" if longest != exact else "")
        try:
            number = _int(value)
        except ValueError:
            raise ValueError(expected) from None
        if not (0 <= number <= longest or number == exact):
            raise ValueError(expected)
        return number

    return convert


def _worker_timeout(value: Any) -> int:
    seconds = _nonneg_int("seconds")(value)
    if 0 < seconds < 5:
        raise ValueError("expected seconds as an integer: 0 (never) or at least 5")
    return seconds


MAX_SECONDS = 1_000_000.0  # larger timeouts overflow socket and select calls (1e300)


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("expected a number of seconds")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError("expected a number of seconds") from None
    if not math.isfinite(number) or not 0 < number <= MAX_SECONDS:  # nan compares False to all
        raise ValueError(f"expected a number of seconds > 0 and at most {MAX_SECONDS:.0f}")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    raise ValueError("expected True or False")


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError("expected a string")


def _listen_address(value: Any) -> str:
    """One or more IP addresses, split as ``server.listen_addresses`` splits them (commas or
    spaces, an IPv6 address optionally in [ ]); the text is kept as written."""
    text = _str(value)
    parts = text.replace(",", " ").split()
    if not parts:
        raise ValueError("expected at least one IPv4 or IPv6 address, e.g. '127.0.0.1' or '127.0.0.1, ::1'")
    for part in parts:
        try:
            ipaddress.ip_address(part.strip("[]"))
        except ValueError:
            raise ValueError(
                f"expected IPv4 or IPv6 addresses separated by commas or spaces; {part!r} is not one"
            ) from None
    return text


def _srs_secrets(value: Any) -> tuple[str, ...]:
    secrets = _str_list(value)
    if not all(secrets):
        raise ValueError("an SRS secret cannot be empty")
    return secrets


def _srs_domain(value: Any) -> str:
    from apd.address import is_valid_domain

    domain = _str(value).strip()
    if domain and not is_valid_domain(domain):
        raise ValueError(f"{domain!r} is not a domain name")
    return domain


def _metrics_listen(value: Any) -> str:
    from apd.metrics.exposition import parse_listen

    text = _str(value).strip()
    if text:
        host, _ = parse_listen(text)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"expected an IP address and port such as '127.0.0.1:9177', not {text!r}") from None
    return text


def _str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple, set)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError("expected a list of strings")


def _choice(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if isinstance(value, str) and value.lower() in choices:
            return value.lower()
        raise ValueError("expected one of " + ", ".join(repr(c) for c in choices))

    return convert


def _priorities(value: Any) -> dict[str, int]:
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in value.items()
    ):
        return dict(value)
    raise ValueError("expected a dict of plugin name -> integer priority")


def _networks(value: Any) -> tuple[str, ...]:
    try:
        return _str_list(value)
    except ValueError:
        raise ValueError("expected a list of IPs, wildcard IPv4 ('192.0.2.*') or CIDR networks") from None


def network_warnings(entries: Iterable[str], all_wildcards: bool = False) -> list[str]:
    """MYNETWORKS entries that never match a client (apd/netmatch.py TrustedClients): iRedAPD
    ignores them silently; apd warns, naming each (an iRedAPD file must still load)."""
    warnings = []
    for entry in entries:
        problem = _network_entry_problem(entry, all_wildcards)
        if problem:
            warnings.append(f"MYNETWORKS entry {entry!r} {problem}")
    return warnings


def _network_entry_problem(entry: str, all_wildcards: bool) -> str | None:
    """Why an entry never matches, with the form meant where there is one; None when it can."""
    if "/" in entry:  # a strict network, matched in a radix tree
        try:
            ipaddress.ip_network(entry, strict=True)
        except ValueError:
            try:
                fixed = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                return "is not a network and is ignored"
            return f"has host bits set and is ignored (as iRedAPD does); perhaps you mean {str(fixed)!r}"
        return None
    try:  # anything else is compared as text with the client address Postfix sends
        canonical = str(ipaddress.ip_address(entry))
    except ValueError:
        pass
    else:
        if canonical == entry:
            return None
        return f"never equals a client address as Postfix writes it and is ignored; perhaps you mean {canonical!r}"
    if tried_wildcard(entry, all_wildcards):
        return None
    if tried_wildcard(entry, True):
        network = _wildcard_network(entry)
        suggestion = f"; perhaps you mean {network!r}" if network else ""
        return f"is tried only with ENABLE_ALL_WILDCARD_IP = True and is ignored (as iRedAPD does){suggestion}"
    if is_valid_wildcard_ipv4(entry):
        return (
            "is a wildcard form never tried and is ignored (as iRedAPD does); '*' may stand for the last octet"
            " (192.0.2.*), the third (192.0.*.4), or with ENABLE_ALL_WILDCARD_IP = True for adjacent octets"
        )
    return "is not an IP address, wildcard IPv4 (192.0.2.*) or CIDR network and is ignored"


def _wildcard_network(wildcard: str) -> str | None:
    """The network a wildcard of trailing octets stands for: '172.16.*.*' -> '172.16.0.0/16'."""
    octets = wildcard.split(".")
    known = octets.index("*")
    if octets[known:] != ["*"] * (4 - known):
        return None
    return ".".join(octets[:known] + ["0"] * (4 - known)) + f"/{8 * known}"


def _ldap_uri(value: Any) -> str:
    """One or more space-separated ldap://, ldaps:// or ldapi:// URIs (libldap tries them in turn)."""
    text = _str(value).strip()
    uris = text.split()
    if not uris or any(not u.lower().startswith(("ldap://", "ldaps://", "ldapi://")) for u in uris):
        raise ValueError("expected an LDAP URI such as 'ldap://127.0.0.1:389' (or ldaps://, ldapi://)")
    return text


def _nameservers(value: Any) -> tuple[str, ...]:
    entries = _str_list(value)
    for entry in entries:
        host, port = split_host_port(entry)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"expected a list of 'ip' or 'ip:port'; {entry!r} is not") from None
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"expected a list of 'ip' or 'ip:port'; {entry!r} has a bad port")
    return entries


def split_host_port(entry: str) -> tuple[str, int | None]:
    """'1.2.3.4:53' -> ('1.2.3.4', 53); '[::1]:53' -> ('::1', 53); '::1' -> ('::1', None)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port) if port.isdigit() else -1
    return entry, None


_LOG_LEVELS = ("debug", "info", "warning", "warn", "error", "critical", "fatal")
_FACILITIES = (
    "auth authpriv cron daemon ftp kern lpr mail news syslog user uucp "
    "local0 local1 local2 local3 local4 local5 local6 local7"
).split()


def _any(value: Any) -> Any:
    return value


def _action(value: Any) -> str:
    text = _str(value).strip()
    if text.upper() == "DUNNO" or text[:3].isdigit() and text[0] == "4":
        return text
    raise ValueError("expected 'DUNNO' or a temporary failure such as '451 4.3.0 text'")


@dataclass(frozen=True)
class Setting:
    name: str
    convert: Callable[[Any], Any]
    default: Any
    doc: str


DEFAULT_PLUGINS = (
    "reject_null_sender",
    "wblist_rdns",
    "reject_sender_login_mismatch",
    "greylisting",
    "throttle",
    "amavisd_wblist",
    "sql_alias_access_policy",
)

_S = Setting
REGISTRY: tuple[Setting, ...] = (
    # daemon
    _S("listen_address", _listen_address, "127.0.0.1", "Address the policy service binds to (IPv4 or IPv6)."),
    _S("listen_port", _port, 7777, "Port of the policy service."),
    _S("srs_forward_port", _port, 7778, "tcp_table port for SRS sender rewriting."),
    _S("srs_reverse_port", _port, 7779, "tcp_table port for SRS reverse rewriting."),
    _S("run_as_user", _str, "apd", "Account to switch to after binding, when started as root."),
    _S("pid_file", _str, "", "Write the master's pid here when set (apd runs in the foreground)."),
    _S("log_level", _choice(*_LOG_LEVELS), "info", "Logging level."),
    _S("backend", _choice("sqlite", "mysql", "pgsql", "ldap"), "sqlite", "Account backend."),
    _S("plugins", _str_list, DEFAULT_PLUGINS, "Enabled checks (iRedAPD plugin names)."),
    _S("srs_secrets", _srs_secrets, (), "SRS HMAC secrets; the first signs."),
    _S("srs_domain", _srs_domain, "", "Domain used in SRS-rewritten addresses."),
    # apd additions
    _S("workers", _nonneg_int("a worker count"), 0, "Worker processes; 0 means 2 x CPUs."),
    _S(
        "worker_timeout",
        _worker_timeout,
        120,
        "Seconds a worker may spend on one request (or starting) before the master kills and replaces it;"
        " 0 = never. Postfix gives up after smtpd_policy_service_timeout (100 s).",
    ),
    _S(
        "REQUEST_TIMEOUT",
        _positive_number,
        30.0,
        "Seconds a client may take to send a policy request (from its first byte) or to read a reply;"
        " a slower client is dropped. Between requests a connection may idle for Postfix's 300 s.",
    ),
    _S(
        "METRICS_LISTEN",
        _metrics_listen,
        "",
        "Address ('127.0.0.1:9177', '[::1]:9177') of the Prometheus metrics listener; empty = off.",
    ),
    _S("sqlite_db_path", _str, "", "SQLite database file for backend 'sqlite' (default: a state dir)."),
    _S("DNS_NAMESERVERS", _nameservers, (), "Nameservers ('ip' or 'ip:port') for every DNS lookup."),
    _S("STORE_FAILURE_ACTION", _action, "DUNNO", "Answer when a database is down: DUNNO or a 4xx."),
    _S("SQL_QUERY_TIMEOUT", _positive_number, 5.0, "Seconds a database connect or query may take."),
    _S("CUSTOM_CHECKS_DIR", _str, "", "Folder with custom_*.py checks."),
    _S(
        "GREYLISTING_TRACK_IPV4_PREFIX",
        _prefix_length(32),
        32,
        "Greylisting tracks an IPv4 client by its /N network instead of its address when N < 32 (apd"
        " addition). 24 lets a retry from another server of the same /24 pool pass, as big providers"
        " retry from other addresses; greylisting_tracking.client_address then holds e.g. '192.0.2.0/24'."
        " 32 (default) tracks the exact address, as iRedAPD does.",
    ),
    _S(
        "GREYLISTING_TRACK_IPV6_PREFIX",
        _prefix_length(128, 112),
        128,
        "The same for IPv6 clients, e.g. 64 (one /64 per site). 128 (default) tracks the exact address;"
        " otherwise at most 112, so the network text fits client_address (40 characters).",
    ),
    # LDAP
    _S("ldap_uri", _ldap_uri, "ldap://127.0.0.1:389", "LDAP server URI."),
    _S("ldap_basedn", _str, "o=domains,dc=iredmail,dc=org", "Base DN of the mail domains."),
    _S("ldap_binddn", _str, "cn=vmail,dc=iredmail,dc=org", "Bind DN."),
    _S("ldap_bindpw", _str, "password", "Bind password."),
    _S("ldap_enable_tls", _bool, False, "StartTLS after connecting."),
    _S("LDAP_TIMEOUT", _positive_number, 5.0, "Seconds an LDAP connect, bind or search may take."),
    # SQL databases
    *(
        _S(f"{db}_db_{key}", conv, default, f"{key} of the {db} database.")
        for db in ("vmail", "amavisd", "iredapd")
        for key, conv, default in (
            ("server", _str, "127.0.0.1"),
            ("port", _port, 3306),
            ("name", _str, db),
            ("user", _str, db),
            ("password", _str, "password"),
            ("use_ssl", _bool, False),
        )
    ),
    _S("mlmmjadmin_api_endpoint", _str, "http://127.0.0.1:7790/api", "mlmmjadmin API base URL."),
    _S("mlmmjadmin_api_auth_token", _str, "", "mlmmjadmin API token."),
    # logging
    _S("SYSLOG_SERVER", _str, "/dev/log", "Syslog socket path, or host for UDP syslog."),
    _S("SYSLOG_PORT", _port, 514, "Port for remote syslog."),
    _S("SYSLOG_FACILITY", _choice(*_FACILITIES), "local5", "Syslog facility."),
    _S("LOG_SMTP_SESSIONS", _bool, True, "Write rows into smtp_sessions."),
    _S("LOG_SMTP_SESSIONS_EXPIRE_DAYS", _days, 7, "Days smtp_sessions rows are kept."),
    _S("LOG_SMTP_SESSIONS_BYPASS_DUNNO", _bool, False, "Do not log DUNNO answers."),
    _S("LOG_SMTP_SESSIONS_BYPASS_GREYLISTING", _bool, False, "Do not log greylisting answers."),
    _S("LOG_SMTP_SESSIONS_BYPASS_WHITELIST", _bool, False, "Do not log OK answers."),
    # framework
    _S("PLUGIN_PRIORITIES", _priorities, {}, "Extra or overriding check priorities (larger first)."),
    _S("MYNETWORKS", _networks, (), "Trusted clients: IPs, wildcard IPv4, CIDR networks."),
    _S("RECIPIENT_DELIMITERS", _str_list, ("+",), "Address extension delimiters."),
    _S("ENABLE_ALL_WILDCARD_IP", _bool, False, "All ten wildcard forms of a client IPv4."),
    _S("TRACKING_EXPIRE_SECONDS", _int, 10, "Obsolete; never read."),
    _S("SQL_CONNECTION_POOL_SIZE", _int, 10, "Ignored: apd keeps one connection per database per worker."),
    _S("SQL_CONNECTION_MAX_OVERFLOW", _int, 10, "Ignored (see SQL_CONNECTION_POOL_SIZE)."),
    _S("SQL_CONNECTION_POOL_RECYCLE", _int, 60, "Ignored (see SQL_CONNECTION_POOL_SIZE)."),
    _S("SQL_DB_DRIVER", _str, "", "Ignored: apd uses mysqlclient (else PyMySQL) and psycopg2."),
    # DNS
    _S("DNS_QUERY_TIMEOUT", _positive_number, 3.0, "Seconds one DNS query may take."),
    _S("SPF_MAX_DNS_QUERIES", _nonneg_int("a query count"), 20, "DNS lookups allowed in one SPF evaluation."),
    _S("SPF_TIME_BUDGET", _positive_number, 10.0, "Seconds one whole SPF evaluation may take."),
    # lists
    _S("WBLIST_BYPASS_OUTGOING_EMAIL", _bool, False, "Skip outbound wblist for authenticated senders."),
    _S("WBLIST_DISCARD_INSTEAD_OF_REJECT", _bool, False, "DISCARD instead of REJECT for blacklists."),
    # password age
    _S("CHANGE_PASSWORD_DAYS", _days, 90, "Maximum password age in days."),
    _S(
        "CHANGE_PASSWORD_MESSAGE",
        _str,
        "Password expired or never changed, please change your password in webmail before sending email",
        "Rejection text.",
    ),
    _S("CHANGE_PASSWORD_NEVER_EXPIRE_USERS", _str_list, (), "Exempt addresses or domains."),
    # login mismatch
    _S("CHECK_FORGED_SENDER", _bool, True, "Reject unauthenticated local senders."),
    _S("ALLOWED_FORGED_SENDERS", _str_list, (), "Exemptions from the forged-sender check."),
    _S("CHECK_SPF_IF_LOGIN_MISMATCH", _bool, True, "Accept a forged sender listed in its SPF."),
    _S("ALLOWED_LOGIN_MISMATCH_SENDERS", _str_list, (), "Users allowed to send as others."),
    _S("ALLOWED_LOGIN_MISMATCH_STRICTLY", _bool, True, "Allow the user's own aliases."),
    _S("ALLOWED_LOGIN_MISMATCH_LIST_MEMBER", _bool, False, "Allow list members to send as the list."),
    _S("MLMMJADMIN_API_AUTH_TOKEN_HEADER_NAME", _str, "X-MLMMJADMIN-API-AUTH-TOKEN", "Token header."),
    _S(
        "MLMMJADMIN_API_TIMEOUT",
        _positive_number,
        3.0,
        "Seconds one mlmmjadmin API call may take (apd addition; iRedAPD waits forever). A failed call"
        " counts as 'not a subscriber'.",
    ),
    # greylisting
    _S("GREYLISTING_MESSAGE", _str, "Intentional policy rejection, please try again later", "451 text."),
    _S("GREYLISTING_TRAINING_MODE", _bool, False, "Track but never greylist."),
    _S("GREYLISTING_BLOCK_EXPIRE", _nonneg_int("minutes"), 15, "Minutes before a retry passes."),
    _S("GREYLISTING_AUTH_TRIPLET_EXPIRE", _days, 30, "Days a passed client stays passed."),
    _S("GREYLISTING_UNAUTH_TRIPLET_EXPIRE", _days, 1, "Days an unpassed triplet lives."),
    _S("GREYLISTING_BYPASS_SPF", _bool, True, "No greylisting for clients in the sender's SPF."),
    # outbound recipient whitelisting
    _S("WL_RCPT_FOR_GREYLISTING", _bool, True, "Whitelist outbound recipients for greylisting."),
    _S("WL_RCPT_WITHOUT_SPF", _bool, False, "Also add a direct whitelist entry."),
    _S("WL_RCPT_LOCAL_ACCOUNT", _str, "user", "Owner of that entry: user, domain or global."),
    _S("WL_RCPT_RCPT", _str, "user", "What is whitelisted: user or domain."),
    _S("WL_RCPT_WHITELIST_DOMAIN_FOR_GREYLISTING", _bool, False, "Whitelist the recipient domain."),
    # throttle
    _S("THROTTLE_BYPASS_MYNETWORKS", _bool, False, "No throttling for trusted clients."),
    _S("THROTTLE_BYPASS_LOCAL_RECIPIENT", _bool, True, "No inbound throttling for authenticated mail."),
    _S("THROTTLE_BYPASS_SAME_DOMAIN", _bool, True, "No throttling when sender and recipient domain match."),
    # senderscore
    _S("SENDERSCORE_REJECT_SCORE", _int, 30, "Reject at or below this score."),
    _S("SENDERSCORE_CACHE_DAYS", _days, 2, "Days cached scores are kept."),
    # notification mail
    _S("CMD_SENDMAIL", _str, "/usr/sbin/sendmail", "sendmail command for notices."),
    _S("NOTIFICATION_RECIPIENTS", _str_list, ("root",), "Recipients of notices."),
    _S("NOTIFICATION_SMTP_SERVER", _str, "localhost", "SMTP host for notices."),
    _S("NOTIFICATION_SMTP_PORT", _port, 587, "SMTP port for notices."),
    _S("NOTIFICATION_SMTP_STARTTLS", _bool, True, "STARTTLS for notices."),
    _S("NOTIFICATION_SMTP_USER", _str, "no-reply@localhost.localdomain", "SMTP login and From."),
    _S("NOTIFICATION_SMTP_PASSWORD", _str, "", "SMTP password; empty uses CMD_SENDMAIL."),
    _S("NOTIFICATION_SMTP_DEBUG_LEVEL", _int, 0, "SMTP debug level."),
    _S("NOTIFICATION_SENDER_NAME", _str, "No Reply", "From display name."),
    # tools
    _S("CLEANUP_QUERY_SIZE_LIMIT", _nonneg_int("a row count"), 1000, "Batch size of cleanup deletes."),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in REGISTRY}

# Names that sample plugins read; accepted without a warning, passed through as they are.
PASS_THROUGH = frozenset(
    {"CUSTOM_RELAY_DEFAULT_RELAY", "SPAM_TRAP_ACCOUNTS", "SPAM_TRAP_SMTP_ACTION", "SPAM_TRAP_BLOCK_SENDER"}
    # where the Cluebringer migration tools find Cluebringer's database (admin/cluebringer.py)
    | {f"cluebringer_db_{part}" for part in ("dialect", "host", "port", "name", "user", "password")}
)
OBSOLETE = frozenset(
    {
        "log_action_in_db",
        "iredadmin_db_server",
        "iredadmin_db_port",
        "iredadmin_db_name",
        "iredadmin_db_user",
        "iredadmin_db_password",
    }
)
IGNORED_IMPORTS = ("libs.default_settings", "apd.default_settings", "default_settings")


class Settings:
    """Frozen, validated settings. Read as attributes: ``settings.listen_port``."""

    __slots__ = ("_values", "source", "warnings", "_lines")

    def __init__(
        self,
        values: dict[str, Any],
        source: str = "",
        warnings: Iterable[str] = (),
        lines: dict[str, int] | None = None,
    ):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "warnings", tuple(warnings))
        object.__setattr__(self, "_lines", dict(lines or {}))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Settings are read-only; reload builds a new object")

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def origin(self, name: str) -> str:
        """Where a setting's value comes from, for messages: 'FILE:LINE', else the source."""
        line = self._lines.get(name)
        return f"{self.source}:{line}" if line else self.source

    def replace(self, **changes: Any) -> "Settings":
        problems = []
        values = dict(self._values)
        for name, value in changes.items():
            setting = BY_NAME.get(name)
            if setting is None:
                values[name] = value
                continue
            try:
                values[name] = setting.convert(value)
            except (ValueError, OverflowError) as exc:
                problems.append(f"{name} = {brief(value)}: {exc}")
        if problems:
            raise ConfigError(problems)
        lines = {name: line for name, line in self._lines.items() if name not in changes}
        return Settings(values, self.source, self.warnings, lines)

    @property
    def worker_count(self) -> int:
        return self.workers or 2 * (os.cpu_count() or 1)

    @property
    def hostname(self) -> str:
        return socket.gethostname()


def defaults() -> Settings:
    return Settings({s.name: s.default for s in REGISTRY}, source="(built-in defaults)")


def settings_path(cli_path: str | None) -> str | None:
    """-c FILE, else $APD_SETTINGS, else /etc/apd/settings.py if present, else None (defaults)."""
    if cli_path:
        return cli_path
    if os.environ.get("APD_SETTINGS"):
        return os.environ["APD_SETTINGS"]
    if os.path.exists(DEFAULT_SETTINGS_PATH):
        return DEFAULT_SETTINGS_PATH
    return None


def srs_problems(values: dict[str, Any], lines: dict[str, int], path: str) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the SRS settings. SRS runs with both a secret and its domain, on
    ports of its own. One without the other leaves SRS off with a warning (srs.md §8 would fail
    the file, but an iRedAPD settings.py written that way must still load)."""
    secrets, domain = values.get("srs_secrets"), values.get("srs_domain")
    if not secrets and not domain:
        return [], []
    where = f"{path}:{lines.get('srs_domain' if domain else 'srs_secrets', 0)}"
    if not secrets or not domain:
        given, missing = ("srs_domain", "srs_secrets") if domain else ("srs_secrets", "srs_domain")
        return [], [f"{where}: {given} is set but {missing} is empty: SRS stays off until both are set"]
    ports = [values.get("listen_port"), values.get("srs_forward_port"), values.get("srs_reverse_port")]
    if len(set(ports)) < 3:
        return [f"{where}: listen_port, srs_forward_port and srs_reverse_port must differ (they are {ports})"], []
    return [], []


def load(path: str | None) -> Settings:
    """Load a settings file over the defaults; raise ConfigError listing every problem."""
    if path is None:
        return defaults()
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read settings file: {exc.strerror}"]) from None
    return parse(text, path)


def parse(text: str | bytes, path: str = "<settings>") -> Settings:
    """``text`` as bytes honours a BOM or a ``# -*- coding: ... -*-`` line, like Python does."""
    if len(text) > MAX_FILE_SIZE:
        raise ConfigError([f"{path}: settings file larger than {MAX_FILE_SIZE} bytes"])
    raw, lines, problems, warnings = _read_assignments(text, path)
    values = {s.name: s.default for s in REGISTRY}
    for name, value in raw.items():
        setting = BY_NAME.get(name)
        where = f"{path}:{lines[name]}"
        if setting is None:
            if name in OBSOLETE:
                warnings.append(f"{where}: {name} is obsolete and ignored")
            elif name not in PASS_THROUGH:
                warnings.append(f"{where}: unknown setting {name}{suggest(name)}")
            values[name] = value
            continue
        try:
            values[name] = setting.convert(value)
        except (ValueError, OverflowError) as exc:
            problems.append(f"{where}: {name} = {brief(value)}: {exc}")
    srs_errors, srs_warnings = srs_problems(values, lines, path)
    problems += srs_errors
    warnings += srs_warnings
    if problems:
        raise ConfigError(problems)
    mynetworks = network_warnings(values["MYNETWORKS"], values["ENABLE_ALL_WILDCARD_IP"])
    warnings += [f"{path}:{lines.get('MYNETWORKS', 0)}: {w}" for w in mynetworks]
    return Settings(values, source=path, warnings=warnings, lines=lines)


def brief(value: Any, limit: int = 200) -> str:
    """repr() of a value for a message, cut short: a value may be up to a MiB long."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def suggest(name: str) -> str:
    """'; did you mean GREYLISTING_BLOCK_EXPIRE?' for a near miss (case ignored), else ''."""
    by_lower = {known.lower(): known for known in BY_NAME}
    hint = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.75)
    return f"; did you mean {by_lower[hint[0]]}?" if hint else ""


def _read_assignments(text: str | bytes, path: str) -> tuple[dict[str, Any], dict[str, int], list[str], list[str]]:
    """Evaluate the safe subset of Python that settings files use, within settings_eval's bounds."""
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        raise ConfigError([f"{path}:{exc.lineno or 1}: syntax error: {exc.msg}"]) from None
    except ValueError as exc:  # e.g. a NUL byte
        raise ConfigError([f"{path}: cannot parse settings file: {exc}"]) from None
    except (RecursionError, MemoryError):  # the parser's own stack: 1+1+... with 100,000 terms
        line, name = deep_statement(text)
        raise ConfigError(
            [
                f"{path}:{line}: {name + ': ' if name else ''}expression too long or nested too deeply to read"
                f" (at most {MAX_DEPTH} levels)"
            ]
        ) from None
    raw: dict[str, Any] = {}
    lines: dict[str, int] = {}
    problems: list[str] = []
    warnings: list[str] = []

    def current(name: str) -> Any:
        if name in raw:
            return raw[name]
        if name in BY_NAME:
            default = BY_NAME[name].default
            return (
                list(default)
                if isinstance(default, tuple)
                else (dict(default) if isinstance(default, dict) else default)
            )
        raise Unsupported(f"name {name} is not defined")

    evaluator = Evaluator(current)
    evaluate = evaluator.evaluate
    for stmt in tree.body:
        assigned = _statement_name(stmt)
        where = f"{path}:{stmt.lineno}: " + (f"{assigned}: " if assigned else "")
        try:
            if isinstance(stmt, ast.ImportFrom) and stmt.module in IGNORED_IMPORTS:
                continue
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                warnings.append(f"{path}:{stmt.lineno}: import ignored (settings files are read, not run)")
                continue
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # docstring
            if isinstance(stmt, ast.Assign):
                value = evaluate(stmt.value)
                for target in stmt.targets:
                    _assign(target, value, raw, lines, stmt.lineno, current, evaluator)
                continue
            if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                _assign(stmt.target, evaluate(stmt.value), raw, lines, stmt.lineno, current, evaluator)
                continue
            if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
                name = stmt.target.id
                value = evaluate(ast.BinOp(left=stmt.target, op=stmt.op, right=stmt.value))
                raw[name], lines[name] = value, stmt.lineno
                continue
            if (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Call)
                and isinstance(stmt.value.func, ast.Attribute)
                and isinstance(stmt.value.func.value, ast.Name)
                and stmt.value.func.attr in ("append", "extend")
            ):
                name = stmt.value.func.value.id
                if len(stmt.value.args) != 1 or stmt.value.keywords:
                    raise Unsupported(f"{stmt.value.func.attr}() takes one value")
                container = list(current(name))
                item = evaluate(stmt.value.args[0])
                container.append(item) if stmt.value.func.attr == "append" else container.extend(item)
                raw[name], lines[name] = evaluator.grown(container, item), stmt.lineno
                continue
            raise Unsupported("unsupported statement; use NAME = value")
        except Exhausted as exc:
            problems.append(f"{where}{exc}; the rest of the file is not read")
            break
        except Unsupported as exc:
            problems.append(f"{where}{exc}")
        except (TypeError, KeyError, ValueError, OverflowError) as exc:
            problems.append(f"{where}cannot evaluate: {exc}")
        except (RecursionError, MemoryError):  # bounds above should make these unreachable
            problems.append(f"{where}value too large or nested too deeply to read")
    return raw, lines, problems, warnings


def _statement_name(stmt: ast.stmt) -> str | None:
    """The (first) setting name a statement assigns, for its error messages."""
    if isinstance(stmt, ast.Assign):
        target = stmt.targets[0]
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        target = stmt.target
    elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        target = stmt.value.func  # NAME.append(...)
    else:
        return None
    if isinstance(target, (ast.Subscript, ast.Attribute)):
        target = target.value
    return target.id if isinstance(target, ast.Name) else None


def _assign(target, value, raw, lines, lineno, current, evaluator: Evaluator) -> None:
    if isinstance(target, ast.Name):
        raw[target.id], lines[target.id] = value, lineno
        return
    if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
        name = target.value.id
        container = current(name)
        if not isinstance(container, dict):
            raise Unsupported("not a dict; item assignment needs a dict setting")  # the caller names it
        container = dict(container)
        key = evaluator.evaluate(target.slice)
        container[key] = value
        raw[name], lines[name] = evaluator.grown(container, (key, value)), lineno
        return
    raise Unsupported("unsupported assignment target; use NAME = value")


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in ("password", "bindpw", "secret", "token")) and not lowered.endswith(
        "_header_name"
    )


def describe(settings: Settings) -> str:
    """postconf-like dump: one NAME = value line per setting (secrets masked)."""
    out = []
    for setting in REGISTRY:
        value = settings.get(setting.name)
        if is_secret(setting.name):
            value = "********" if value else value
        out.append(f"{setting.name} = {value!r}")
    return "\n".join(out)
